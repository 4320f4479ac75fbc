"""
Bag reader without ROS: topic selection, JointState/scalar arrays, episode split, and the
errors a broken bag must raise (never a half-loaded bag).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores, get_typestore

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.data.bag_reader import (Episode, bag_info, episode_slices, episodes,
                                        joint_state_series, read_bag, resolve_topics,
                                        scalar_series)
from dexmpc_ros.data.bag_writer import BagWriter

STORE = get_typestore(Stores.ROS2_JAZZY)
JOINT_STATE = 'sensor_msgs/msg/JointState'


def joint_state(stamp_ns: int, names: list[str], position: list[float],
                velocity: list[float]) -> bytes:
    types = STORE.types
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec), frame_id='')
    msg = types[JOINT_STATE](header=header, name=names, position=np.array(position, float),
                             velocity=np.array(velocity, float), effort=np.array([], float))
    return bytes(STORE.serialize_cdr(msg, JOINT_STATE))


def scalar(msgtype: str, value: float) -> bytes:
    return bytes(STORE.serialize_cdr(STORE.types[msgtype](data=value), msgtype))


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
