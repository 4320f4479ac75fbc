"""
Scripted controller: smooth sine targets around the default pose.

The foundation's stand-in for a learned controller. Each actuated joint follows
``q_j(t) = q0_j + A * half_range_j * sin(2 pi t / T + phase_j)`` (position robots) or a
velocity ``v_j(t) = v0 + A * vmax_j * sin(...)`` (velocity robots), with phases spread
over the joints so the motion is visible on every joint. The amplitude ramps up linearly
over ``ramp_s`` after every reset, so the first command equals the default pose instead of
jumping (the supervisor would clamp the jump). Time is counted in control steps, so the
script is identical in real and simulated time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dexmpc_ros.core.action_space import ActionScaler
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.types import Observation


@dataclass(frozen=True)
class ScriptedConfig:
    """
    Sine script settings.

    Attributes:
        amplitude: fraction of each joint's half range (position) or of its velocity limit
            (velocity robots), in [0, 1].
        period_s: sine period [s].
        offset: velocity robots only: constant part as a fraction of the velocity limit,
            so a legged robot walks forward while it weaves.
        ramp_s: time over which the motion fades in after a reset [s]; 0 = none.
    """

    amplitude: float = 0.3
    period_s: float = 4.0
    offset: float = 0.3
    ramp_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.amplitude <= 1.0:
            raise ValueError(f'amplitude must be in [0, 1], got {self.amplitude}')
        if not self.period_s > 0:
            raise ValueError(f'period_s must be > 0, got {self.period_s}')
        if not -1.0 <= self.offset <= 1.0:
            raise ValueError(f'offset must be in [-1, 1], got {self.offset}')
        if self.ramp_s < 0:
            raise ValueError(f'ramp_s must be >= 0, got {self.ramp_s}')


class ScriptedController:
    """Sine targets; ``act(obs) -> command (m,)``, ``reset()`` restarts the script."""

    def __init__(self, spec: RobotSpec, config: ScriptedConfig | None = None) -> None:
        self.spec = spec
        self.config = config or ScriptedConfig()
        self._scaler = ActionScaler(spec)
        m = len(spec.actuated_joints)
        self._phase = np.linspace(0.0, 2.0 * math.pi, m, endpoint=False)
        self._center = spec.default_command
        self.step_count = 0

    def reset(self) -> None:
        """Restart the script at t = 0."""
        self.step_count = 0

    def act(self, obs: Observation) -> np.ndarray:
        """Next command (m,) in command order; ``obs`` is not needed by the script."""
        t = self.step_count * self.spec.period_s
        self.step_count += 1
        fade = min(1.0, t / self.config.ramp_s) if self.config.ramp_s > 0 else 1.0
        wave = fade * np.sin(2.0 * math.pi * t / self.config.period_s + self._phase)
        if self.spec.command_interface == 'velocity':
            vmax = self.spec.limits_array('velocity')
            return vmax * fade * (self.config.offset + self.config.amplitude * wave)
        target = self._center + self.config.amplitude * self._scaler.half * wave
        low, high = self.spec.limits_array('lower'), self.spec.limits_array('upper')
        return np.clip(target, low, high)
