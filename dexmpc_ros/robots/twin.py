"""
The interface every MuJoCo twin implements (and every driver mirrors at the ROS level).

A twin owns one MuJoCo model of a robot plus its task scene. The twin node calls, once
per control period::

    twin.apply_command(values)   # only ever what the safety supervisor let through
    twin.step()                  # advance physics by one control period
    twin.joints(), twin.task_state(), twin.reward(), twin.done(), twin.odom()

Shapes (n = len(spec.joints), m = len(spec.actuated_joints)):
    apply_command(values (m,))   position targets [rad/m] or velocities [rad/s],
                                 per ``spec.command_interface``, command order.
    joints() -> JointReading     position/velocity/effort, each (n,), joint_states order.
    task_state() -> (names, values (k,))   named task vector (object pose, valve angle...).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec


@dataclass(frozen=True)
class JointReading:
    """Measured joints, each array (n,) in ``joint_states`` order, REP-103 units."""

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


@dataclass(frozen=True)
class BodyPose:
    """
    Floating-base pose and twist (the roach's ``odom``).

    position (3,) [m] and orientation quaternion (4,) (x, y, z, w) in the world (odom)
    frame; linear (3,) [m/s] and angular (3,) [rad/s] velocity in the body frame.
    """

    position: np.ndarray
    orientation_xyzw: np.ndarray
    linear: np.ndarray
    angular: np.ndarray


class Twin(abc.ABC):
    """A simulated robot behind the same interface its driver offers."""

    #: the robot spec this twin implements (joint names and limits agree with it)
    spec: RobotSpec

    @property
    def dt(self) -> float:
        """Control period [s] = 1 / spec.control_rate_hz."""
        return self.spec.period_s

    @property
    @abc.abstractmethod
    def time(self) -> float:
        """Simulated time since construction [s] (monotonic across resets)."""

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: default pose, new task goal drawn with ``seed``."""

    @abc.abstractmethod
    def apply_command(self, values: np.ndarray) -> None:
        """Set actuator targets (m,) in command order; held until the next call."""

    @abc.abstractmethod
    def step(self) -> None:
        """Advance the physics by one control period."""

    @abc.abstractmethod
    def joints(self) -> JointReading:
        """Measured joint state."""

    @abc.abstractmethod
    def task_state(self) -> tuple[list[str], np.ndarray]:
        """Named task vector: (names (k,), values (k,))."""

    @abc.abstractmethod
    def reward(self) -> float:
        """Reward of the last step under the current task."""

    def done(self) -> bool:
        """True when the task ended early (e.g. a Baoding ball dropped)."""
        return False

    def odom(self) -> BodyPose | None:
        """Floating-base pose for mobile robots; None for fixed-base ones."""
        return None

    def render(self, width: int = 320, height: int = 240) -> np.ndarray | None:
        """RGB image uint8 (height, width, 3) from the scene camera, or None if unavailable."""
        return None

    def close(self) -> None:
        """Release renderer resources."""
