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
