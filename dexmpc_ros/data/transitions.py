"""
Recorded bags -> ``(state, action, next state)`` transitions for the dynamics model.

A bag of a run holds, per robot namespace, the topics the twin (or a driver) and the safety
supervisor publish:

- ``joint_states`` and ``task_state`` (sensor_msgs/JointState), published together once per
  step with the same ``header.stamp``: together they are one state ``s_k``, laid out by a
  :class:`~dexmpc_ros.core.state_layout.StateLayout`;
- ``command`` (trajectory_msgs/JointTrajectory, first point's ``positions`` for position
  robots, ``velocities`` for velocity robots): what the robot executes;
- ``episode`` (std_msgs/Int32) and ``episode_start`` (std_msgs/Header, stamped with the
  new episode's first state), published at each reset.

Which command drives which step. The robot applies, at each step, the newest command it
received since its previous step, and keeps its last command when none arrived. The
action of the transition ``s_k -> s_{k+1}`` is therefore the newest command received after
``s_k`` and not after ``s_{k+1}``; if none was, the action in force persists. "Received"
is the recorder's receive order (bag timestamp, ties in write order), never the command's
``header.stamp``, except that a command is never placed before a state carrying its stamp;
:mod:`~dexmpc_ros.data.bag_events` says why, and what resolution that gives.

Episodes. :func:`~dexmpc_ros.data.bag_reader.split_states` splits the states by header
stamp: a state belongs to episode ``k`` if its stamp is at or after episode ``k``'s start
stamp (``episode_start``) and before episode ``k + 1``'s, whatever order the recorder
received the topics in at the reset. A bag without ``episode_start`` (recorded before the
twin published it) falls back to bag time, each reset moved half a control tick past its
``episode`` message: right for automatic resets received within half a tick, wrong for a
reset by the ``reset_episode`` service (see :mod:`~dexmpc_ros.data.bag_reader`). States
before the first episode form a segment of their own, a bag without ``episode`` messages
is one segment, and no transition spans two segments. A reset puts the robot's actuators
back to the default pose (every twin's ``reset`` does), so the action in force does NOT
carry into the new episode; only a command received after the previous episode's last
state does, because the robot applies it at its first step after the reset (whichever of
the reset and the command came first). Transitions before the episode's first such
command are dropped: the robot ran on its reset targets, which no command names.
Transitions get dense episode ids ``0..E-1`` per bag in time order, counting only
segments that yield a transition.

Dropped data, never guessed:

- a state with a non-finite entry (a JointState field left empty is NaN), or whose
  ``joint_states`` has no ``task_state`` partner with its stamp, ends both transitions it
  belongs to; partners are paired in receive order per stamp, and a stamp with unequal
  counts of the two (a message lost where a sim-time reset repeats a stamp) drops all its
  states rather than risk pairing the wrong two;
- a malformed command (no point, joint names that are not a permutation of
  ``spec.command_names``, a value count that does not match the names, non-finite values)
  is skipped with a warning: the twin ignores such a command and keeps its last one, so
  the action in force stays. A permutation is reordered by name to command order.

Actions are normalized with :class:`~dexmpc_ros.core.action_space.ActionScaler`
(margin 0) and not clipped: a command outside the limits maps outside [-1, 1], and the
model clips at its input (``DynamicsConfig.clip_actions``).

Errors: a missing, corrupt or incomplete bag (see
:func:`~dexmpc_ros.data.bag_reader.read_bag`), a bag lacking a needed topic, a
``task_state`` whose names differ from the bag's first one, and a bag that yields no
transition at all all raise :class:`~dexmpc_ros.core.errors.BagError` naming the bag.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dexmpc_ros.core.action_space import check_action_space
from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import TASK, StateLayout
from dexmpc_ros.data.bag_events import (bag_commands, bag_states, check_joint_columns,
                                        command_actions, read_bag_events, replay,
                                        state_segments)
from dexmpc_ros.data.bag_reader import EPISODE_TOPIC, bag_info

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Transitions:
    """
    Rows ``(s_k, a_k, s_{k+1})`` of one or more bags.

    Rows of one episode are in time order; an episode's rows form one chain
    (``next_states[i] == states[i + 1]``) except where a dropped state broke it.

    Attributes:
        states: (T, nx) float64 ``s_k``, columns named by ``state_names``.
        actions: (T, nu) float64 normalized actions, columns named by ``action_names``.
        next_states: (T, nx) float64 ``s_{k+1}``.
        episode: (T,) int64 episode id of each row.
        stamps_ns: (T,) int64 ``header.stamp`` of ``s_k`` [ns].
        state_names: the state layout's column names (``pos/..``, ``vel/..``, ``task/..``).
        action_names: joint of each action column (``spec.command_names``).
    """

    states: np.ndarray
    actions: np.ndarray
    next_states: np.ndarray
    episode: np.ndarray
    stamps_ns: np.ndarray
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]

    def __post_init__(self) -> None:
        names, actions = tuple(self.state_names), tuple(self.action_names)
        nx, nu = len(names), len(actions)
        fields = {'states': (np.float64, nx), 'actions': (np.float64, nu),
                  'next_states': (np.float64, nx), 'episode': (np.int64, None),
                  'stamps_ns': (np.int64, None)}
        rows = None
        for name, (dtype, width) in fields.items():
            value = np.asarray(getattr(self, name), dtype=dtype)
            if width is not None and value.size == 0:
                value = value.reshape(-1, width)
            if value.ndim != (1 if width is None else 2) or \
                    (width is not None and value.shape[1] != width):
                want = '(T,)' if width is None else f'(T, {width})'
                raise ValueError(f'Transitions.{name} must have shape {want}, '
                                 f'got {value.shape}')
            if rows is not None and value.shape[0] != rows:
                raise ValueError(f'Transitions.{name} has {value.shape[0]} rows, '
                                 f'states has {rows}')
            rows = value.shape[0]
            object.__setattr__(self, name, value)
        object.__setattr__(self, 'state_names', names)
        object.__setattr__(self, 'action_names', actions)

    def __len__(self) -> int:
        return int(self.states.shape[0])

    @property
    def layout(self) -> StateLayout:
        """The state layout of the ``states`` columns."""
        return StateLayout(self.state_names)

    def episode_ids(self) -> np.ndarray:
        """Sorted distinct episode ids (E,) int64."""
        return np.unique(self.episode)

    def select(self, rows: np.ndarray | slice) -> Transitions:
        """The rows picked by a boolean mask, index array or slice, in their order."""
        return Transitions(self.states[rows], self.actions[rows], self.next_states[rows],
                           self.episode[rows], self.stamps_ns[rows], self.state_names,
                           self.action_names)

    @classmethod
    def concat(cls, parts: Sequence[Transitions], renumber: bool = True) -> Transitions:
        """
        Rows of all ``parts`` in order.

        Args:
            parts: at least one; all with the same state and action names.
            renumber: shift each part's episode ids past the largest id of the parts
                before it, so ids from different sources never merge; False keeps the
                ids as they are (to re-join splits of one set).

        Raises:
            ValueError: no parts, or parts with different state or action names.
        """
        parts = list(parts)
        if not parts:
            raise ValueError('Transitions.concat needs at least one part')
        first = parts[0]
        for i, part in enumerate(parts[1:], 1):
            if part.state_names != first.state_names or \
                    part.action_names != first.action_names:
                raise ValueError(f'part {i} has state names {part.state_names} and action '
                                 f'names {part.action_names}; part 0 has '
                                 f'{first.state_names} and {first.action_names}')
        episode_ids, offset = [], 0
        for part in parts:
            ids = part.episode + offset if renumber else part.episode
            episode_ids.append(ids)
            if renumber and len(part):
                offset = int(ids.max()) + 1
        return cls(np.concatenate([p.states for p in parts]),
                   np.concatenate([p.actions for p in parts]),
                   np.concatenate([p.next_states for p in parts]),
                   np.concatenate(episode_ids), np.concatenate([p.stamps_ns for p in parts]),
                   first.state_names, first.action_names)

    def split_by_episode(self, holdout: float | Iterable[int] = 0.2, seed: int = 0
                         ) -> tuple[Transitions, Transitions]:
        """
        Split whole episodes into ``(train, validation)``.

        Args:
            holdout: a number is the fraction of episodes to hold out, drawn with
                ``seed`` (rounded, at least one and at most all but one when > 0); an
                iterable of ints lists the ids to hold out (pass ``[3]``, not ``3``).
            seed: seed of the draw; the same seed and episode ids give the same split.

        Raises:
            ValueError: a fraction outside [0, 1), fewer than two episodes for a
                fraction > 0, or an id that is not in the set.
        """
        ids = self.episode_ids()
        if isinstance(holdout, (int, float, np.integer, np.floating)) and \
                not isinstance(holdout, bool):
            fraction = float(holdout)
            if not 0.0 <= fraction < 1.0:
                raise ValueError(f'holdout fraction must be in [0, 1), got {holdout!r}')
            count = int(round(fraction * len(ids)))
            if fraction > 0:
                if len(ids) < 2:
                    raise ValueError(f'holding out a fraction needs at least 2 episodes, '
                                     f'got {len(ids)}')
                count = min(max(count, 1), len(ids) - 1)
            held = np.random.default_rng(seed).permutation(ids)[:count]
        else:
            held = np.array(sorted({int(i) for i in holdout}), dtype=np.int64)
            unknown = np.setdiff1d(held, ids)
            if unknown.size:
                raise ValueError(f'episode ids {unknown.tolist()} are not in the set '
                                 f'(ids: {ids.tolist()})')
        mask = np.isin(self.episode, held)
        return self.select(~mask), self.select(mask)

    def episodes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """
        Chains of consecutive rows: ``[(states (T_e+1, nx), actions (T_e, nu)), ...]``.

        The input :meth:`DeltaDynamics.multi_step_error
        <dexmpc_ros.learning.dynamics.model.DeltaDynamics.multi_step_error>` takes. A chain ends
        where the episode id changes or a row does not start where the previous one
        ended (a dropped state), so an episode with a gap gives two chains.
        """
        count = len(self)
        if count == 0:
            return []
        breaks = (self.episode[1:] != self.episode[:-1]) | \
            np.any(self.next_states[:-1] != self.states[1:], axis=1)
        starts = np.flatnonzero(np.concatenate([[True], breaks]))
        ends = np.append(starts[1:], count)
        return [(np.concatenate([self.states[lo:hi], self.next_states[hi - 1:hi]]),
                 self.actions[lo:hi].copy()) for lo, hi in zip(starts, ends)]


def transitions_from_bag(bag_dir: str | Path, spec: RobotSpec,
                         task_names: Sequence[str] | None = None,
                         layout: StateLayout | None = None,
                         namespace: str = '', action_space: str = 'absolute') -> Transitions:
    """
    Read one bag's transitions (see the module docstring for the rules).

    The stages (``data/bag_events.py``), in order: read the topics' messages in receive
    order (:func:`read_bag_events`); lay the states out (:func:`bag_states`); split them
    into episode segments (:func:`state_segments`); read the commands
    (:func:`bag_commands`); replay the bag to pair each step with the command the robot
    ran (:func:`replay`); turn those commands into actions of ``action_space``, delta
    actions straight from the command and the measured state (:func:`command_actions`).

    Args:
        bag_dir: rosbag2 directory.
        spec: the robot that was recorded.
        task_names: task entries of the state; default the bag's first ``task_state``
            names. ``()`` builds states from ``joint_states`` alone (no ``task_state``
            topic needed).
        layout: the state layout; overrides ``task_names`` (use the one a model was
            trained with). Its ``pos/`` and ``vel/`` columns must be joints of ``spec``.
        namespace: robot namespace of the topics (``/<namespace>/joint_states``, ...);
            empty: the one topic of each name in any namespace.
        action_space: ``absolute`` (commands as normalized targets, ``ActionScaler``) or
            ``delta`` (change from the measured state where the step starts, in units of
            the supervisor's per-step bound, ``DeltaActionScaler``).

    Raises:
        BagError: naming the bag: missing/corrupt/incomplete bag, a needed topic missing
            (or several in different namespaces), a joint of ``spec`` missing from a
            ``joint_states``, ``task_state`` names that change within the bag or lack an
            entry the layout needs, or no transition at all.
        ValueError: ``layout`` names a joint that ``spec`` lacks, or an unknown
            ``action_space``.
    """
    check_action_space(action_space)
    path = Path(bag_dir)
    if layout is None:
        needs_task = task_names is None or len(task_names) > 0
    else:
        needs_task = any(n.startswith(TASK) for n in layout.names)
        check_joint_columns(layout, spec)
    bag = read_bag_events(path, bag_info(path), namespace, needs_task)
    layout, joints, states = bag_states(bag, spec, task_names, layout)
    valid = np.all(np.isfinite(states), axis=1)
    segment_of = state_segments(bag, joints)
    commands, bad = bag_commands(bag, spec)
    if bad:
        log.warning('%s: skipped %d malformed command(s); first at bag time %d ns: %s',
                    path, len(bad), bad[0][0], bad[0][1])
    first, command, second = replay(bag, commands, segment_of, valid)
    if len(first) == 0:
        raise BagError(
            f'{path}: no transition: {len(joints)} joint_states ({int(valid.sum())} '
            f'complete states), {len(commands)} commands ({len(bad)} malformed), '
            f'{len(bag.of(EPISODE_TOPIC))} episode messages')
    actions = command_actions(spec, action_space, command, joints, first)
    _, episode = np.unique(segment_of[second], return_inverse=True)
    result = Transitions(states[first], actions, states[second], episode,
                         joints.stamps[first], layout.names, tuple(spec.command_names))
    log.info('%s: %d transitions in %d episodes (%d of %d states incomplete, %d malformed '
             'commands)', path, len(result), len(result.episode_ids()),
             int((~valid).sum()), len(valid), len(bad))
    return result


def transitions_from_bags(bag_dirs: Iterable[str | Path], spec: RobotSpec,
                          task_names: Sequence[str] | None = None,
                          layout: StateLayout | None = None,
                          namespace: str = '',
                          action_space: str = 'absolute') -> tuple[Transitions, list[str]]:
    """
    Read and concatenate several bags with one state layout.

    The layout is ``layout``, else the one the first bag gives (see
    :func:`transitions_from_bag`), and every bag must provide its columns. Episode ids
    are renumbered so they are unique across bags (bag order, then time order).

    Returns:
        ``(transitions, source bags)``: the bags as absolute paths, in the order read, for
        the checkpoint manifest's ``source_bags``.

    Raises:
        BagError: as :func:`transitions_from_bag`, for any bag (no partial result).
        ValueError: no bag given.
    """
    dirs = [Path(d) for d in bag_dirs]
    if not dirs:
        raise ValueError('transitions_from_bags needs at least one bag')
    parts = []
    for bag in dirs:
        part = transitions_from_bag(bag, spec, task_names, layout, namespace, action_space)
        layout = layout if layout is not None else part.layout
        parts.append(part)
    return Transitions.concat(parts), [os.fspath(d.resolve()) for d in dirs]
