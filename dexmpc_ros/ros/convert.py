"""
Messages <-> arrays, in one place, as pure functions.

Nodes never pick message fields inline: they call these. Stamps are carried as integer
nanoseconds (``int``) so arithmetic on them is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Quaternion
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, Imu, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dexmpc_ros.core.message_fields import (command_field, command_values, ns_to_sec_nanosec,
                                            stamp_to_ns)
from dexmpc_ros.core.types import Observation
from dexmpc_ros.robots.camera.driver import CameraIntrinsics
from dexmpc_ros.robots.twin import BodyPose

LEVELS = {'ok': DiagnosticStatus.OK, 'warn': DiagnosticStatus.WARN,
          'error': DiagnosticStatus.ERROR, 'stale': DiagnosticStatus.STALE}


# Time -----------------------------------------------------------------------------------
def time_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return stamp_to_ns(stamp)


def ns_to_time(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    sec, nanosec = ns_to_sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


def header(stamp_ns: int, frame_id: str = '') -> Header:
    """std_msgs/Header with a nanosecond stamp."""
    return Header(stamp=ns_to_time(stamp_ns), frame_id=frame_id)


# Named stamped vectors (JointState) ------------------------------------------------------
def joint_state_msg(stamp_ns: int, names: Sequence[str], position: np.ndarray,
                    velocity: np.ndarray | None = None,
                    effort: np.ndarray | None = None) -> JointState:
    """Build a JointState; also used for ``task_state`` (names + position only)."""
    msg = JointState(header=header(stamp_ns))
    msg.name = list(names)
    msg.position = np.asarray(position, dtype=np.float64).tolist()
    if velocity is not None:
        msg.velocity = np.asarray(velocity, dtype=np.float64).tolist()
    if effort is not None:
        msg.effort = np.asarray(effort, dtype=np.float64).tolist()
    return msg


def joint_state_to_arrays(msg: JointState, names: Sequence[str]
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Reorder a JointState into ``names`` order.

    Returns:
        (position, velocity, effort), each (len(names),) float64; a field the message
        leaves empty comes back as NaN.

    Raises:
        KeyError: a requested name is absent from the message.
    """
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise KeyError(f'joint_states lacks {missing}')
    order = [index[n] for n in names]

    def pick(field: Sequence[float]) -> np.ndarray:
        if len(field) != len(msg.name):
            return np.full(len(order), np.nan)
        return np.asarray(field, dtype=np.float64)[order]

    return pick(msg.position), pick(msg.velocity), pick(msg.effort)


def named_vector(msg: JointState) -> tuple[list[str], np.ndarray]:
    """A named stamped vector (``task_state``, ``perception/latent``) -> (names, values)."""
    return list(msg.name), np.asarray(msg.position, dtype=np.float64)


def observation(joints: JointState, task: JointState | None, joint_names: Sequence[str]
                ) -> Observation:
    """
    A controller's :class:`Observation` from the newest ``joint_states`` and ``task_state``.

    Raises:
        KeyError: ``joint_states`` lacks a joint of ``joint_names``.
    """
    position, velocity, _ = joint_state_to_arrays(joints, joint_names)
    names, values = named_vector(task) if task is not None else ([], np.empty(0))
    return Observation(time_to_ns(joints.header.stamp), position, velocity, tuple(names),
                       values)


# Commands -------------------------------------------------------------------------------
def command_msg(stamp_ns: int, names: Sequence[str], values: np.ndarray,
                interface: str) -> JointTrajectory:
    """
    One-point JointTrajectory carrying a command.

    Args:
        stamp_ns: stamp of the observation the command was computed from.
        names: joint names in command order.
        values: (m,) targets; positions [rad/m] or velocities [rad/s] per ``interface``.
        interface: ``position`` or ``velocity``.
    """
    msg = JointTrajectory(header=header(stamp_ns))
    msg.joint_names = list(names)
    point = JointTrajectoryPoint()
    setattr(point, command_field(interface), np.asarray(values, dtype=np.float64).tolist())
    msg.points = [point]
    return msg


