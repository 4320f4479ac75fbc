"""
Bag messages of a run -> receive-ordered events, state rows, commands and actions.

The stages :func:`~dexmpc_ros.data.transitions.transitions_from_bag` runs, top to bottom
at the end of this module (:func:`read_bag_events`, :func:`bag_states`,
:func:`state_segments`, :func:`bag_commands`, :func:`replay`, :func:`command_actions`),
and the pieces they are built from; the topics and the rule of which command drives which
step are in :mod:`~dexmpc_ros.data.transitions`. An event is ``(topic, bag time [ns],
message)``.

Receive order (:func:`read_ordered`, :func:`causal_order`). "Received"
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

:func:`state_matrix` lays each ``joint_states`` and its ``task_state`` partner (paired by
``header.stamp``) out as one state row; :func:`ordered_command_values` reads a command's
values in command order or says why it is malformed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dexmpc_ros.core.action_space import ActionScaler, DeltaActionScaler
from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.message_fields import command_field, command_values, stamp_to_ns
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import POS, TASK, VEL, StateLayout
from dexmpc_ros.data.bag_reader import (EPISODE_TOPIC, START_SUFFIX, BagInfo, JointStateSeries,
                                        episodes, iter_messages, joint_state_series,
                                        resolve_topics, split_states)

JOINT_STATES_TOPIC = 'joint_states'
TASK_STATE_TOPIC = 'task_state'
COMMAND_TOPIC = 'command'


def read_ordered(path: Path, info: BagInfo, topics: list[str]) -> list[tuple[str, int, Any]]:
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


def causal_order(kind: dict[int, tuple[str, int]], js_events: list[tuple[str, int, Any]],
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
    """A stamped message's header stamp [ns]."""
    return stamp_to_ns(msg.header.stamp)


def task_state_names(path: Path, ts_events: list[tuple[str, int, Any]]) -> tuple[str, ...]:
    """The bag's task_state names; BagError if the topic is silent or they change."""
    if not ts_events:
        raise BagError(f'{path}: no task_state message; to learn from joint_states alone '
                       f'pass task_names=() (dexmpc train --no-task-state)')
    names = tuple(ts_events[0][2].name)
    for _, t, msg in ts_events[1:]:
        if tuple(msg.name) != names:
            stamp = _stamp(msg)
            raise BagError(f'{path}: task_state stamped {stamp} ns (bag time {t} ns) has '
                           f'names {list(msg.name)}, the first one {list(names)}; a bag '
                           f'must keep one task layout')
    return names


def check_joint_columns(layout: StateLayout, spec: RobotSpec) -> None:
    joints = set(spec.joint_names)
    unknown = [n for n in layout.names if not n.startswith(TASK) and
               n.split('/', 1)[1] not in joints]
    if unknown:
        raise ValueError(f'state layout columns {unknown} name no joint of robot {spec.name}')


def state_matrix(path: Path, layout: StateLayout, spec: RobotSpec,
                 joints: JointStateSeries, task: JointStateSeries) -> np.ndarray:
    """(n joint_states, nx) states; NaN rows where the task_state partner is missing."""
    check_joint_columns(layout, spec)
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


def ordered_command_values(msg: Any, spec: RobotSpec) -> tuple[np.ndarray | None, str]:
    """
    A command's values (m,) in ``spec.command_names`` order, or ``(None, why malformed)``.

    The first point's ``positions`` (position robots) or ``velocities`` (velocity robots),
    in joint units, reordered by joint name.
    """
    names = [str(n) for n in msg.joint_names]
    if sorted(names) != sorted(spec.command_names):
        return None, f'joint names {names} are not a permutation of {spec.command_names}'
    if not len(msg.points):
        return None, 'no trajectory point'
    field = command_field(spec.command_interface)
    values = command_values(msg, spec.command_interface)
    if values.shape != (len(names),):
        return None, f'{values.size} {field} for {len(names)} joints'
    if not np.all(np.isfinite(values)):
        return None, f'non-finite {field} {values.tolist()}'
    index = {name: i for i, name in enumerate(names)}
    return values[[index[n] for n in spec.command_names]], ''


