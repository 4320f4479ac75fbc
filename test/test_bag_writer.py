"""
BagWriter without ROS: serialized messages made with the rosbags typestore go in, the
same bytes come out of rosbags' own Reader; segments rotate; metadata.yaml has the
fields rosbags' Writer writes; a SIGKILLed writer leaves a bag holding every flushed
message.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import Stores, get_typestore

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.data.bag_reader import read_bag
from dexmpc_ros.data.bag_writer import BagWriter, BagWriterConfig, qos_profile

REPO = Path(__file__).resolve().parents[1]
STORE = get_typestore(Stores.ROS2_JAZZY)
JOINT_STATE = 'sensor_msgs/msg/JointState'
INT32 = 'std_msgs/msg/Int32'
IMAGE = 'sensor_msgs/msg/Image'


def joint_state(i: int) -> bytes:
    """JointState i: stamp i ms, position (i, -i), velocity (2i, 0)."""
    types = STORE.types
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=0, nanosec=i * 1_000_000), frame_id='')
    msg = types[JOINT_STATE](header=header, name=['a', 'b'], position=np.array([i, -i], float),
                             velocity=np.array([2 * i, 0], float), effort=np.array([], float))
    return bytes(STORE.serialize_cdr(msg, JOINT_STATE))


def int32(value: int) -> bytes:
    return bytes(STORE.serialize_cdr(STORE.types['std_msgs/msg/Int32'](data=value), INT32))


def image(seed: int) -> bytes:
    types = STORE.types
    pixels = np.random.default_rng(seed).integers(0, 256, 4 * 3 * 3, dtype=np.uint8)
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=1, nanosec=0), frame_id='cam')
    msg = types[IMAGE](header=header, height=3, width=4, encoding='rgb8', is_bigendian=0,
                       step=12, data=pixels)
    return bytes(STORE.serialize_cdr(msg, IMAGE))


def metadata(bag: Path) -> dict:
    return yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']


def raw_messages(bag: Path) -> list[tuple[str, int, bytes]]:
    with Reader(bag) as reader:
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]


def test_roundtrip_is_byte_exact(tmp_path):
    bag = tmp_path / 'bag'
    sent = []
    with BagWriter(bag) as writer:
        for i in range(20):
            sent.append(('/joint_states', 1000 + i, joint_state(i)))
        sent += [('/episode', 1005, int32(3)), ('/camera/color/image_raw', 1010, image(0))]
        types = {'/joint_states': JOINT_STATE, '/episode': INT32,
                 '/camera/color/image_raw': IMAGE}
        for topic, t, data in sent:
            assert writer.write(topic, types[topic], data, t)
    assert sorted(raw_messages(bag)) == sorted(sent)
    loaded = read_bag(bag)
    assert [t for t, _ in loaded['/joint_states']] == list(range(1000, 1020))
    msg = loaded['/joint_states'][7][1]
    assert list(msg.position) == [7.0, -7.0] and msg.header.stamp.nanosec == 7_000_000
    assert loaded['/episode'][0][1].data == 3
    img = loaded['/camera/color/image_raw'][0][1]
    assert bytes(img.data) == np.random.default_rng(0).integers(
        0, 256, 36, dtype=np.uint8).tobytes()


def test_segments_rotate_on_flush_and_metadata_counts(tmp_path):
    bag = tmp_path / 'run'
    writer = BagWriter(bag, BagWriterConfig(flush_period_s=600.0))
    writer.add_topic('/episode', INT32, [qos_profile(durability='transient_local', depth=1)])
    writer.add_topic('/silent', INT32)
    groups = [range(0, 5), range(5, 12), range(12, 15)]
    for group in groups:
        for i in group:
            writer.write('/joint_states', JOINT_STATE, joint_state(i), 100 + 10 * i)
        writer.write('/episode', INT32, int32(group[0]), 100 + 10 * group[0])
        assert writer.flush()
    stats = writer.close()
    assert (stats.messages, stats.flushed, stats.segments, stats.dropped) == (18, 18, 3, 0)

    meta = metadata(bag)
    assert meta['version'] == 8 and meta['storage_identifier'] == 'mcap'
    assert meta['relative_file_paths'] == ['run_0.mcap', 'run_1.mcap', 'run_2.mcap']
    assert [f['message_count'] for f in meta['files']] == [6, 8, 4]
    assert [f['starting_time']['nanoseconds_since_epoch'] for f in meta['files']] == \
        [100, 150, 220]
    assert [f['duration']['nanoseconds'] for f in meta['files']] == [40, 60, 20]
    assert meta['starting_time']['nanoseconds_since_epoch'] == 100
    assert meta['duration']['nanoseconds'] == 240 - 100
    counts = {t['topic_metadata']['name']: t['message_count']
              for t in meta['topics_with_message_count']}
    assert counts == {'/episode': 3, '/silent': 0, '/joint_states': 15}
    # rosbags' Reader matches each segment's channels to these topics (QoS included).
    with Reader(bag) as reader:
        assert reader.message_count == 18
        by_topic = {c.topic: c for c in reader.connections}
        assert by_topic['/episode'].ext.offered_qos_profiles[0].durability.name == \
            'TRANSIENT_LOCAL'
        assert sum(1 for _ in reader.messages([by_topic['/episode']])) == 3
    assert not (bag / '.partial').exists()


def test_segments_rotate_on_their_own(tmp_path):
    writer = BagWriter(tmp_path / 'bag', BagWriterConfig(flush_period_s=0.05))
    writer.write('/episode', INT32, int32(0), 1)
    deadline = time.monotonic() + 5.0
    while writer.stats().flushed < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.stats().flushed == 1, 'the message was never flushed without close()'
    writer.write('/episode', INT32, int32(1), 2)
    assert writer.close().segments == 2


def test_metadata_has_the_fields_rosbags_writer_writes(tmp_path):
    def keys(meta: dict) -> tuple:
        topic = meta['topics_with_message_count'][0]
        return (set(meta), set(topic), set(topic['topic_metadata']), set(meta['files'][0]))

    for version in (8, 9):
        reference = tmp_path / f'reference{version}'
        with Writer(reference, version=version, storage_plugin=StoragePlugin.MCAP) as ref:
            conn = ref.add_connection('/episode', INT32, typestore=STORE,
                                      offered_qos_profiles=[qos_profile()])
            ref.write(conn, 5, int32(1))
        ours = tmp_path / f'ours{version}'
        with BagWriter(ours, BagWriterConfig(version=version)) as writer:
            writer.add_topic('/episode', INT32, [qos_profile()])
            writer.write('/episode', INT32, int32(1), 5)
        ref_meta, our_meta = metadata(reference), metadata(ours)
        assert keys(our_meta) == keys(ref_meta)
        ref_topic = ref_meta['topics_with_message_count'][0]['topic_metadata']
        our_topic = our_meta['topics_with_message_count'][0]['topic_metadata']
        # v8: a YAML string (numeric enums); v9: a YAML list (named enums), as rosbag2.
        assert type(our_topic['offered_qos_profiles']) is (str if version == 8 else list)
        assert yaml.safe_load(str(our_topic['offered_qos_profiles'])) == \
            yaml.safe_load(str(ref_topic['offered_qos_profiles']))
        assert our_topic['type_description_hash'] == ref_topic['type_description_hash']


def test_close_is_idempotent_and_later_writes_are_dropped(tmp_path):
    writer = BagWriter(tmp_path / 'bag')
    writer.write('/episode', INT32, int32(1), 1)
    first = writer.close()
    assert writer.close() == first and first.messages == 1
    assert writer.write('/episode', INT32, int32(2), 2) is False
    assert writer.stats().dropped == 1
    assert len(read_bag(tmp_path / 'bag')['/episode']) == 1


def test_write_never_blocks_and_counts_drops(tmp_path):
    writer = BagWriter(tmp_path / 'bag', BagWriterConfig(queue_size=1, max_queue_bytes=10_000))
    assert writer.write('/big', IMAGE, bytes(20_000), 1) is False
    accepted = sum(writer.write('/episode', INT32, int32(i), i) for i in range(20_000))
    stats = writer.close()
    assert stats.messages == accepted and stats.dropped == 1 + 20_000 - accepted
    assert stats.dropped > 1  # a full queue drops: a blocking write would have waited


def test_refuses_existing_dir_unknown_type_and_type_change(tmp_path):
    (tmp_path / 'taken').mkdir()
    with pytest.raises(BagError, match='exists'):
        BagWriter(tmp_path / 'taken')
    writer = BagWriter(tmp_path / 'bag')
    with pytest.raises(BagError, match='not in the typestore'):
        writer.write('/x', 'my_msgs/msg/Thing', b'\0\1\0\0', 1)
    writer.write('/episode', INT32, int32(0), 1)
    with pytest.raises(BagError, match='std_msgs/msg/Int32'):
        writer.write('/episode', 'std_msgs/msg/Float64', b'', 2)
    writer.add_topic('/thing', 'my_msgs/msg/Thing', msgdef='int32 value\nstring label')
    thing = STORE.types.get('my_msgs/msg/Thing')
    assert thing is None  # the writer extended its own store, not the shared one
    writer.close()


def test_corrupt_segment_is_a_bag_error_naming_the_file(tmp_path):
    bag = tmp_path / 'bag'
    with BagWriter(bag) as writer:
        for i in range(10):
            writer.write('/joint_states', JOINT_STATE, joint_state(i), i)
            if i == 4:
                writer.flush()
    segment = bag / 'bag_1.mcap'
    segment.write_bytes(segment.read_bytes()[:-100])
    with pytest.raises(BagError, match='bag_1.mcap'):
        read_bag(bag)


CRASHING_WRITER = r'''
import sys, time
sys.path.insert(0, sys.argv[2])
from test_bag_writer import JOINT_STATE, joint_state
from dexmpc_ros.data.bag_writer import BagWriter, BagWriterConfig
writer = BagWriter(sys.argv[1], BagWriterConfig(flush_period_s=600.0))
for i in range(250):
    writer.write('/joint_states', JOINT_STATE, joint_state(i), 1000 + i)
    if i in (99, 199):
        assert writer.flush()
print('ready', flush=True)
time.sleep(60)
'''


def test_sigkill_leaves_a_bag_with_every_flushed_message(tmp_path):
    bag = tmp_path / 'bag'
    proc = subprocess.Popen([sys.executable, '-c', CRASHING_WRITER, str(bag),
                             str(Path(__file__).parent)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == 'ready'
        time.sleep(0.2)  # the 50 unflushed messages reach the open segment
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    loaded = read_bag(bag)['/joint_states']
    assert [t for t, _ in loaded] == list(range(1000, 1200))
    assert [m.position[0] for _, m in loaded] == list(range(200))
    assert (bag / '.partial').is_dir()  # the lost, still-open segment


def test_a_bag_of_only_silent_topics_still_lists_them(tmp_path):
    from dexmpc_ros.data.bag_reader import bag_info

    writer = BagWriter(tmp_path / 'quiet')
    writer.add_topic('/silent', INT32)
    writer.close()
    info = bag_info(tmp_path / 'quiet')
    assert '/silent' in info.topics and info.topics['/silent'].message_count == 0
