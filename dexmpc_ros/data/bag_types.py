"""
Message definitions a bag carries -> a rosbags typestore that can deserialize its topics.

rosbag2 stores each topic's definition with the bag (MCAP schema, or the SQLite
``message_definitions`` table) in one of three forms, which rosbags reports as
``MessageDefinition.format``:

- ``MSG`` (``ros2msg``): ``.msg`` text, dependencies appended. Empty text is a valid
  definition: a message without fields (``std_msgs/msg/Empty``, ``test_msgs/msg/Empty``
  in rosbag2's own test bags), serialized as the one padding byte CDR requires;
- ``IDL`` (``ros2idl``): OMG IDL text, or several, each after a line of 80 ``=`` and
  ``IDL: <type>``;
- ``NONE``: no definition (bags written before rosbag2 stored them); only the types the
  typestore already knows (ROS 2 Jazzy's) can be read then.
"""

from __future__ import annotations

from typing import Any

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.typesys import get_types_from_idl, get_types_from_msg
from rosbags.typesys.store import Typestore

from dexmpc_ros.core.errors import BagError


def register_connection_type(store: Typestore, connection: Any, where: str) -> None:
    """
    Make ``store`` know ``connection.msgtype``, from the bag's definition if needed.

    Args:
        store: the typestore to extend (types it already has are kept as they are).
        connection: a rosbags ``Connection`` (``topic``, ``msgtype``, ``msgdef``).
        where: the segment file, for the error message.

    Raises:
        BagError: the store lacks the type and the bag does not define it.
    """
    msgtype, msgdef = connection.msgtype, connection.msgdef
    if msgtype in store.fielddefs:
        return
    if msgdef.format == MessageDefinitionFormat.MSG:
        store.register(get_types_from_msg(msgdef.data, msgtype))
    elif msgdef.format == MessageDefinitionFormat.IDL:
        for idl in _idl_sections(msgdef.data):
            store.register(get_types_from_idl(idl))
    if msgtype not in store.fielddefs:
        raise BagError(f'{where}: topic {connection.topic} has type {msgtype}, which the bag '
                       f'does not define and ROS 2 Jazzy lacks; leave the topic out')


def _idl_sections(data: str) -> list[str]:
    """IDL texts of a definition: one, or several each after ``===...\\nIDL: <type>``."""
    separator = '=' * 80 + '\n'
    if not data.startswith(separator + 'IDL: '):
        return [data] if data.strip() else []
    return [section.split('\n', 1)[1] for section in data.split(separator)[1:]
            if '\n' in section]