@dataclass(frozen=True)
class BagEvents:
    """
    One bag's messages on the topics transitions need, in receive order.

    Attributes:
        path: the bag directory (error messages start with it).
        events: ``(topic, bag time [ns], message)`` in receive order.
        topics: key (``joint_states``, ``task_state``, ``command``, ``episode``,
            ``episode`` + ``START_SUFFIX``) -> the bag's topic of it; a key the bag (or the
            caller) does not use is absent.
        index: topic -> indices of its messages in ``events``, in order.
    """

    path: Path
    events: list[tuple[str, int, Any]]
    topics: dict[str, str]
    index: dict[str, list[int]]

    def indices(self, key: str) -> list[int]:
        """Indices into ``events`` of the messages of ``key``'s topic (none if absent)."""
        return self.index.get(self.topics.get(key, ''), [])

    def of(self, key: str) -> list[tuple[str, int, Any]]:
        """The events of ``key``'s topic in receive order."""
        return [self.events[i] for i in self.indices(key)]


def read_bag_events(path: Path, info: BagInfo, namespace: str, needs_task: bool
                    ) -> BagEvents:
    """
    Stage 1: resolve the topics in ``namespace`` and read their messages in receive order.

    ``joint_states`` and ``command`` (and ``task_state`` if ``needs_task``) must be in the
    bag; ``episode`` and its ``episode_start`` marker are read when present.
    """
    wanted = [JOINT_STATES_TOPIC, COMMAND_TOPIC] + ([TASK_STATE_TOPIC] if needs_task else [])
    full = {name: _topic_name(namespace, name) for name in (*wanted, EPISODE_TOPIC)}
    try:
        resolved = resolve_topics(info.topics, [full[name] for name in wanted])
        if _matches(info.topics, full[EPISODE_TOPIC]):
            resolved.update(resolve_topics(info.topics, [full[EPISODE_TOPIC]]))
    except BagError as exc:
        raise BagError(f'{path}: {exc}') from exc
    topics = {key: resolved[full[key]] for key in full if full[key] in resolved}
    marker = EPISODE_TOPIC + START_SUFFIX
    if EPISODE_TOPIC in topics and topics[EPISODE_TOPIC] + START_SUFFIX in info.topics:
        topics[marker] = topics[EPISODE_TOPIC] + START_SUFFIX
    events = read_ordered(path, info, list(topics.values()))
    index: dict[str, list[int]] = defaultdict(list)
    for i, (topic, _, _) in enumerate(events):
        index[topic].append(i)
    return BagEvents(path, events, topics, dict(index))


def bag_states(bag: BagEvents, spec: RobotSpec, task_names: Sequence[str] | None,
               layout: StateLayout | None) -> tuple[StateLayout, JointStateSeries, np.ndarray]:
    """
    Stage 2: the state layout, the ``joint_states`` series and one state row per message.

    Rows are (J, nx) in ``joint_states`` receive order, NaN where a state is incomplete
    (module docstring). The layout is ``layout``, else the robot's joints and
    ``task_names`` (default: the bag's ``task_state`` names).
    """
    js_events = bag.of(JOINT_STATES_TOPIC)
    if not js_events:
        raise BagError(f'{bag.path}: no message on {bag.topics[JOINT_STATES_TOPIC]}; nothing '
                       f'to learn from')
    ts_events = bag.of(TASK_STATE_TOPIC)
    bag_task = task_state_names(bag.path, ts_events) if TASK_STATE_TOPIC in bag.topics \
        else ()
    if layout is None:
        layout = StateLayout.for_robot(spec, bag_task if task_names is None else task_names)
    try:
        joints = joint_state_series([(t, m) for _, t, m in js_events], spec.joint_names)
        task = joint_state_series([(t, m) for _, t, m in ts_events], bag_task)
    except BagError as exc:
        raise BagError(f'{bag.path}: {exc}') from exc
    return layout, joints, state_matrix(bag.path, layout, spec, joints, task)


