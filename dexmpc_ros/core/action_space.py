"""
Normalized actions in [-1, 1]^m <-> robot commands.

Learning code (random walks, MPC, policies) works on normalized actions, as PDDM does;
only this module knows how they map to joint targets. The map is affine per joint:
``command = mid + a * half_range``.

- position robots: the joint's [lower, upper] range;
- velocity robots: [-velocity, +velocity] limits.
"""

from __future__ import annotations

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec


class ActionScaler:
    """
    Affine map between normalized actions and commands for one robot.

    Args:
        spec: robot spec (actuated joints, command order).
        margin: fraction of the half range kept free at each end, so normalized ±1 stays
            strictly inside the limits (0 <= margin < 1).
    """

    def __init__(self, spec: RobotSpec, margin: float = 0.0) -> None:
        if not 0.0 <= margin < 1.0:
            raise ValueError(f'margin must be in [0, 1), got {margin}')
        if spec.command_interface == 'velocity':
            high = spec.limits_array('velocity')
            low = -high
        else:
            low, high = spec.limits_array('lower'), spec.limits_array('upper')
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError(f'robot {spec.name}: position commands need finite limits')
        self.mid = (low + high) / 2.0
        self.half = (high - low) / 2.0 * (1.0 - margin)

    def to_command(self, action: np.ndarray) -> np.ndarray:
        """(..., m) normalized action, clipped to [-1, 1] -> (..., m) command."""
        return self.mid + np.clip(action, -1.0, 1.0) * self.half

    def to_action(self, command: np.ndarray) -> np.ndarray:
        """(..., m) command -> (..., m) normalized action (not clipped)."""
        return (np.asarray(command, dtype=np.float64) - self.mid) / self.half

    def to_command_unclipped(self, action: np.ndarray) -> np.ndarray:
        """Exact inverse of :meth:`to_action` (no clipping): action -> command."""
        return self.mid + np.asarray(action, dtype=np.float64) * self.half


#: Action spaces of learned controllers: ``absolute`` (:class:`ActionScaler`, PDDM's own)
#: and ``delta`` (:class:`DeltaActionScaler`).
ACTION_SPACES = ('absolute', 'delta')


def check_action_space(value: str) -> None:
    """Raise ValueError naming ``value`` unless it is one of :data:`ACTION_SPACES`."""
    if value not in ACTION_SPACES:
        raise ValueError(f'action_space must be one of {ACTION_SPACES}, got {value!r}')


class DeltaActionScaler:
    """
    Normalized per-step changes relative to the measured state <-> commands.

    Position robots: ``command = clip(q + a * step, lower, upper)`` with
    ``step = min(max_step, velocity * dt)``, exactly the supervisor's ``step`` and
    ``velocity`` bounds, so |a| <= 1 is what the supervisor lets through unchanged and a
    model's input clipping to [-1, 1] reproduces its clamp. Velocity robots:
    ``command = clip(qdot + a * max_step, -velocity, velocity)``.

    Args:
        spec: robot spec (actuated joints, command order).
    """

    def __init__(self, spec: RobotSpec) -> None:
        self.position = spec.command_interface == 'position'
        velocity = spec.limits_array('velocity')
        if self.position:
            self.step = np.minimum(spec.limits_array('max_step'), velocity * spec.period_s)
            self.low, self.high = spec.limits_array('lower'), spec.limits_array('upper')
        else:
            self.step = spec.limits_array('max_step')
            self.low, self.high = -velocity, velocity

    def to_command(self, action: np.ndarray, measured: np.ndarray) -> np.ndarray:
        """(..., m) action, clipped to [-1, 1], and the measured q (or qdot) -> command."""
        return np.clip(measured + np.clip(action, -1.0, 1.0) * self.step, self.low, self.high)

    def to_action(self, command: np.ndarray, measured: np.ndarray) -> np.ndarray:
        """(..., m) command and the measured q (or qdot) -> action (not clipped)."""
        return (np.asarray(command, dtype=np.float64) - measured) / self.step