def command_to_arrays(msg: JointTrajectory, interface: str
                      ) -> tuple[list[str], np.ndarray, int]:
    """
    Read the first point of a command.

    Returns:
        (joint names, values (len(points[0].<interface>),), stamp ns). Values may have
        the wrong length or be non-finite: checking is the supervisor's job. No point at
        all gives an empty array.
    """
    return (list(msg.joint_names), command_values(msg, interface),
            time_to_ns(msg.header.stamp))


def plan_msg(stamp_ns: int, names: Sequence[str], positions: np.ndarray, dt_s: float
             ) -> JointTrajectory:
    """
    A controller's predicted trajectory (``controller/plan``).

    Args:
        stamp_ns: stamp of the observation the plan starts from [ns].
        names: joint names of the columns.
        positions: (T, len(names)) predicted positions [rad or m], step k at (k+1) dt.
        dt_s: time between plan steps [s].
    """
    msg = JointTrajectory(header=header(stamp_ns))
    msg.joint_names = list(names)
    for k, row in enumerate(np.asarray(positions, dtype=np.float64)):
        point = JointTrajectoryPoint(positions=row.tolist())
        t_ns = int(round((k + 1) * dt_s * 1e9))
        point.time_from_start.sec, point.time_from_start.nanosec = ns_to_sec_nanosec(t_ns)
        msg.points.append(point)
    return msg


def plan_to_arrays(msg: JointTrajectory) -> tuple[list[str], np.ndarray, int]:
    """
    ``controller/plan`` -> (names, positions (T, len(names)), stamp ns).

    A point whose positions have the wrong length becomes a row of NaN, so the supervisor
    rejects the plan instead of this function raising.
    """
    names = list(msg.joint_names)
    rows = [np.asarray(p.positions, dtype=np.float64) if len(p.positions) == len(names)
            else np.full(len(names), np.nan) for p in msg.points]
    positions = np.stack(rows) if rows else np.empty((0, len(names)))
    return names, positions, time_to_ns(msg.header.stamp)


# Odometry, IMU, images, diagnostics ------------------------------------------------------------
def odometry_msg(stamp_ns: int, pose: BodyPose, frame_id: str = 'odom',
                 child_frame_id: str = 'base_link') -> Odometry:
    """nav_msgs/Odometry from a twin's :class:`BodyPose` (REP-105 frames)."""
    msg = Odometry(header=header(stamp_ns, frame_id), child_frame_id=child_frame_id)
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in pose.position)
    x, y, z, w = (float(v) for v in pose.orientation_xyzw)
    p.orientation = Quaternion(x=x, y=y, z=z, w=w)
    t = msg.twist.twist
    t.linear.x, t.linear.y, t.linear.z = (float(v) for v in pose.linear)
    t.angular.x, t.angular.y, t.angular.z = (float(v) for v in pose.angular)
    return msg


def odometry_to_arrays(msg: Odometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Odometry -> (position (3,), quaternion xyzw (4,), linear (3,), angular (3,))."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
    return (np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]),
            np.array([lin.x, lin.y, lin.z]), np.array([ang.x, ang.y, ang.z]))