def state_segments(bag: BagEvents, joints: JointStateSeries) -> np.ndarray:
    """
    Stage 3: the episode segment of every state (J,) int64, by header stamp.

    Segments count from 0 at the first state; a bag without ``episode`` is one segment.
    """
    if EPISODE_TOPIC not in bag.topics:
        return np.zeros(len(joints), dtype=np.int64)
    topic = bag.topics[EPISODE_TOPIC]
    try:   # the marker, episode_start, is read when the bag has it (read_bag_events)
        eps = episodes({topic: [(t, m) for _, t, m in bag.of(EPISODE_TOPIC)],
                        topic + START_SUFFIX: [(t, m) for _, t, m in
                                               bag.of(EPISODE_TOPIC + START_SUFFIX)]}, topic)
    except BagError as exc:
        raise BagError(f'{bag.path}: {exc}') from exc
    return split_states(joints, eps).position


def bag_commands(bag: BagEvents, spec: RobotSpec
                 ) -> tuple[list[np.ndarray | None], list[tuple[int, str]]]:
    """
    Stage 4: every command's values in command order (None: malformed, to be skipped),
    and ``(bag time, why)`` of each malformed one.
    """
    commands, bad = [], []
    for _, t, msg in bag.of(COMMAND_TOPIC):
        values, reason = ordered_command_values(msg, spec)
        commands.append(values)
        if values is None:
            bad.append((t, reason))
    return commands, bad


def replay(bag: BagEvents, commands: list[np.ndarray | None], segment_of: np.ndarray,
           valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Stage 5: replay the bag as the robot ran it; the steps ``s_k -> s_{k+1}`` it yields.

    Walks states and commands in causal receive order (``bag_events.causal_order``). A
    command becomes the one in force; a state of another segment than the one before it
    had a reset in between, so only a command received after the previous state
    (``pending``) survives it. A step between two complete states of one segment, with a
    command in force, is a transition.

    Returns:
        ``(first, command, second)``: (T,) rows of ``s_k`` and ``s_{k+1}`` in the state
        rows, and (T, m) the command in force over each step (T = 0: none).
    """
    js_index, cmd_index = bag.indices(JOINT_STATES_TOPIC), bag.indices(COMMAND_TOPIC)
    kind = {i: (JOINT_STATES_TOPIC, row) for row, i in enumerate(js_index)}
    kind.update({i: (COMMAND_TOPIC, row) for row, i in enumerate(cmd_index)})
    order = causal_order(kind, bag.of(JOINT_STATES_TOPIC), js_index, bag.of(COMMAND_TOPIC),
                         cmd_index)
    first, command, second = [], [], []
    current: np.ndarray | None = None   # the command in force
    pending: np.ndarray | None = None   # the newest command since the last state
    previous: int | None = None         # the segment's last state (row of the states)
    for i in order:
        key, row = kind[i]
        if key == COMMAND_TOPIC:
            if commands[row] is not None:
                current = pending = commands[row]
            continue
        if previous is not None and segment_of[row] != segment_of[previous]:
            current, previous = pending, None
        if previous is not None and current is not None and valid[previous] and valid[row]:
            first.append(previous)
            command.append(current)
            second.append(row)
        previous, pending = row, None
    return (np.array(first, dtype=np.int64),
            np.stack(command) if command else np.empty((0, 0)),
            np.array(second, dtype=np.int64))


def command_actions(spec: RobotSpec, action_space: str, command: np.ndarray,
                    joints: JointStateSeries, first: np.ndarray) -> np.ndarray:
    """
    Stage 6: the commands in force (T, m) as normalized actions of ``action_space``.

    ``absolute``: :class:`ActionScaler` (margin 0, not clipped). ``delta``: the change
    from the measured position (velocity, for velocity robots) at each step's start
    ``first``, in units of the supervisor's step bound (:class:`DeltaActionScaler`).
    """
    if action_space == 'absolute':
        return ActionScaler(spec).to_action(command)
    measured = joints.position if spec.command_interface == 'position' else joints.velocity
    return DeltaActionScaler(spec).to_action(command, measured[first][:, spec.actuated_index])


# Topic names --------------------------------------------------------------------------------
def _topic_name(namespace: str, name: str) -> str:
    namespace = namespace.strip('/')
    return f'/{namespace}/{name}' if namespace else name


def _matches(available: Iterable[str], name: str) -> bool:
    """True if ``name`` matches any topic under :func:`resolve_topics`' rule."""
    if name.startswith('/'):
        return name in available
    return any(t == name or t.endswith('/' + name) for t in available)
