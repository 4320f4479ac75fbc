"""
Bag reader without ROS: topic selection, JointState/scalar arrays, episode split (by
header stamp despite the recorder's receive-order race at resets, and the bag-time
fallback of older bags), reading with metadata read before a rotation, and the errors a
broken bag must raise (never a half-loaded bag).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores, get_typestore

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.core.message_fields import ns_to_sec_nanosec
from dexmpc_ros.data import bag_reader
from dexmpc_ros.data.bag_reader import (Episode, bag_info, episode_slices, episodes,
                                        iter_messages, joint_state_series, read_bag,
                                        resolve_topics, scalar_series, split_states,
                                        split_ticks)
from dexmpc_ros.data.bag_writer import BagWriter, BagWriterConfig

STORE = get_typestore(Stores.ROS2_JAZZY)
JOINT_STATE = 'sensor_msgs/msg/JointState'
HEADER = 'std_msgs/msg/Header'
INT32 = 'std_msgs/msg/Int32'
FLOAT64 = 'std_msgs/msg/Float64'


def joint_state(stamp_ns: int, names: list[str], position: list[float],
                velocity: list[float]) -> bytes:
    types = STORE.types
    sec, nsec = ns_to_sec_nanosec(stamp_ns)
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec), frame_id='')
    msg = types[JOINT_STATE](header=header, name=names, position=np.array(position, float),
                             velocity=np.array(velocity, float), effort=np.array([], float))
    return bytes(STORE.serialize_cdr(msg, JOINT_STATE))


def scalar(msgtype: str, value: float) -> bytes:
    return bytes(STORE.serialize_cdr(STORE.types[msgtype](data=value), msgtype))


def header_msg(stamp_ns: int, frame_id: str):
    types = STORE.types
    sec, nsec = ns_to_sec_nanosec(stamp_ns)
    return types[HEADER](stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec),
                         frame_id=frame_id)


def header(stamp_ns: int, frame_id: str) -> bytes:
    return bytes(STORE.serialize_cdr(header_msg(stamp_ns, frame_id), HEADER))


@pytest.fixture
def bag(tmp_path: Path) -> Path:
    """
    Time 0..950 ns every 50: joint_states k at t=50k (position (k, 10k), velocity (-k, 0));
    message 7 lists its joints in reverse order and has no velocity; episode 0 starts at
    t=100, episode 1 at t=525; reward k/2 at t=50k+1; header stamps are t + 1 s.
    """
    path = tmp_path / 'bag'
    with BagWriter(path) as writer:
        for k in range(20):
            t = 50 * k
            if k == 7:
                data = joint_state(t + 10**9, ['b', 'a'], [10.0 * k, k], [])
            else:
                data = joint_state(t + 10**9, ['a', 'b'], [k, 10.0 * k], [-k, 0.0])
            writer.write('/robot/joint_states', JOINT_STATE, data, t)
            writer.write('/robot/reward', 'std_msgs/msg/Float64',
                         scalar('std_msgs/msg/Float64', k / 2), t + 1)
            if k == 9:
                writer.flush()
        writer.write('/robot/episode', 'std_msgs/msg/Int32', scalar('std_msgs/msg/Int32', 0), 100)
        writer.write('/robot/episode', 'std_msgs/msg/Int32', scalar('std_msgs/msg/Int32', 1), 525)
    return path


def test_read_bag_selects_topics_by_relative_name(bag):
    loaded = read_bag(bag, ['joint_states', '/robot/episode'])
    assert set(loaded) == {'/robot/joint_states', '/robot/episode'}
    assert [t for t, _ in loaded['/robot/joint_states']] == list(range(0, 1000, 50))
    info = bag_info(bag)
    assert info.message_count == 42 and len(info.files) == 2
    assert info.topics['/robot/reward'].msgtype == 'std_msgs/msg/Float64'


def test_resolve_topics_refuses_unknown_and_ambiguous_names():
    with pytest.raises(BagError, match='no topic'):
        resolve_topics(['/a/x'], ['y'])
    with pytest.raises(BagError, match='several'):
        resolve_topics(['/a/x', '/b/x'], ['x'])
    assert resolve_topics(['/a/x', '/b/x'], ['/b/x']) == {'/b/x': '/b/x'}


def test_joint_state_series_reorders_and_marks_missing_fields(bag):
    series = joint_state_series(read_bag(bag)['/robot/joint_states'])
    k = np.arange(20)
    assert series.names == ('a', 'b')
    np.testing.assert_array_equal(series.receive_ns, 50 * k)
    np.testing.assert_array_equal(series.stamps, 50 * k + 10**9)
    np.testing.assert_array_equal(series.position, np.stack([k, 10.0 * k], axis=1))
    assert np.isnan(series.velocity[7]).all()
    np.testing.assert_array_equal(series.velocity[8], [-8.0, 0.0])
    assert np.isnan(series.effort).all()
    only_b = joint_state_series(read_bag(bag)['/robot/joint_states'], ['b'])
    np.testing.assert_array_equal(only_b.position[:, 0], 10.0 * k)
    with pytest.raises(BagError, match='lacks'):
        joint_state_series(read_bag(bag)['/robot/joint_states'], ['c'])


def test_scalar_series(bag):
    stamps, values = scalar_series(read_bag(bag)['/robot/reward'])
    np.testing.assert_array_equal(stamps, 50 * np.arange(20) + 1)
    np.testing.assert_array_equal(values, np.arange(20) / 2)


def test_episodes_split_bag_time(bag):
    loaded = read_bag(bag)
    eps = episodes(loaded)
    # The last message is the joint_states/reward pair at t=950/951.
    assert eps == [Episode(0, 100, 525), Episode(1, 525, 952)]
    series = joint_state_series(loaded['/robot/joint_states'])
    first, second = episode_slices(series.receive_ns, eps)
    np.testing.assert_array_equal(series.receive_ns[first], np.arange(100, 525, 50))
    np.testing.assert_array_equal(series.receive_ns[second], np.arange(550, 1000, 50))
    assert len(series.between(eps[1].start_ns, eps[1].end_ns)) == 9
    assert eps[0].contains(524) and not eps[0].contains(525)
    with pytest.raises(BagError, match='episode'):
        episodes({'/robot/joint_states': loaded['/robot/joint_states']})


def edit_metadata(bag: Path, edit) -> None:
    path = bag / 'metadata.yaml'
    doc = yaml.safe_load(path.read_text())
    edit(doc['rosbag2_bagfile_information'])
    path.write_text(yaml.safe_dump(doc))


def test_broken_bags_are_bag_errors_naming_the_file(bag, tmp_path):
    with pytest.raises(BagError, match='no such bag directory'):
        read_bag(tmp_path / 'nowhere')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match='metadata.yaml: missing'):
        read_bag(tmp_path / 'empty')

    original = (bag / 'metadata.yaml').read_text()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: [unclosed')
    with pytest.raises(BagError, match='metadata.yaml: unreadable'):
        read_bag(bag)
    (bag / 'metadata.yaml').write_text(original)
    edit_metadata(bag, lambda m: m.pop('relative_file_paths'))
    with pytest.raises(BagError, match="metadata.yaml: invalid.*relative_file_paths"):
        read_bag(bag)

    (bag / 'metadata.yaml').write_text(original)
    (bag / 'bag_1.mcap').rename(bag / 'moved.mcap')
    with pytest.raises(BagError, match='bag_1.mcap'):
        read_bag(bag)
    (bag / 'moved.mcap').rename(bag / 'bag_1.mcap')

    def drop_second_segment(meta: dict) -> None:
        meta['relative_file_paths'] = meta['relative_file_paths'][:1]
    edit_metadata(bag, drop_second_segment)
    with pytest.raises(BagError, match='lists 20 messages on /robot/joint_states, the '
                                       'segments hold 10'):
        read_bag(bag)


# Episodes at resets: the receive-order race ----------------------------------------------------
T0 = 1_700_000_000 * 10**9
PERIOD = 100_000_000      # 10 Hz [ns]
US = 1_000
#: (episode, step) of each joint_states, in publication order: the recorder joins during
#: episode 0 (its reset state and step 1 are not recorded); episode 2 is unfinished.
ROWS = [(0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (2, 2)]
#: (episode, step) of each reward, in bag order: one per step, none with a reset state.
REWARDS = [(0, 2), (0, 3), (0, 4), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]


def write_reset_race(path: Path, markers: bool = True) -> None:
    """
    The twin's per-tick topics as the recorder receives them, with the race at resets.

    Tick g happens at T0 + g * PERIOD; a step state is stamped with its tick, received
    200 us later, its reward 300 us later. Episode 1 starts at tick 4, episode 2 at tick
    7, each right after the previous episode's last step in the same tick; the reset
    state is stamped 1 ns after that last state, and the messages of the reset tick are
    received 50 us apart in a raced order: at tick 4 the ``episode``/``episode_start``
    markers come before the old episode's last state, at tick 7 the old episode's reward
    comes after the new reset state. ``markers`` False: an older bag without
    ``episode_start``.
    """
    with BagWriter(path) as w:
        def state(e: int, j: int, stamp: int, t: int) -> None:
            w.write('/robot/joint_states', JOINT_STATE,
                    joint_state(stamp, ['episode', 'step'], [e, j], []), t)

        def reward(e: int, j: int, t: int) -> None:
            w.write('/robot/reward', FLOAT64, scalar(FLOAT64, 10.0 * e + j), t)

        def marker(e: int, stamp: int, t: int) -> None:
            w.write('/robot/episode', INT32, scalar(INT32, e), t)
            if markers:
                w.write('/robot/episode_start', HEADER, header(stamp, str(e)), t)

        marker(0, T0, T0 + 3 * PERIOD // 2)   # latched: heard when the recorder joins
        for tick, (e, j) in zip(range(2, 4), [(0, 2), (0, 3)]):
            state(e, j, T0 + tick * PERIOD, T0 + tick * PERIOD + 200 * US)
            reward(e, j, T0 + tick * PERIOD + 300 * US)
        t4, t7 = T0 + 4 * PERIOD, T0 + 7 * PERIOD
        race = [lambda t: marker(1, t4 + 1, t), lambda t: state(0, 4, t4, t),
                lambda t: reward(0, 4, t), lambda t: state(1, 0, t4 + 1, t)]
        for i, write in enumerate(race):
            write(t4 + (100 + 50 * i) * US)
        for tick, j in zip(range(5, 7), (1, 2)):
            state(1, j, T0 + tick * PERIOD, T0 + tick * PERIOD + 200 * US)
            reward(1, j, T0 + tick * PERIOD + 300 * US)
        race = [lambda t: state(1, 3, t7, t), lambda t: marker(2, t7 + 1, t),
                lambda t: state(2, 0, t7 + 1, t), lambda t: reward(1, 3, t)]
        for i, write in enumerate(race):
            write(t7 + (100 + 50 * i) * US)
        for tick, j in zip(range(8, 10), (1, 2)):
            state(2, j, T0 + tick * PERIOD, T0 + tick * PERIOD + 200 * US)
            reward(2, j, T0 + tick * PERIOD + 300 * US)


def test_states_split_by_header_stamp_despite_the_race_at_resets(tmp_path):
    write_reset_race(tmp_path / 'bag')
    loaded = read_bag(tmp_path / 'bag')
    series = joint_state_series(loaded['/robot/joint_states'])
    assert [tuple(int(v) for v in row) for row in series.position] == ROWS
    eps = episodes(loaded)
    assert [(ep.index, ep.stamp_ns) for ep in eps] == \
        [(0, T0), (1, T0 + 4 * PERIOD + 1), (2, T0 + 7 * PERIOD + 1)]
    # the race is in the bag: by bag time, episode 0's last state is in episode 1
    assert eps[1].contains(int(series.receive_ns[ROWS.index((0, 4))]))

    split = split_states(series, eps)
    assert split.position.tolist() == [e for e, _ in ROWS]
    assert split.reset.tolist() == [j == 0 for _, j in ROWS]
    assert [split.rows(k).tolist() for k in range(3)] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    reward_ns, values = scalar_series(loaded['/robot/reward'])
    assert values.tolist() == [10.0 * e + j for e, j in REWARDS]
    assert split_ticks(reward_ns, series, split).tolist() == [e for e, _ in REWARDS]


def test_bags_without_episode_start_fall_back_to_bag_time_half_a_tick_late(tmp_path):
    write_reset_race(tmp_path / 'old', markers=False)
    loaded = read_bag(tmp_path / 'old')
    assert '/robot/episode_start' not in loaded
    series = joint_state_series(loaded['/robot/joint_states'])
    eps = episodes(loaded)
    assert [(ep.index, ep.stamp_ns) for ep in eps] == [(0, None), (1, None), (2, None)]
    split = split_states(series, eps)
    assert split.position.tolist() == [e for e, _ in ROWS]
    assert split.reset.tolist() == [j == 0 for _, j in ROWS]
    reward_ns, _ = scalar_series(loaded['/robot/reward'])
    assert split_ticks(reward_ns, series, split).tolist() == [e for e, _ in REWARDS]
    # no states at all: rewards by bag time, half a tick after each episode message
    none = split_states(joint_state_series([]), eps)
    assert split_ticks(reward_ns, joint_state_series([]), none).tolist() == \
        [e for e, _ in REWARDS]


def test_episode_start_before_the_first_marker_and_bad_frame_ids():
    stamp = T0 + 5 * PERIOD
    # the recorder heard episodes 3 and 4 only on ``episode``, 5 on both
    bag = {'/r/episode': [(10, STORE.types[INT32](data=3)), (20, STORE.types[INT32](data=4)),
                          (30, STORE.types[INT32](data=5))],
           '/r/episode_start': [(31, header_msg(stamp, '5'))]}
    assert episodes(bag) == [Episode(3, 10, 20), Episode(4, 20, 31), Episode(5, 31, 32, stamp)]
    bag['/r/episode_start'] = [(31, header_msg(stamp, 'five'))]
    with pytest.raises(BagError, match="/r/episode_start at bag time 31 ns: frame_id 'five'"):
        episodes(bag)


# Reading while the recorder rotates segments ---------------------------------------------------
def write_group(writer: BagWriter, first: int, count: int) -> None:
    for k in range(first, first + count):
        writer.write('/robot/joint_states', JOINT_STATE,
                     joint_state(k, ['a'], [float(k)], [0.0]), 10 * k)
    assert writer.flush()


def test_reading_with_earlier_metadata_ignores_a_segment_appended_since(tmp_path):
    path = tmp_path / 'live'
    writer = BagWriter(path, BagWriterConfig(flush_period_s=600.0))
    try:
        write_group(writer, 0, 5)
        info = bag_info(path)
        write_group(writer, 5, 3)   # the recorder's next rotation
        assert len(bag_info(path).files) == 2 and len(info.files) == 1
        loaded = read_bag(path, info=info)
        assert [t for t, _ in loaded['/robot/joint_states']] == [0, 10, 20, 30, 40]
        assert len(list(iter_messages(path, info=info))) == 5
        assert [t for t, _ in read_bag(path)['/robot/joint_states']] == \
            [10 * k for k in range(8)]
    finally:
        writer.close()


def test_a_rotation_between_metadata_and_segments_is_no_count_mismatch(tmp_path, monkeypatch):
    path = tmp_path / 'live'
    writer = BagWriter(path, BagWriterConfig(flush_period_s=600.0))
    real = bag_reader.bag_info
    reads = []

    def rotate_after_first_read(bag):
        info = real(bag)
        if not reads:
            write_group(writer, 5, 3)
        reads.append(bag)
        return info
    try:
        write_group(writer, 0, 5)
        monkeypatch.setattr(bag_reader, 'bag_info', rotate_after_first_read)
        loaded = read_bag(path)
    finally:
        writer.close()
    assert len(reads) == 1
    assert [t for t, _ in loaded['/robot/joint_states']] == [0, 10, 20, 30, 40]
