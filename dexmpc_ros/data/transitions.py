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
is the bag timestamp (the recorder's receive time), never the command's ``header.stamp``:
controller commands carry the stamp of the observation they were computed from, which
says nothing about when they reached the robot, and holds carry the supervisor's clock.
Messages are ordered by bag timestamp and, at equal timestamps, by the order the recorder
wrote them (its receive order). The tie-break matters for ``use_sim_time`` recordings:
the recorder's clock then advances once per twin step, so a command received between two
steps carries exactly the timestamp of the state before it. The recorder and the robot
hear the command over separate connections, so a command that reaches the robot just
before a step but the recorder just after it is attributed one step late; that is the
resolution of this rule. One exception uses the stamp: a command stamped with a state's
stamp is never placed before that state. A controller computes it from that state, so
the robot got it after publishing the state and applies it from the next step on; the
recorder may still receive it first, because the twin's burst of messages at a reset
(the old episode's last state, the markers, the new first state) delays the state
(seen in a sim-time run at 3 of 6 resets). Without the exception the command would
label the step into the state it was computed from and leave the first step of the new
episode without an action.

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
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dexmpc_ros.core.action_space import ActionScaler, DeltaActionScaler, check_action_space
from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import POS, TASK, VEL, StateLayout
from dexmpc_ros.data.bag_reader import (EPISODE_TOPIC, START_SUFFIX, BagInfo,
                                        JointStateSeries, bag_info, episodes,
                                        iter_messages, joint_state_series, resolve_topics,
                                        split_states)

log = logging.getLogger(__name__)

JOINT_STATES_TOPIC = 'joint_states'
TASK_STATE_TOPIC = 'task_state'
COMMAND_TOPIC = 'command'


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
        <dexmpc_ros.models.dynamics.DeltaDynamics.multi_step_error>` takes. A chain ends
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
        ValueError: ``layout`` names a joint that ``spec`` lacks.
    """
    path = Path(bag_dir)
    info = bag_info(path)
    if layout is None:
        needs_task = task_names is None or len(task_names) > 0
    else:
        needs_task = any(n.startswith(TASK) for n in layout.names)
        _check_joint_columns(layout, spec)
    wanted = [JOINT_STATES_TOPIC, COMMAND_TOPIC] + ([TASK_STATE_TOPIC] if needs_task else [])
    full = {name: _topic_name(namespace, name) for name in (*wanted, EPISODE_TOPIC)}
    try:
        topics = resolve_topics(info.topics, [full[name] for name in wanted])
        if _matches(info.topics, full[EPISODE_TOPIC]):
            topics.update(resolve_topics(info.topics, [full[EPISODE_TOPIC]]))
    except BagError as exc:
        raise BagError(f'{path}: {exc}') from exc
    by_key = {key: topics.get(full[key]) for key in full}
    marker = by_key[EPISODE_TOPIC] and by_key[EPISODE_TOPIC] + START_SUFFIX
    if marker in info.topics:
        topics[marker] = marker

    events = _read_ordered(path, info, list(topics.values()))
    per_topic: dict[str | None, list[int]] = defaultdict(list)
    for i, (topic, _, _) in enumerate(events):
        per_topic[topic].append(i)
    js_events = [events[i] for i in per_topic[by_key[JOINT_STATES_TOPIC]]]
    ts_events = [events[i] for i in per_topic[by_key[TASK_STATE_TOPIC]]] if needs_task else []
    if not js_events:
        raise BagError(f'{path}: no message on {by_key[JOINT_STATES_TOPIC]}; nothing to '
                       f'learn from')

    bag_task = _task_names(path, ts_events) if needs_task else ()
    if layout is None:
        layout = StateLayout.for_robot(spec, bag_task if task_names is None else task_names)
    try:
        joints = joint_state_series([(t, m) for _, t, m in js_events], spec.joint_names)
        task = joint_state_series([(t, m) for _, t, m in ts_events], bag_task)
    except BagError as exc:
        raise BagError(f'{path}: {exc}') from exc
    states = _state_matrix(path, layout, spec, joints, task)
    valid = np.all(np.isfinite(states), axis=1)
    if by_key[EPISODE_TOPIC]:
        try:
            eps = episodes({name: [(t, m) for _, t, m in (events[i] for i in per_topic[name])]
                            for name in (by_key[EPISODE_TOPIC], marker)},
                           by_key[EPISODE_TOPIC])
        except BagError as exc:
            raise BagError(f'{path}: {exc}') from exc
        segment_of = split_states(joints, eps).position
    else:
        segment_of = np.zeros(len(joints), dtype=np.int64)

    check_action_space(action_space)
    scaler = ActionScaler(spec)
    cmd_events = [events[i] for i in per_topic[by_key[COMMAND_TOPIC]]]
    actions, bad = [], []
    for _, t, msg in cmd_events:
        action, reason = _command_action(msg, spec, scaler)
        actions.append(action)
        if action is None:
            bad.append((t, reason))
    if bad:
        log.warning('%s: skipped %d malformed command(s); first at bag time %d ns: %s',
                    path, len(bad), bad[0][0], bad[0][1])

    # Walk the bag in receive order, replaying what the robot did with each message. A
    # state of another segment than the one before it had a reset in between: only a
    # command received after the previous state (pending) survives it.
    kind = {}
    for key in (JOINT_STATES_TOPIC, COMMAND_TOPIC):
        for row, i in enumerate(per_topic[by_key[key]]):
            kind[i] = (key, row)
    order = _causal_order(kind, js_events, per_topic[by_key[JOINT_STATES_TOPIC]],
                          cmd_events, per_topic[by_key[COMMAND_TOPIC]])
    rows: list[tuple[int, np.ndarray, int, int]] = []
    current: np.ndarray | None = None   # the action in force
    pending: np.ndarray | None = None   # the newest command since the last state
    previous: int | None = None         # the segment's last state (row of ``joints``)
    for i in order:
        key, row = kind[i]
        if key == COMMAND_TOPIC:
            if actions[row] is not None:
                current = pending = actions[row]
            continue
        if previous is not None and segment_of[row] != segment_of[previous]:
            current, previous = pending, None
        if previous is not None and current is not None and valid[previous] and valid[row]:
            rows.append((previous, current, row, int(segment_of[row])))
        previous, pending = row, None
    if not rows:
        raise BagError(
            f'{path}: no transition: {len(js_events)} joint_states ({int(valid.sum())} '
            f'complete states), {len(cmd_events)} commands ({len(bad)} malformed), '
            f'{len(per_topic[by_key[EPISODE_TOPIC]]) if by_key[EPISODE_TOPIC] else 0} '
            f'episode messages')
    first, action, second, segments = zip(*rows)
    first, second = np.array(first), np.array(second)
    action = np.stack(action)
    if action_space == 'delta':  # from the absolute action back to the command, then relative
        measured = (joints.position if spec.command_interface == 'position'
                    else joints.velocity)[first][:, spec.actuated_index]
        action = DeltaActionScaler(spec).to_action(scaler.to_command_unclipped(action),
                                                   measured)
    _, episode = np.unique(np.array(segments), return_inverse=True)
    result = Transitions(states[first], action, states[second], episode,
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


# Helpers --------------------------------------------------------------------------------
def _topic_name(namespace: str, name: str) -> str:
    namespace = namespace.strip('/')
    return f'/{namespace}/{name}' if namespace else name


def _matches(available: Iterable[str], name: str) -> bool:
    """True if ``name`` matches any topic under :func:`resolve_topics`' rule."""
    if name.startswith('/'):
        return name in available
    return any(t == name or t.endswith('/' + name) for t in available)


def _read_ordered(path: Path, info: BagInfo, topics: list[str]) -> list[tuple[str, int, Any]]:
    """
    Every message of ``topics`` as ``(topic, bag time, message)`` in receive order.

    Sorted by bag time, ties kept in the order the bag yields them: the reader sorts each
    MCAP chunk stably and merges chunks (and we concatenate segments) in file order, so
    equal timestamps stay in the order the recorder wrote them. Reads the segments
    ``info`` lists and checks its counts, so a segment the recorder appends meanwhile
    is not read (rather than failing the count check). All or nothing, as
    :func:`~dexmpc_ros.data.bag_reader.read_bag`.
    """
    events = list(iter_messages(path, topics, info=info))
    counts = Counter(topic for topic, _, _ in events)
    for topic in topics:
        expected = info.topics[topic].message_count
        if counts[topic] != expected:
            raise BagError(f'{path / "metadata.yaml"}: lists {expected} messages on {topic},'
                           f' the segments hold {counts[topic]}')
    events.sort(key=lambda event: event[1])
    return events


def _causal_order(kind: dict[int, tuple[str, int]], js_events: list[tuple[str, int, Any]],
                  js_index: list[int], cmd_events: list[tuple[str, int, Any]],
                  cmd_index: list[int]) -> list[int]:
    """
    Event indices in receive order, each command moved after the first state with its stamp.

    Only a command received before every state carrying its stamp moves (see the module
    docstring); the others keep their place.
    """
    first_state: dict[int, int] = {}
    for (_, _, msg), i in zip(js_events, js_index):
        first_state.setdefault(_stamp(msg), i)
    key = {i: (i, 0, i) for i in kind}
    for (_, _, msg), i in zip(cmd_events, cmd_index):
        state = first_state.get(_stamp(msg))
        if state is not None and state > i:
            key[i] = (state, 1, i)
    return sorted(kind, key=key.__getitem__)


def _stamp(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _task_names(path: Path, ts_events: list[tuple[str, int, Any]]) -> tuple[str, ...]:
    """The bag's task_state names; BagError if the topic is silent or they change."""
    if not ts_events:
        raise BagError(f'{path}: no task_state message; pass task_names=() to learn from '
                       f'joint_states alone')
    names = tuple(ts_events[0][2].name)
    for _, t, msg in ts_events[1:]:
        if tuple(msg.name) != names:
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            raise BagError(f'{path}: task_state stamped {stamp} ns (bag time {t} ns) has '
                           f'names {list(msg.name)}, the first one {list(names)}; a bag '
                           f'must keep one task layout')
    return names


def _check_joint_columns(layout: StateLayout, spec: RobotSpec) -> None:
    joints = set(spec.joint_names)
    unknown = [n for n in layout.names if not n.startswith(TASK) and
               n.split('/', 1)[1] not in joints]
    if unknown:
        raise ValueError(f'state layout columns {unknown} name no joint of robot {spec.name}')


def _state_matrix(path: Path, layout: StateLayout, spec: RobotSpec,
                  joints: JointStateSeries, task: JointStateSeries) -> np.ndarray:
    """(n joint_states, nx) states; NaN rows where the task_state partner is missing."""
    _check_joint_columns(layout, spec)
    missing = [n for n in layout.names if n.startswith(TASK) and
               n[len(TASK):] not in task.names]
    if missing:
        raise BagError(f'{path}: task_state names {list(task.names)} lack {missing} of the '
                       f'state layout')
    partner = _pair_by_stamp(joints.stamps, task.stamps)
    found = partner >= 0
    joint_col = {name: i for i, name in enumerate(joints.names)}
    task_col = {name: i for i, name in enumerate(task.names)}
    states = np.full((len(joints), layout.dim), np.nan)
    for col, name in enumerate(layout.names):
        kind, entry = name[:name.index('/') + 1], name[name.index('/') + 1:]
        if kind == POS:
            states[:, col] = joints.position[:, joint_col[entry]]
        elif kind == VEL:
            states[:, col] = joints.velocity[:, joint_col[entry]]
        else:
            states[found, col] = task.position[partner[found], task_col[entry]]
    return states


def _pair_by_stamp(joint_stamps: np.ndarray, task_stamps: np.ndarray) -> np.ndarray:
    """Row of each joint_states' task_state partner (-1: none or ambiguous)."""
    tasks: dict[int, list[int]] = defaultdict(list)
    for row, stamp in enumerate(task_stamps.tolist()):
        tasks[stamp].append(row)
    joints: dict[int, list[int]] = defaultdict(list)
    for row, stamp in enumerate(joint_stamps.tolist()):
        joints[stamp].append(row)
    partner = np.full(len(joint_stamps), -1, dtype=np.int64)
    for stamp, rows in joints.items():
        candidates = tasks.get(stamp, [])
        if len(candidates) == len(rows):
            partner[rows] = candidates
    return partner


def _command_action(msg: Any, spec: RobotSpec, scaler: ActionScaler
                    ) -> tuple[np.ndarray | None, str]:
    """A command's normalized action in command order, or ``(None, why it is malformed)``."""
    names = [str(n) for n in msg.joint_names]
    if sorted(names) != sorted(spec.command_names):
        return None, f'joint names {names} are not a permutation of {spec.command_names}'
    if not len(msg.points):
        return None, 'no trajectory point'
    field = 'velocities' if spec.command_interface == 'velocity' else 'positions'
    values = np.asarray(getattr(msg.points[0], field), dtype=np.float64)
    if values.shape != (len(names),):
        return None, f'{values.size} {field} for {len(names)} joints'
    if not np.all(np.isfinite(values)):
        return None, f'non-finite {field} {values.tolist()}'
    index = {name: i for i, name in enumerate(names)}
    return scaler.to_action(values[[index[n] for n in spec.command_names]]), ''
