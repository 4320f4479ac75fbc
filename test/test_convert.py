"""Message <-> array conversion round trips (ros/convert.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from dexmpc_ros.robots.twin import BodyPose  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402


def test_time_round_trip():
    for ns in (0, 1, 999_999_999, 1_700_000_000_123_456_789):
        assert convert.time_to_ns(convert.ns_to_time(ns)) == ns


def test_joint_state_reorders_and_flags_missing_fields():
    msg = convert.joint_state_msg(5, ['b', 'a', 'c'], np.array([2.0, 1.0, 3.0]),
                                  velocity=np.array([20.0, 10.0, 30.0]))
    pos, vel, eff = convert.joint_state_to_arrays(msg, ['a', 'c'])
    np.testing.assert_array_equal(pos, [1.0, 3.0])
    np.testing.assert_array_equal(vel, [10.0, 30.0])
    assert np.all(np.isnan(eff))
    with pytest.raises(KeyError, match='z'):
        convert.joint_state_to_arrays(msg, ['a', 'z'])


def test_named_vector():
    msg = JointState(name=['x', 'y'], position=[1.0, 2.0])
    names, values = convert.named_vector(msg)
    assert names == ['x', 'y']
    np.testing.assert_array_equal(values, [1.0, 2.0])


@pytest.mark.parametrize('interface', ['position', 'velocity'])
def test_command_round_trip(interface):
    msg = convert.command_msg(123, ['a', 'b'], np.array([0.5, -0.5]), interface)
    names, values, stamp = convert.command_to_arrays(msg, interface)
    assert names == ['a', 'b'] and stamp == 123
    np.testing.assert_array_equal(values, [0.5, -0.5])
    other = 'velocity' if interface == 'position' else 'position'
    assert convert.command_to_arrays(msg, other)[1].size == 0
    with pytest.raises(ValueError):
        convert.command_msg(0, ['a'], np.zeros(1), 'torque')


def test_command_without_points_is_empty():
    msg = convert.command_msg(1, ['a'], np.zeros(1), 'position')
    msg.points = []
    assert convert.command_to_arrays(msg, 'position')[1].size == 0


def test_odometry_round_trip():
    pose = BodyPose(np.array([1.0, 2.0, 0.1]), np.array([0.0, 0.0, 0.6, 0.8]),
                    np.array([0.3, 0.0, 0.0]), np.array([0.0, 0.0, 0.5]))
    msg = convert.odometry_msg(7, pose)
    assert msg.header.frame_id == 'odom' and msg.child_frame_id == 'base_link'
    for got, want in zip(convert.odometry_to_arrays(msg), (pose.position,
                                                           pose.orientation_xyzw,
                                                           pose.linear, pose.angular)):
        np.testing.assert_allclose(got, want)


def test_imu_message_has_no_orientation_and_round_trips_the_rate():
    msg = convert.imu_msg(1_500_000_007, np.array([0.1, -0.2, 0.3]), [0.0, 0.5, 9.81],
                          angular_velocity_variance=1e-4)
    angular, stamp = convert.imu_angular_velocity(msg)
    assert stamp == 1_500_000_007 and np.allclose(angular, [0.1, -0.2, 0.3])
    assert msg.header.frame_id == 'base_link'
    assert (msg.linear_acceleration.y, msg.linear_acceleration.z) == (0.5, 9.81)
    assert msg.orientation_covariance[0] == -1.0                  # REP-145: no orientation
    assert np.allclose(np.reshape(msg.angular_velocity_covariance, (3, 3)), np.eye(3) * 1e-4)
    assert not np.any(msg.linear_acceleration_covariance)         # all zeros: unknown
    with pytest.raises(ValueError):
        convert.imu_msg(0, [1.0, 2.0], [0.0, 0.0, 9.81])


def test_image_round_trip():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    msg = convert.image_msg(9, rgb)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (4, 6, 18, 'rgb8')
    np.testing.assert_array_equal(convert.image_to_array(msg), rgb)


def test_diagnostic_status():
    status = convert.diagnostic_status('safety', 'warn', 'clamped', {'rate_hz': 10.123456789,
                                                                     'rule/step': 3})
    assert status.level == DiagnosticStatus.WARN
    assert convert.diagnostic_values(status) == {'rate_hz': '10.1235', 'rule/step': '3'}
