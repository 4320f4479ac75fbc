"""
Message-field helpers (core/message_fields.py): the same answers for rclpy messages and for
messages the rosbags library deserializes, since both sides of the ROS line call them.
"""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Duration, Time
from rosbags.typesys import Stores, get_typestore
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dexmpc_ros.core.message_fields import (command_field, command_values, ns_to_sec_nanosec,
                                            stamp_to_ns)

STORE = get_typestore(Stores.ROS2_JAZZY)
TRAJECTORY = 'trajectory_msgs/msg/JointTrajectory'


def bag_command(positions, velocities) -> object:
    """A JointTrajectory written to CDR and read back as rosbags deserializes it."""
    types = STORE.types
    empty = np.array([], float)
    point = types['trajectory_msgs/msg/JointTrajectoryPoint'](
        positions=np.array(positions, float), velocities=np.array(velocities, float),
        accelerations=empty, effort=empty,
        time_from_start=types['builtin_interfaces/msg/Duration'](sec=0, nanosec=0))
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=3, nanosec=7), frame_id='')
    msg = types[TRAJECTORY](header=header, joint_names=['a', 'b'], points=[point])
    return STORE.deserialize_cdr(bytes(STORE.serialize_cdr(msg, TRAJECTORY)), TRAJECTORY)


@pytest.mark.parametrize('ns, sec, nanosec', [
    (0, 0, 0), (999_999_999, 0, 999_999_999), (1_000_000_000, 1, 0),
    (1_700_000_000_123_456_789, 1_700_000_000, 123_456_789),
    (-1, -1, 999_999_999)])          # ROS keeps nanosec in [0, 1e9) for negative times too
def test_stamps_split_and_join_exactly(ns, sec, nanosec):
    assert ns_to_sec_nanosec(ns) == (sec, nanosec)
    assert stamp_to_ns(Time(sec=sec, nanosec=nanosec)) == ns
    assert stamp_to_ns(STORE.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)) \
        == ns


def test_a_duration_converts_like_a_time():
    assert stamp_to_ns(Duration(sec=2, nanosec=250_000_000)) == 2_250_000_000


def test_command_values_read_the_interface_field_of_the_first_point():
    msg = JointTrajectory(joint_names=['a', 'b'], points=[
        JointTrajectoryPoint(positions=[1.0, 2.0], velocities=[3.0, 4.0]),
        JointTrajectoryPoint(positions=[9.0, 9.0])])
    for command in (msg, bag_command([1.0, 2.0], [3.0, 4.0])):
        np.testing.assert_array_equal(command_values(command, 'position'), [1.0, 2.0])
        np.testing.assert_array_equal(command_values(command, 'velocity'), [3.0, 4.0])
        assert command_values(command, 'position').dtype == np.float64


def test_command_values_leave_judging_to_the_safety_rules():
    values = command_values(bag_command([np.nan, 1.0, 2.0], []), 'position')
    assert values.shape == (3,) and np.isnan(values[0])        # wrong length, NaN: as sent
    assert command_values(bag_command([1.0], []), 'velocity').shape == (0,)
    assert command_values(JointTrajectory(joint_names=['a']), 'position').shape == (0,)


def test_an_unknown_interface_is_named():
    assert command_field('position') == 'positions'
    assert command_field('velocity') == 'velocities'
    with pytest.raises(ValueError, match="'effort'"):
        command_values(JointTrajectory(), 'effort')
