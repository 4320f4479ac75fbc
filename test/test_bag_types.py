"""
Bags of other recorders (data/bag_types.py): types ROS 2 Jazzy lacks are read from the
definitions the bag carries, an empty ``.msg`` definition included (a message without
fields, as ``test_msgs/msg/Empty`` in rosbag2's own test bags), in MCAP and SQLite bags.
"""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.interfaces import (Connection, ConnectionExtRosbag2, MessageDefinition,
                                MessageDefinitionFormat)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

from dexmpc_ros.core.errors import BagError
from dexmpc_ros.data.bag_reader import read_bag
from dexmpc_ros.data.bag_types import register_connection_type

EMPTY = 'test_msgs/msg/Empty'
THING = 'foreign_msgs/msg/Thing'
THING_IDL = '''
module foreign_msgs {
  module msg {
    struct Thing {
      double value;
      string label;
    };
  };
};
'''


def write_bag(path, plugin, msgtype: str) -> None:
    """Three messages of ``msgtype`` on /other/topic, each followed by a Float64."""
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg('', EMPTY))
    store.register(get_types_from_idl(THING_IDL))
    types = store.types
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        if msgtype == EMPTY:
            other = writer.add_connection('/other/topic', EMPTY, typestore=store)
            assert other.msgdef == MessageDefinition(MessageDefinitionFormat.MSG, '')
        else:
            other = writer.add_connection('/other/topic', THING, rihs01='RIHS01_' + '0' * 64,
                                          msgdef='=' * 80 + f'\nIDL: {THING}\n{THING_IDL}')
        value = writer.add_connection('/other/value', 'std_msgs/msg/Float64', typestore=store)
        for k in range(3):
            msg = types[EMPTY]() if msgtype == EMPTY else \
                types[THING](value=k / 2, label=f'k{k}')
            writer.write(other, 10 * k, bytes(store.serialize_cdr(msg, msgtype)))
            writer.write(value, 10 * k + 1, bytes(store.serialize_cdr(
                types['std_msgs/msg/Float64'](data=float(k)), 'std_msgs/msg/Float64')))


@pytest.mark.parametrize('plugin', [StoragePlugin.MCAP, StoragePlugin.SQLITE3],
                         ids=['mcap', 'sqlite3'])
def test_a_type_with_an_empty_definition_is_a_message_without_fields(tmp_path, plugin):
    write_bag(tmp_path / 'bag', plugin, EMPTY)
    bag = read_bag(tmp_path / 'bag')     # every topic, with a fresh ROS 2 Jazzy typestore
    assert [t for t, _ in bag['/other/topic']] == [0, 10, 20]
    assert all(msg.__msgtype__ == EMPTY for _, msg in bag['/other/topic'])
    assert np.allclose([m.data for _, m in bag['/other/value']], [0, 1, 2])


@pytest.mark.parametrize('plugin', [StoragePlugin.MCAP, StoragePlugin.SQLITE3],
                         ids=['mcap', 'sqlite3'])
def test_an_idl_definition_is_read(tmp_path, plugin):
    write_bag(tmp_path / 'bag', plugin, THING)
    bag = read_bag(tmp_path / 'bag')
    assert [(m.value, m.label) for _, m in bag['/other/topic']] == \
        [(0.0, 'k0'), (0.5, 'k1'), (1.0, 'k2')]


def test_a_type_neither_known_nor_defined_is_named():
    store = get_typestore(Stores.ROS2_JAZZY)
    connection = Connection(
        id=1, topic='/old/thing', msgtype='old_msgs/msg/Thing',
        msgdef=MessageDefinition(MessageDefinitionFormat.NONE, ''), digest='', msgcount=1,
        ext=ConnectionExtRosbag2('cdr', []), owner=None)
    with pytest.raises(BagError, match=r'seg\.db3: topic /old/thing has type '
                                       r'old_msgs/msg/Thing, which the bag does not define'):
        register_connection_type(store, connection, 'seg.db3')
    known = connection._replace(msgtype='std_msgs/msg/Float64')
    register_connection_type(store, known, 'seg.db3')   # Jazzy's own: no definition needed
