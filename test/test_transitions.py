"""
Bags -> (s, a, s') transitions: which command drives which step, episode boundaries,
dropped states and commands, the errors a bad bag raises, and a replay of the hand twin.

Bags are real MCAP bags written with the project's BagWriter; messages are serialized
with the ROS 2 Jazzy typestore, as the recorder stores them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from dexmpc_ros.core.action_space import ActionScaler
from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.message_fields import ns_to_sec_nanosec
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import Observation
from dexmpc_ros.data import transitions
from dexmpc_ros.data.bag_reader import bag_info
from dexmpc_ros.data.bag_writer import BagWriter, BagWriterConfig
from dexmpc_ros.data.transitions import Transitions, transitions_from_bag, transitions_from_bags
from dexmpc_ros.robots.registry import make_twin
from dexmpc_ros.robots.hand24.tasks import VALVE_STATE_NAMES

STORE = get_typestore(Stores.ROS2_JAZZY)
T = STORE.types
JOINT_STATE = 'sensor_msgs/msg/JointState'
TRAJECTORY = 'trajectory_msgs/msg/JointTrajectory'
INT32 = 'std_msgs/msg/Int32'
HEADER = 'std_msgs/msg/Header'
MS = 1_000_000                       # bag times below are in ms
STAMP0 = 1_700_000_000 * 10**9


# Message helpers ------------------------------------------------------------------------
def header(stamp_ns: int):
    sec, nsec = ns_to_sec_nanosec(stamp_ns)
    return T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec),
                                    frame_id='')


def joint_state(stamp_ns: int, names, position, velocity=(), effort=()) -> bytes:
    msg = T[JOINT_STATE](header=header(stamp_ns), name=list(names),
                         position=np.asarray(position, float),
                         velocity=np.asarray(velocity, float), effort=np.asarray(effort, float))
    return bytes(STORE.serialize_cdr(msg, JOINT_STATE))


def command(stamp_ns: int, names, values, field: str = 'positions') -> bytes:
    empty = np.array([], float)
    arrays = {'positions': empty, 'velocities': empty, 'accelerations': empty, 'effort': empty}
    arrays[field] = np.asarray(values, float)
    point = T['trajectory_msgs/msg/JointTrajectoryPoint'](
        **arrays, time_from_start=T['builtin_interfaces/msg/Duration'](sec=0, nanosec=0))
    msg = T[TRAJECTORY](header=header(stamp_ns), joint_names=list(names), points=[point])
    return bytes(STORE.serialize_cdr(msg, TRAJECTORY))


def at(path: Path) -> str:
    """Regex matching ``path`` literally (error messages start with the bag or file)."""
    return re.escape(str(path))


def int32(value: int) -> bytes:
    return bytes(STORE.serialize_cdr(T[INT32](data=value), INT32))


def episode_start(stamp_ns: int, episode: int) -> bytes:
    """The twin's ``episode_start`` marker: the reset state's stamp, the episode number."""
    msg = header(stamp_ns)
    msg.frame_id = str(episode)
    return bytes(STORE.serialize_cdr(msg, HEADER))


# The synthetic bag ------------------------------------------------------------------------
# toy_spec (conftest): joints a [-1, 1], b [0, 2], passive c; commands (a, b), so the
# normalized action is (a, b - 1). State i: positions (i/10, 1 + i/10, -i/100), velocities
# (i, -i, 2i), task_state x = 100 + i, y = -i.
TASK_NAMES = ['x', 'y']
STATE_NAMES = ('pos/a', 'pos/b', 'pos/c', 'vel/a', 'vel/b', 'vel/c', 'task/x', 'task/y')


def state_vector(i: int) -> list[float]:
    return [i / 10, 1 + i / 10, -i / 100, i, -i, 2 * i, 100 + i, -i]


def stamp(i: int) -> int:
    """Header stamp of state i; the reset states 12 and 15 repeat the stamp before them,
    as the twin under sim time did before it published ``episode_start`` (a reset does not
    advance its clock): the synthetic bag is such an older bag."""
    return STAMP0 + {12: 11, 15: 14}.get(i, i) * 100 * MS


# Commands (a, b) and their normalized actions (a, b - 1).
Z, A, C, H, D, E = (0.9, 1.9), (0.5, 1.5), (0.25, 1.25), (0.0, 1.0), (-0.25, 1.75), (0.75, 0.5)
G, F, J, K = (0.125, 1.125), (-0.125, 0.875), (1.5, 1.0), (-0.375, 0.625)
B_REORDERED = (['b', 'a'], [0.0, -1.0])         # a = -1, b = 0 -> action (-1, -1)


def write_state(writer: BagWriter, t_ms: int, i: int, ns: str = '/toy', task_names=None,
                reorder: bool = False, no_velocity: bool = False) -> None:
    s = state_vector(i)
    names, position, velocity = ['a', 'b', 'c'], s[0:3], s[3:6]
    if reorder:
        names, position, velocity = names[::-1], position[::-1], velocity[::-1]
    velocity = [] if no_velocity else velocity
    writer.write(f'{ns}/joint_states', JOINT_STATE,
                 joint_state(stamp(i), names, position, velocity), t_ms * MS)
    writer.write(f'{ns}/task_state', JOINT_STATE,
                 joint_state(stamp(i), task_names or TASK_NAMES, s[6:8]), t_ms * MS)


def write_command(writer: BagWriter, t_ms: int, values, names=('a', 'b'), stamp_ns=None,
                  ns: str = '/toy', field: str = 'positions') -> None:
    writer.write(f'{ns}/command', TRAJECTORY,
                 command(STAMP0 if stamp_ns is None else stamp_ns, names, values, field),
                 t_ms * MS)


def write_synthetic(path: Path) -> None:
    """
    Bag time (ms) -> message; s<i> is joint_states + task_state of state i::

        0 Z (stamped before the bag) | 1 s99 | 5 episode 0 | 10 s0 | 20 s1 | 25 A | 30 s2
        40 s3 | 42 C
        44 B (joint names b, a) | 50 s4 (joint names c, b, a) | 55 H (hold, stamped 11 days
        later) | 60 s5 | 70 s6 | 72 D (late: stamped with s5, received after s6)
        75 malformed (names a only) | 80 s7 | 90 s8 (no velocity: NaN) | 95 E | 100 s9
        110 G, s10, F (same time, written in this order) | 120 s11 | 125 episode 1
        130 s12 | 140 s13 | 145 J (a = 1.5, beyond the limit) | 150 s14 | 152 K
        155 episode 2 | 160 s15 | 170 s16
    """
    with BagWriter(path) as w:
        write_command(w, 0, Z, stamp_ns=STAMP0 - 100 * MS)
        write_state(w, 1, 99)
        w.write('/toy/episode', INT32, int32(0), 5 * MS)
        write_state(w, 10, 0)
        write_state(w, 20, 1)
        write_command(w, 25, A, stamp_ns=stamp(1))
        write_state(w, 30, 2)
        write_state(w, 40, 3)
        write_command(w, 42, C, stamp_ns=stamp(3))
        write_command(w, 44, B_REORDERED[1], names=B_REORDERED[0], stamp_ns=stamp(3))
        write_state(w, 50, 4, reorder=True)
        write_command(w, 55, H, stamp_ns=STAMP0 + 10**15)
        write_state(w, 60, 5)
        write_state(w, 70, 6)
        write_command(w, 72, D, stamp_ns=stamp(5))
        write_command(w, 75, [0.3], names=['a'], stamp_ns=stamp(6))
        write_state(w, 80, 7)
        w.flush()                                   # a second segment from here on
        write_state(w, 90, 8, no_velocity=True)
        write_command(w, 95, E, stamp_ns=stamp(8))
        write_state(w, 100, 9)
        write_command(w, 110, G, stamp_ns=stamp(9))
        write_state(w, 110, 10)
        write_command(w, 110, F, stamp_ns=stamp(10))
        write_state(w, 120, 11)
        w.write('/toy/episode', INT32, int32(1), 125 * MS)
        write_state(w, 130, 12)
        write_state(w, 140, 13)
        write_command(w, 145, J, stamp_ns=stamp(13))
        write_state(w, 150, 14)
        write_command(w, 152, K, stamp_ns=stamp(14))
        w.write('/toy/episode', INT32, int32(2), 155 * MS)
        write_state(w, 160, 15)
        write_state(w, 170, 16)


#: (from state, to state, action, episode id), worked out by hand from the timeline above.
EXPECTED = [
    # s0 -> s1: no command since episode 0 began (Z came before the reset): dropped
    (1, 2, (0.5, 0.5), 0),        # A
    (2, 3, (0.5, 0.5), 0),        # nothing new: A persists
    (3, 4, (-1.0, -1.0), 0),      # C then B: the newest wins, reordered to (a, b)
    (4, 5, (0.0, 0.0), 0),        # the hold, whatever its stamp
    (5, 6, (0.0, 0.0), 0),        # D not here yet: the hold persists
    (6, 7, (-0.25, 0.75), 0),     # D (late), the malformed command after it is skipped
    # s7 -> s8 and s8 -> s9: s8 has no velocity
    (9, 10, (0.125, 0.125), 0),   # G: at s10's time but written before it
    (10, 11, (-0.125, -0.125), 0),  # F: at s10's time but written after it
    # s11 -> s12 spans episodes; s12 -> s13: the reset dropped F, no command yet
    (13, 14, (1.5, 0.0), 1),      # J, not clipped
    # s14 -> s15 spans episodes
    (15, 16, (-0.375, -0.375), 2),  # K: received after s14, applied after the reset
]


@pytest.fixture
def synthetic(tmp_path) -> Path:
    path = tmp_path / 'synthetic'
    write_synthetic(path)
    return path


def test_synthetic_bag_gives_the_hand_computed_rows(synthetic, toy_spec, caplog):
    with caplog.at_level(logging.WARNING, logger='dexmpc_ros.data.transitions'):
        data = transitions_from_bag(synthetic, toy_spec)
    assert data.state_names == STATE_NAMES and data.action_names == ('a', 'b')
    assert len(data) == len(EXPECTED)
    np.testing.assert_array_equal(data.states, [state_vector(i) for i, _, _, _ in EXPECTED])
    np.testing.assert_array_equal(data.next_states,
                                  [state_vector(j) for _, j, _, _ in EXPECTED])
    np.testing.assert_array_equal(data.actions, [a for _, _, a, _ in EXPECTED])
    np.testing.assert_array_equal(data.episode, [e for _, _, _, e in EXPECTED])
    np.testing.assert_array_equal(data.stamps_ns, [stamp(i) for i, _, _, _ in EXPECTED])
    assert data.states.dtype == np.float64 and data.episode.dtype == np.int64
    assert [r.message for r in caplog.records] == [
        f"{synthetic}: skipped 1 malformed command(s); first at bag time {75 * MS} ns: "
        f"joint names ['a'] are not a permutation of ['a', 'b']"]


def test_synthetic_bag_delta_actions_are_each_commands_step_from_its_state(synthetic, toy_spec):
    """The same rows; an action is (command - measured position) / step bound, per joint."""
    absolute = transitions_from_bag(synthetic, toy_spec)
    data = transitions_from_bag(synthetic, toy_spec, action_space='delta')
    for name in ('states', 'next_states', 'episode', 'stamps_ns'):
        np.testing.assert_array_equal(getattr(data, name), getattr(absolute, name))
    # toy_spec: step = min(max_step, velocity / 10 Hz) = (0.1, 0.1) for (a, b); state i
    # measures a = i/10, b = 1 + i/10; the command of action (a, b - 1) is (a, b)
    expected = [((a - i / 10) / 0.1, (b + 1 - (1 + i / 10)) / 0.1)
                for i, _, (a, b), _ in EXPECTED]
    np.testing.assert_allclose(data.actions, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(data.actions[:3], [[4.0, 4.0], [3.0, 3.0], [-13.0, -13.0]],
                               rtol=0, atol=1e-12)


def test_episodes_are_chains_for_multi_step_error(synthetic, toy_spec):
    chains = transitions_from_bag(synthetic, toy_spec).episodes()
    # episode 0 breaks at the dropped s8; the others are one chain each
    expected = [(range(1, 8), [A, A, (-1.0, 0.0), H, H, D]), (range(9, 12), [G, F]),
                (range(13, 15), [J]), (range(15, 17), [K])]
    assert len(chains) == len(expected)
    for (states, actions), (ids, commands) in zip(chains, expected):
        np.testing.assert_array_equal(states, [state_vector(i) for i in ids])
        np.testing.assert_array_equal(actions, [(a, b - 1) for a, b in commands])


def test_split_by_episode_is_seeded_and_keeps_episodes_whole(synthetic, toy_spec):
    data = transitions_from_bag(synthetic, toy_spec)
    train, validation = data.split_by_episode([1, 2])
    np.testing.assert_array_equal(train.episode, [0] * 8)
    np.testing.assert_array_equal(validation.episode, [1, 2])
    np.testing.assert_array_equal(validation.states, [state_vector(13), state_vector(15)])

    # 0.5 of 3 episodes rounds to 2 held out; the same seed draws the same ones
    splits = [data.split_by_episode(0.5, seed=7) for _ in range(2)]
    for train, validation in splits:
        assert len(validation.episode_ids()) == 2 and len(train.episode_ids()) == 1
        assert not set(train.episode_ids()) & set(validation.episode_ids())
        assert len(train) + len(validation) == len(data)
    np.testing.assert_array_equal(splits[0][1].episode, splits[1][1].episode)
    # a small fraction still holds out one episode, never all of them
    assert len(data.split_by_episode(0.01)[1].episode_ids()) == 1
    assert len(data.split_by_episode(0.99)[0].episode_ids()) == 1
    train, validation = data.split_by_episode(0.0)
    assert len(train) == len(data) and len(validation) == 0
    assert validation.states.shape == (0, 8) and validation.actions.shape == (0, 2)
    with pytest.raises(ValueError, match=r'\[5\] are not in the set'):
        data.split_by_episode([5])
    with pytest.raises(ValueError, match='in \\[0, 1\\)'):
        data.split_by_episode(1.0)
    with pytest.raises(ValueError, match='at least 2 episodes'):
        data.split_by_episode([1, 2])[1].split_by_episode([1])[1].split_by_episode(0.5)


def test_concat_and_several_bags_keep_episode_ids_unique(tmp_path, toy_spec):
    write_synthetic(tmp_path / 'one')
    write_synthetic(tmp_path / 'two')
    data, sources = transitions_from_bags([tmp_path / 'one', str(tmp_path / 'two')], toy_spec)
    assert sources == [str((tmp_path / 'one').resolve()), str((tmp_path / 'two').resolve())]
    ids = [e for _, _, _, e in EXPECTED]
    np.testing.assert_array_equal(data.episode, ids + [i + 3 for i in ids])
    np.testing.assert_array_equal(data.states[len(EXPECTED):], data.states[:len(EXPECTED)])

    train, validation = data.split_by_episode([0, 4])
    rejoined = Transitions.concat([train, validation], renumber=False)
    assert sorted(rejoined.episode.tolist()) == sorted(data.episode.tolist())
    with pytest.raises(ValueError, match='state names'):
        Transitions.concat([data, Transitions(data.states[:, :7], data.actions,
                                              data.next_states[:, :7], data.episode,
                                              data.stamps_ns, STATE_NAMES[:7], ('a', 'b'))])
    with pytest.raises(ValueError, match='shape'):
        Transitions(data.states, data.actions[:, :1], data.next_states, data.episode,
                    data.stamps_ns, STATE_NAMES, ('a', 'b'))
    with pytest.raises(ValueError, match='at least one'):
        transitions_from_bags([], toy_spec)


def test_a_given_layout_selects_and_orders_columns(synthetic, toy_spec):
    layout = StateLayout(('task/y', 'vel/b', 'pos/a'))
    data = transitions_from_bag(synthetic, toy_spec, layout=layout)
    np.testing.assert_array_equal(data.states, [[-i, -i, i / 10] for i, _, _, _ in EXPECTED])
    joints_only = transitions_from_bag(synthetic, toy_spec, task_names=())
    assert joints_only.state_names == STATE_NAMES[:6] and len(joints_only) == len(EXPECTED)
    with pytest.raises(BagError, match=r"synthetic: task_state names \['x', 'y'\] lack "
                                       r"\['task/z'\]"):
        transitions_from_bag(synthetic, toy_spec, task_names=['z'])
    with pytest.raises(ValueError, match=r"\['vel/q'\] name no joint"):
        transitions_from_bag(synthetic, toy_spec, layout=StateLayout(('vel/q',)))


def test_a_command_is_never_before_the_state_it_was_computed_from(tmp_path, toy_spec):
    """The recorder received D (stamped with s2) before s2: D still drives s2 -> s3."""
    path = tmp_path / 'early'
    with BagWriter(path) as w:
        write_command(w, 5, A, stamp_ns=STAMP0 - 100 * MS)
        write_state(w, 10, 0)
        write_state(w, 20, 1)
        write_command(w, 25, C, stamp_ns=stamp(1))
        write_command(w, 29, D, stamp_ns=stamp(2))
        write_state(w, 30, 2)
        write_state(w, 40, 3)
    data = transitions_from_bag(path, toy_spec)
    np.testing.assert_array_equal(data.states, [state_vector(i) for i in range(3)])
    np.testing.assert_array_equal(data.actions, [(a, b - 1) for a, b in (A, C, D)])
    np.testing.assert_array_equal(data.next_states, [state_vector(i) for i in range(1, 4)])


def test_velocity_robot_commands_velocities(tmp_path, toy_velocity_spec):
    path = tmp_path / 'roach'
    with BagWriter(path) as w:
        for i in range(4):
            w.write('/r/joint_states', JOINT_STATE,
                    joint_state(STAMP0 + i, ['left', 'right'], [100.0 + i, 200.0 + i],
                                [i, 2.0 * i]), 10 * i * MS)
            w.write('/r/task_state', JOINT_STATE, joint_state(STAMP0 + i, ['d'], [-i]),
                    10 * i * MS)
            if i == 0:
                # position targets for a velocity robot: malformed, skipped
                write_command(w, 1, [1.0, 2.0], names=['left', 'right'], ns='/r')
            if i == 1:
                write_command(w, 15, [25.0, -50.0], names=['right', 'left'], ns='/r',
                              field='velocities')
    data = transitions_from_bag(path, toy_velocity_spec)
    # continuous joints: no pos/ columns; velocity limits +-50 -> action = command / 50
    assert data.state_names == ('vel/left', 'vel/right', 'task/d')
    np.testing.assert_array_equal(data.states, [[1.0, 2.0, -1.0], [2.0, 4.0, -2.0]])
    np.testing.assert_array_equal(data.actions, [[-1.0, 0.5], [-1.0, 0.5]])
    np.testing.assert_array_equal(data.next_states, [[2.0, 4.0, -2.0], [3.0, 6.0, -3.0]])
    np.testing.assert_array_equal(data.episode, [0, 0])  # no episode topic: one episode


# Errors -------------------------------------------------------------------------------------
def test_task_state_names_changing_is_a_bag_error(tmp_path, toy_spec):
    path = tmp_path / 'changing'
    with BagWriter(path) as w:
        write_state(w, 10, 0)
        write_command(w, 15, A)
        write_state(w, 20, 1, task_names=['x', 'z'])
        write_state(w, 30, 2)
    expected = (rf"task_state stamped {stamp(1)} ns \(bag time {20 * MS} ns\) "
                r"has names \['x', 'z'\]")
    with pytest.raises(BagError, match=f'{at(path)}: {expected}'):
        transitions_from_bag(path, toy_spec)


def test_empty_bags_are_bag_errors(tmp_path, toy_spec):
    nothing = tmp_path / 'nothing'
    BagWriter(nothing).close()
    with pytest.raises(BagError, match=at(nothing) + ": 'joint_states' matches no topic"):
        transitions_from_bag(nothing, toy_spec)

    silent = tmp_path / 'silent'
    with BagWriter(silent) as w:
        for topic, msgtype in (('joint_states', JOINT_STATE), ('task_state', JOINT_STATE),
                               ('command', TRAJECTORY), ('episode', INT32)):
            w.add_topic(f'/toy/{topic}', msgtype)
        # one message, so that metadata.yaml is written and lists the silent topics
        w.write('/toy/episode', INT32, int32(0), 0)
    with pytest.raises(BagError, match=at(silent) + ': no message on /toy/joint_states'):
        transitions_from_bag(silent, toy_spec)

    # states but no command: nothing the model could learn from
    uncommanded = tmp_path / 'uncommanded'
    with BagWriter(uncommanded) as w:
        w.add_topic('/toy/command', TRAJECTORY)
        for i in range(3):
            write_state(w, 10 * i, i)
    expected = r'no transition: 3 joint_states \(3 complete states\), 0 commands'
    with pytest.raises(BagError, match=f'{at(uncommanded)}: {expected}'):
        transitions_from_bag(uncommanded, toy_spec)


def test_missing_and_corrupt_bags_are_bag_errors(tmp_path, synthetic, toy_spec):
    with pytest.raises(BagError, match='nowhere: no such bag directory'):
        transitions_from_bag(tmp_path / 'nowhere', toy_spec)
    segment = synthetic / 'synthetic_1.mcap'
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 3:len(raw) // 3 + 64] = b'\xff' * 64
    segment.write_bytes(bytes(raw))
    with pytest.raises(BagError, match=at(segment) + ': unreadable or corrupt segment'):
        transitions_from_bag(synthetic, toy_spec)
    segment.write_bytes(bytes(raw[:len(raw) // 2]))
    with pytest.raises(BagError, match=at(segment) + ': unreadable or corrupt segment'):
        transitions_from_bag(synthetic, toy_spec)
    # and several bags: one bad bag fails the whole read, no partial result
    good = tmp_path / 'good'
    write_synthetic(good)
    with pytest.raises(BagError, match='synthetic_1.mcap'):
        transitions_from_bags([good, synthetic], toy_spec)


def test_two_robots_need_a_namespace(tmp_path, toy_spec):
    path = tmp_path / 'two_robots'
    with BagWriter(path) as w:
        for ns, offset in (('/left', 0), ('/right', 10)):
            for i in range(2):
                write_state(w, 10 * i, i + offset, ns=ns)
                write_command(w, 10 * i + 5, A, ns=ns)
    with pytest.raises(BagError, match='several topics'):
        transitions_from_bag(path, toy_spec)
    right = transitions_from_bag(path, toy_spec, namespace='right')
    np.testing.assert_array_equal(right.states, [state_vector(10)])
    np.testing.assert_array_equal(right.next_states, [state_vector(11)])


# The hand twin, replayed through a bag ---------------------------------------------------------
class TwinRecording:
    """
    The twin node's loop (TwinNode._tick / _start_episode) in-process, its messages
    written to a bag the way the recorder writes them, and the (s, a, s') it really ran.

    ``sim_time``: stamps are the twin's simulated time (``publish_clock``) and the
    recorder's receive time is the last /clock, so a command received between two steps
    shares the previous state's bag time. Otherwise every message gets its own, later
    receive time, the state stamps are the time of publication.

    ``markers``: the twin as it is, publishing ``episode_start`` and keeping state stamps
    strictly increasing (a sim-time reset state 1 ns after the last state); False: the
    twin before, whose bags have ``episode`` only and repeat a stamp at a sim-time reset.
    ``race``: at an automatic reset the recorder receives the old episode's last state
    after the ``episode`` (and ``episode_start``) message, as it often does.
    """

    def __init__(self, path: Path, spec, sim_time: bool, seed: int, markers: bool = True,
                 race: bool = False) -> None:
        self.spec, self.sim_time, self.markers, self.race = spec, sim_time, markers, race
        self.twin = make_twin('hand24', spec=spec, task='valve', seed=seed)
        self.layout = StateLayout.for_robot(spec, VALVE_STATE_NAMES)
        self.writer = BagWriter(path)
        self.seed, self.messages, self.last_stamp, self.clock = seed, 0, -1, 0
        self.episode = -1
        self.rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
        self.reset_states: list[np.ndarray] = []
        self.deferred: list = []     # the old episode's last state, not received yet

    def receive_ns(self) -> int:
        self.messages += 1
        if self.sim_time:
            return self.clock
        return 10**12 + int(round(self.twin.time * 1e9)) + 1000 * self.messages

    def state_stamp(self) -> int:
        if self.sim_time:
            stamp = int(round(self.twin.time * 1e9))
            if self.markers:
                stamp = max(stamp, self.last_stamp + 1)
        else:
            stamp = self.receive_ns()
        self.last_stamp = stamp
        return stamp

    def publish_state(self, stamp: int | None = None, defer: bool = False) -> np.ndarray:
        stamp = self.state_stamp() if stamp is None else stamp
        if self.sim_time:       # /clock goes out just before joint_states
            self.clock = stamp
        joints = self.twin.joints()
        names, values = self.twin.task_state()
        js = joint_state(stamp, self.spec.joint_names, joints.position, joints.velocity,
                         joints.effort)
        ts = joint_state(stamp, names, values)

        def write() -> None:
            self.writer.write('/hand/joint_states', JOINT_STATE, js, self.receive_ns())
            self.writer.write('/hand/task_state', JOINT_STATE, ts, self.receive_ns())
        if defer:
            self.deferred.append(write)
        else:
            write()
        obs = Observation(stamp, joints.position, joints.velocity, tuple(names), values)
        return self.layout.vector(obs, self.spec.joint_names)

    def start_episode(self) -> np.ndarray:
        self.episode += 1
        self.twin.reset(self.seed + self.episode)
        stamp = self.state_stamp()
        self.writer.write('/hand/episode', INT32, int32(self.episode), self.receive_ns())
        if self.markers:
            self.writer.write('/hand/episode_start', HEADER,
                              episode_start(stamp, self.episode), self.receive_ns())
        for write in self.deferred:
            write()
        self.deferred.clear()
        self.current = None          # the reset put the actuators back to the default pose
        self.reset_states.append(self.publish_state(stamp))
        return self.reset_states[-1]

    def run(self, steps: int, episode_steps: int, reset_at: int, skip: set[int]) -> None:
        scaler = ActionScaler(self.spec)
        rng = np.random.default_rng(self.seed)
        state, step_in_episode = self.start_episode(), 0
        for k in range(steps):
            pending = None
            if k not in skip:        # the controller's command, computed from `state`
                pending = scaler.to_command(rng.uniform(-1.0, 1.0, len(self.spec.command_names)))
                self.writer.write('/hand/command', TRAJECTORY, command(
                    self.last_stamp, self.spec.command_names, pending), self.receive_ns())
            if k == reset_at:        # reset_episode service: the tick starts with the reset
                state, step_in_episode = self.start_episode(), 0
            if pending is not None:
                self.twin.apply_command(pending)
                self.current = scaler.to_action(pending)
            self.twin.step()
            step_in_episode += 1
            resets = step_in_episode >= episode_steps
            following = self.publish_state(defer=self.race and resets)
            if self.current is not None:
                self.rows.append((state, self.current, following, self.episode))
            state = following
            if resets:
                state, step_in_episode = self.start_episode(), 0
        self.writer.close()
        self.twin.close()


def assert_rows_are_what_the_twin_ran(data: Transitions, recording: TwinRecording) -> None:
    rows = recording.rows
    np.testing.assert_array_equal(data.states, [r[0] for r in rows])
    np.testing.assert_array_equal(data.actions, [r[1] for r in rows])
    np.testing.assert_array_equal(data.next_states, [r[2] for r in rows])
    np.testing.assert_array_equal(data.episode, [r[3] for r in rows])
    # no transition crosses a reset: none ends in a reset state
    for reset_state in recording.reset_states:
        assert not np.any(np.all(data.next_states == reset_state, axis=1))


@pytest.mark.parametrize('race', [False, True], ids=['in_order', 'race'])
@pytest.mark.parametrize('sim_time', [True, False], ids=['sim_time', 'wall_clock'])
def test_hand_twin_transitions_match_what_the_twin_ran(tmp_path, sim_time, race):
    from dexmpc_ros.learning.dynamics.model import DeltaDynamics
    from dexmpc_ros.learning.dynamics.config import DynamicsConfig

    spec = load_robot_spec('hand24')
    recording = TwinRecording(tmp_path / 'hand', spec, sim_time, seed=3, race=race)
    # episodes: steps 0-11 (automatic reset after 12 steps), 12-19 (reset service at the
    # start of step 20, a command already on its way), 20-31; no command at step 12 (the
    # first step after the automatic reset) nor at 5 and 25 (the last command persists)
    recording.run(steps=32, episode_steps=12, reset_at=20, skip={5, 12, 25})
    rows = recording.rows
    assert len(rows) == 31 and [r[3] for r in rows].count(1) == 7

    data = transitions_from_bag(tmp_path / 'hand', spec)
    assert data.state_names == recording.layout.names
    assert data.action_names == tuple(spec.command_names)
    assert_rows_are_what_the_twin_ran(data, recording)
    assert np.bincount(data.episode).tolist() == [12, 7, 12]
    assert not np.array_equal(data.states, data.next_states)   # the hand moved

    # what the learner does next: episodes for the multi-step validation error
    chains = data.episodes()
    assert [len(a) for _, a in chains] == [12, 7, 12]
    model = DeltaDynamics(data.layout.dim, len(data.action_names),
                          DynamicsConfig(ensemble_size=1, hidden=(8,)))
    model.fit(data.states, data.actions, data.next_states, epochs=0)
    assert model.multi_step_error(chains, horizon=5)['windows'] == (12 - 4) + (7 - 4) + (12 - 4)


@pytest.mark.parametrize('sim_time', [True, False], ids=['sim_time', 'wall_clock'])
def test_bags_without_episode_start_split_half_a_tick_after_episode(tmp_path, sim_time):
    """Bags of the twin before ``episode_start``: automatic resets, raced at the recorder."""
    spec = load_robot_spec('hand24')
    recording = TwinRecording(tmp_path / 'old', spec, sim_time, seed=5, markers=False,
                              race=True)
    recording.run(steps=30, episode_steps=10, reset_at=-1, skip={10})
    assert 'episode_start' not in {t.rsplit('/', 1)[-1] for t in
                                   bag_info(tmp_path / 'old').topics}
    data = transitions_from_bag(tmp_path / 'old', spec)
    assert_rows_are_what_the_twin_ran(data, recording)
    # episode 1 starts without a command (step 10 skipped): 9 transitions
    assert np.bincount(data.episode).tolist() == [10, 9, 10]


def test_a_rotation_while_reading_is_no_count_mismatch(tmp_path, toy_spec, monkeypatch):
    """The recorder closes a segment between the metadata read and the segment reads."""
    path = tmp_path / 'live'
    writer = BagWriter(path, BagWriterConfig(flush_period_s=600.0))
    real = transitions.bag_info
    reads = []

    def rotate_after_first_read(bag):
        info = real(bag)
        if not reads:   # states 3 and 4, in a segment the reader must not see
            write_command(writer, 35, A)
            write_state(writer, 40, 3)
            write_state(writer, 50, 4)
            assert writer.flush()
        reads.append(bag)
        return info
    try:
        write_state(writer, 10, 0)
        write_command(writer, 15, A)
        write_state(writer, 20, 1)
        write_state(writer, 30, 2)
        assert writer.flush()
        monkeypatch.setattr(transitions, 'bag_info', rotate_after_first_read)
        data = transitions_from_bag(path, toy_spec)
    finally:
        writer.close()
    np.testing.assert_array_equal(data.states, [state_vector(0), state_vector(1)])
    np.testing.assert_array_equal(data.next_states, [state_vector(1), state_vector(2)])
    assert len(transitions_from_bag(path, toy_spec)) == 4   # all of it, once closed


def test_delta_actions_are_the_step_from_the_measured_state(tmp_path):
    from dexmpc_ros.core.action_space import DeltaActionScaler

    spec = load_robot_spec('hand24')
    recording = TwinRecording(tmp_path / 'hand', spec, sim_time=False, seed=4)
    recording.run(steps=20, episode_steps=10, reset_at=-1, skip={3})
    absolute = transitions_from_bag(tmp_path / 'hand', spec)
    delta = transitions_from_bag(tmp_path / 'hand', spec, action_space='delta')
    np.testing.assert_array_equal(delta.states, absolute.states)
    q = absolute.states[:, absolute.layout.columns(
        ['pos/' + n for n in spec.command_names])]
    command = ActionScaler(spec).to_command_unclipped(absolute.actions)
    expected = (command - q) / DeltaActionScaler(spec).step
    np.testing.assert_allclose(delta.actions, expected, atol=1e-9)
    assert np.abs(delta.actions).max() > 1.0  # random targets jump further than one step
    with pytest.raises(ValueError, match='action_space'):
        transitions_from_bag(tmp_path / 'hand', spec, action_space='relative')