def imu_msg(stamp_ns: int, angular_velocity: np.ndarray, linear_acceleration: np.ndarray,
            frame_id: str = 'base_link', angular_velocity_variance: float = 0.0,
            linear_acceleration_variance: float = 0.0) -> Imu:
    """
    sensor_msgs/Imu from a gyro and accelerometer reading, without orientation.

    Args:
        stamp_ns: stamp of the reading [ns] (the driver's ``joint_states`` stamp).
        angular_velocity: (3,) [rad/s] in ``frame_id`` (REP-103 axes).
        linear_acceleration: (3,) specific force [m/s^2] in ``frame_id``, gravity
            included (REP-145: +9.81 on z when level and at rest).
        frame_id: the frame the IMU reports in.
        angular_velocity_variance, linear_acceleration_variance: per-axis variance
            [(rad/s)^2], [(m/s^2)^2] on the covariance diagonal; 0 leaves the matrix all
            zeros, which the message defines as "covariance unknown".

    The orientation is not estimated: ``orientation_covariance[0] = -1`` (REP-145).
    """
    msg = Imu(header=header(stamp_ns, frame_id))
    w = np.asarray(angular_velocity, dtype=np.float64).reshape(3)
    a = np.asarray(linear_acceleration, dtype=np.float64).reshape(3)
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = w.tolist()
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = \
        a.tolist()
    msg.orientation_covariance[0] = -1.0
    msg.angular_velocity_covariance = (np.eye(3) * angular_velocity_variance).ravel()
    msg.linear_acceleration_covariance = (np.eye(3) * linear_acceleration_variance).ravel()
    return msg


def imu_angular_velocity(msg: Imu) -> tuple[np.ndarray, int]:
    """sensor_msgs/Imu -> (angular velocity (3,) [rad/s] in the IMU frame, stamp ns)."""
    w = msg.angular_velocity
    return np.array([w.x, w.y, w.z]), time_to_ns(msg.header.stamp)


def image_msg(stamp_ns: int, rgb: np.ndarray, frame_id: str = 'camera_color_optical_frame'
              ) -> Image:
    """uint8 (H, W, 3) RGB -> sensor_msgs/Image (encoding rgb8)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    return Image(header=header(stamp_ns, frame_id), height=height, width=width,
                 encoding='rgb8', is_bigendian=0, step=width * 3, data=rgb.tobytes())


def image_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image rgb8 -> uint8 (H, W, 3)."""
    if msg.encoding != 'rgb8':
        raise ValueError(f'expected rgb8 image, got {msg.encoding!r}')
    return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width, 3)


def depth_image_msg(stamp_ns: int, depth_mm: np.ndarray,
                    frame_id: str = 'camera_color_optical_frame') -> Image:
    """uint16 (H, W) depth [mm] -> sensor_msgs/Image (encoding 16UC1, realsense2_camera's)."""
    depth = np.ascontiguousarray(depth_mm, dtype=np.uint16)
    height, width = depth.shape
    return Image(header=header(stamp_ns, frame_id), height=height, width=width,
                 encoding='16UC1', is_bigendian=int(depth.dtype.byteorder == '>'),
                 step=width * 2, data=depth.tobytes())


def camera_info_msg(stamp_ns: int, intrinsics: CameraIntrinsics,
                    frame_id: str = 'camera_color_optical_frame') -> CameraInfo:
    """
    sensor_msgs/CameraInfo of a monocular pinhole stream (R = identity, P = [K | 0]).

    Args:
        stamp_ns: the stamp of the image it describes [ns].
        intrinsics: size [px], K, distortion model and coefficients D.
        frame_id: the image's optical frame.
    """
    return CameraInfo(header=header(stamp_ns, frame_id), height=int(intrinsics.height),
                      width=int(intrinsics.width),
                      distortion_model=intrinsics.distortion_model,
                      d=[float(c) for c in intrinsics.coeffs],
                      k=intrinsics.k.ravel().tolist(), r=np.eye(3).ravel().tolist(),
                      p=intrinsics.p.ravel().tolist())


def diagnostic_status(name: str, level: str, message: str, values: dict[str, object],
                      hardware_id: str = '') -> DiagnosticStatus:
    """
    DiagnosticStatus from plain values.

    Args:
        level: one of ``ok``, ``warn``, ``error``, ``stale``.
        values: key -> value; floats are written with 6 significant digits.
    """
    status = DiagnosticStatus(name=name, message=message, hardware_id=hardware_id)
    status.level = LEVELS[level]
    status.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
    return status


def diagnostic_values(status: DiagnosticStatus) -> dict[str, str]:
    """DiagnosticStatus key/values as a dict of strings."""
    return {kv.key: kv.value for kv in status.values}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)
