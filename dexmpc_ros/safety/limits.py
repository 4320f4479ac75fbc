"""
Safety rules on one command: the types they share, their names and their order.

Each rule is one named pure function (no rclpy, no hidden state) that takes the command (and
what it needs to judge it) and returns a :class:`RuleResult`: the command, possibly modified
(``None`` when the rule rejects it), whether the rule fired, and why. ``safety/filter.py``
runs them in the fixed order of :data:`RULE_ORDER` and folds them into a decision.

The rules live in ``safety/rejection_rules.py`` (:data:`REJECT_RULES`: judge the command as a
whole) and ``safety/clamp_rules.py`` (:data:`CLAMP_RULES`: each on the output of the
previous); each module's docstring describes its rules, by the names that appear in counters
and diagnostics.

Shapes: m = number of actuated joints (command length); arrays are float64 in command order
(``RobotSpec.command_names``). Times are integer nanoseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.robots.kinematics import KINEMATICS, load_kinematics

REJECT_RULES = ('finite', 'names', 'age', 'stale_state', 'rate', 'plan', 'uncertainty')
CLAMP_RULES = ('uncertainty', 'step', 'velocity', 'effort', 'workspace', 'body_rate',
               'position_box')
RULES = tuple(dict.fromkeys(REJECT_RULES + CLAMP_RULES))

#: Clamp order per command interface. ``position_box`` comes last for both, so no command
#: leaves the limits of the robot YAML even when the measured state sits slightly outside
#: them (MuJoCo's soft limits, a servo pushed by contact).
RULE_ORDER = {
    'position': ('uncertainty', 'step', 'velocity', 'effort', 'workspace', 'position_box'),
    'velocity': ('uncertainty', 'step', 'velocity', 'effort', 'body_rate', 'position_box'),
}

#: Joints a rule's reason names at most; the rest are counted or cut off.
MAX_JOINTS_IN_REASON = 4


class RuleResult(NamedTuple):
    """Outcome of one rule: values (m,) or None when rejected, whether it fired, why."""

    values: np.ndarray | None
    fired: bool
    reason: str = ''


@dataclass(frozen=True, eq=False)
class Workspace:
    """
    The end-effector box in command terms.

    Attributes:
        index: (k,) positions in the command of the joints the kinematics takes.
        ee_position: (..., k) joint positions -> (..., 3) end-effector position [m].
        lower: (3,) lower corner in the base frame [m]: the spec's box shrunk by its margin.
        upper: (3,) upper corner [m], shrunk likewise.
        brake_time: the box shrinks further by how far the end effector would travel in
            this time at the measured joint speeds [s] (the arm's overshoot when it brakes).
    """

    index: np.ndarray
    ee_position: Callable[[np.ndarray], np.ndarray]
    lower: np.ndarray
    upper: np.ndarray
    brake_time: float = 0.0

    def excess(self, joint_positions: np.ndarray, shrink: float = 0.0) -> np.ndarray:
        """
        How far (..., k) joint positions put the end effector outside the box [m], (...).

        ``shrink`` [m] moves every face inward first (never past the box's centre).
        """
        shrink = min(shrink, 0.49 * float(np.min(self.upper - self.lower)))
        ee = self.ee_position(joint_positions)
        out = (np.maximum(self.lower + shrink - ee, 0.0)
               + np.maximum(ee - self.upper + shrink, 0.0))
        return out.sum(axis=-1)

    def braking_distance(self, position: np.ndarray, velocity: np.ndarray) -> float:
        """End-effector travel [m] in ``brake_time`` at the measured joint speeds (k,)."""
        if self.brake_time <= 0.0 or not np.isfinite(velocity).all():
            return 0.0
        ee = self.ee_position(np.stack([position, position + velocity * self.brake_time]))
        return float(np.linalg.norm(ee[1] - ee[0]))


@dataclass(frozen=True)
class BodyRates:
    """Body-rate limits in command terms: thresholds [rad/s] and the left/right indices."""

    roll_pitch: float
    yaw: float
    left: int
    right: int


@dataclass(frozen=True, eq=False)
class CommandLimits:
    """
    A robot's command limits as vectors, built once from a :class:`RobotSpec`.

    Attributes:
        names: actuated joint names, command order (m,).
        interface: ``position`` or ``velocity``.
        lower: (m,) lowest position [rad or m].
        upper: (m,) highest position [rad or m].
        velocity: (m,) largest speed [rad/s or m/s].
        max_step: (m,) largest change per control step [rad, m or rad/s].
        effort: (m,) largest effort [N m or N].
        period_s: control period dt [s].
        workspace: end-effector box, or None.
        body_rate: body angular-rate limits, or None.
        index: joint name -> position in the command.
    """

    names: tuple[str, ...]
    interface: str
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    max_step: np.ndarray
    effort: np.ndarray
    period_s: float
    workspace: Workspace | None = None
    body_rate: BodyRates | None = None
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, 'index', {n: i for i, n in enumerate(self.names)})

    @classmethod
    def from_spec(cls, spec: RobotSpec) -> CommandLimits:
        """Command limits of the actuated joints of ``spec`` (+ its safety section)."""
        names = tuple(spec.command_names)
        index = {n: i for i, n in enumerate(names)}
        workspace = None
        if spec.workspace is not None:
            box = spec.workspace
            if box.kinematics not in KINEMATICS:
                raise ConfigError(f'{spec.source or spec.name}: safety.workspace.kinematics: '
                                  f'{box.kinematics!r} unknown; available: '
                                  f'{", ".join(KINEMATICS)}')
            kin = load_kinematics(box.kinematics)
            missing = [j for j in kin.joints if j not in index]
            if missing:
                raise ValueError(f'robot {spec.name}: workspace kinematics {box.kinematics} '
                                 f'needs actuated joints {missing}')
            workspace = Workspace(np.array([index[j] for j in kin.joints]), kin.ee_position,
                                  np.array(box.lower) + box.margin,
                                  np.array(box.upper) - box.margin, box.brake_time)
        body_rate = None
        if spec.body_rate is not None:
            rate = spec.body_rate
            body_rate = BodyRates(rate.roll_pitch, rate.yaw, index[rate.left],
                                  index[rate.right])
        return cls(names=names, interface=spec.command_interface,
                   lower=spec.limits_array('lower'), upper=spec.limits_array('upper'),
                   velocity=spec.limits_array('velocity'),
                   max_step=spec.limits_array('max_step'), effort=spec.limits_array('effort'),
                   period_s=spec.period_s, workspace=workspace, body_rate=body_rate)


@dataclass(frozen=True, eq=False)
class MeasuredState:
    """
    The newest measured state of the actuated joints.

    Attributes:
        position: (m,) measured positions [rad or m], command order.
        velocity: (m,) measured velocities [rad/s or m/s] (NaN if unknown).
        stamp_ns: stamp of the ``joint_states`` message [ns].
        effort: (m,) measured efforts [N m or N] (NaN if unknown); None = all unknown.
    """

    position: np.ndarray
    velocity: np.ndarray
    stamp_ns: int
    effort: np.ndarray | None = None


class BodyRate(NamedTuple):
    """Measured body angular velocity (roll, pitch, yaw rate) (3,) [rad/s], body frame."""

    angular: np.ndarray
    stamp_ns: int


class StampedValue(NamedTuple):
    """A controller's report for the observation at ``stamp_ns``: a plan verdict or a figure."""

    stamp_ns: int
    value: float | str


class RateBucket(NamedTuple):
    """Token bucket state of the ``rate`` rule: tokens left and when it was last filled."""

    tokens: float
    stamp_ns: int | None
