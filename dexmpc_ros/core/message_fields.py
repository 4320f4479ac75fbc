"""
Message fields both sides of the ROS line read: stamps and the values of a command.

An rclpy message and the same message deserialized by the ``rosbags`` library have the same
field names, so these functions take either (duck-typed) and import neither; ``ros/`` and
``data/`` both call them. Stamps are integer nanoseconds (``int``) so arithmetic on them is
exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NS_PER_S = 1_000_000_000

#: Command interface (``RobotSpec.command_interface``) -> JointTrajectoryPoint field.
COMMAND_FIELDS = {'position': 'positions', 'velocity': 'velocities'}


def stamp_to_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (or Duration: ``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    """
    Integer nanoseconds -> (sec, nanosec) of a builtin_interfaces/Time.

    ``nanosec`` is always in [0, 1e9); a negative time has a negative ``sec`` (as ROS has).
    """
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec


def command_field(interface: str) -> str:
    """
    The JointTrajectoryPoint field (``positions``/``velocities``) a command interface fills.

    Raises:
        ValueError: ``interface`` is neither ``position`` nor ``velocity``.
    """
    try:
        return COMMAND_FIELDS[interface]
    except KeyError:
        raise ValueError(f'unknown command interface {interface!r}; expected one of '
                         f'{tuple(COMMAND_FIELDS)}') from None


def command_values(msg: Any, interface: str) -> np.ndarray:
    """
    The values of a command (trajectory_msgs/JointTrajectory): its first point's field.

    Args:
        msg: the command; its first point holds the targets.
        interface: ``position`` (``positions`` [rad or m]) or ``velocity`` (``velocities``
            [rad/s]).

    Returns:
        (len(points[0].<field>),) float64, unchecked: the length may be wrong and values
        non-finite (judging them is the safety rules' job). No point at all gives (0,).
    """
    field = command_field(interface)
    if not len(msg.points):
        return np.empty(0)
    return np.asarray(getattr(msg.points[0], field), dtype=np.float64)
