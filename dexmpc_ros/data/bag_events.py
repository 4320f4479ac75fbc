"""
Bag messages of a run -> receive-ordered events, state rows and normalized actions.

The pieces :func:`~dexmpc_ros.data.transitions.transitions_from_bag` builds transitions
from; the topics and the rule of which command drives which step are in
:mod:`~dexmpc_ros.data.transitions`. An event is ``(topic, bag time [ns], message)``.

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
``header.stamp``) out as one state row; :func:`command_action` turns a command into a
normalized action or says why it is malformed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from dexmpc_ros.core.action_space import ActionScaler
from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import POS, TASK, VEL, StateLayout
from dexmpc_ros.data.bag_reader import BagInfo, JointStateSeries, iter_messages


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
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def task_state_names(path: Path, ts_events: list[tuple[str, int, Any]]) -> tuple[str, ...]:
    """The bag's task_state names; BagError if the topic is silent or they change."""
    if not ts_events:
        raise BagError(f'{path}: no task_state message; to learn from joint_states alone '
                       f'pass task_names=() (dexmpc train --no-task-state)')
    names = tuple(ts_events[0][2].name)
    for _, t, msg in ts_events[1:]:
        if tuple(msg.name) != names:
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
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


def command_action(msg: Any, spec: RobotSpec, scaler: ActionScaler
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
