"""
PDDM's random-walk exploration controller (papers.md §7.2, ``policy_random.py``).

In normalized action space a in [-1, 1]^m::

    a_{t+1} = a_t + v_t,   |v_t| ~ U[vel_min, vel_max] with a random sign per joint,
    v_t resampled every ``hold_steps`` steps, reflected at the bounds.

This makes smooth, wide-coverage motions (the data a dynamics model needs) instead of
white noise, which a position-controlled hand would just filter away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dexmpc_ros.core.action_space import ActionScaler
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.types import Observation


@dataclass(frozen=True)
class RandomWalkConfig:
    """
    Random-walk settings (PDDM baoding config defaults).

    Attributes:
        vel_min: smallest |step| of the normalized action per control step.
        vel_max: largest |step| of the normalized action per control step.
        hold_steps: steps a sampled velocity is kept.
        start_at_default: start the walk at the default pose (True) or at a random action.
        seed: RNG seed; None draws fresh entropy.
    """

    vel_min: float = 0.05
    vel_max: float = 0.15
    hold_steps: int = 2
    start_at_default: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.vel_min <= self.vel_max:
            raise ValueError(f'need 0 <= vel_min <= vel_max, got {self.vel_min}, {self.vel_max}')
        if self.vel_max > 2.0:
            raise ValueError(f'vel_max {self.vel_max} > 2 crosses the whole range in one step')
        if self.hold_steps < 1:
            raise ValueError(f'hold_steps must be >= 1, got {self.hold_steps}')


class RandomWalkController:
    """Random walk in normalized action space; ``act(obs) -> command (m,)``."""

    def __init__(self, spec: RobotSpec, config: RandomWalkConfig | None = None) -> None:
        self.spec = spec
        self.config = config or RandomWalkConfig()
        self._scaler = ActionScaler(spec)
        self._rng = np.random.default_rng(self.config.seed)
        self._m = len(spec.actuated_joints)
        self.action = np.zeros(self._m)
        self._velocity = np.zeros(self._m)
        self._step = 0
        self.reset()

    def reset(self) -> None:
        """Restart the walk (at the default pose, or at a random action)."""
        if self.config.start_at_default:
            self.action = np.clip(self._scaler.to_action(self.spec.default_command), -1, 1)
        else:
            self.action = self._rng.uniform(-1.0, 1.0, self._m)
        self._step = 0

    def act(self, obs: Observation) -> np.ndarray:
        """Advance the walk one step and return the command (m,)."""
        if self._step % self.config.hold_steps == 0:
            speed = self._rng.uniform(self.config.vel_min, self.config.vel_max, self._m)
            self._velocity = speed * self._rng.choice((-1.0, 1.0), self._m)
        self._step += 1
        nxt = self.action + self._velocity
        # Reflect at the bounds: the part beyond +-1 comes back, and the walk turns.
        over, under = nxt > 1.0, nxt < -1.0
        nxt[over] = 2.0 - nxt[over]
        nxt[under] = -2.0 - nxt[under]
        self._velocity[over | under] *= -1.0
        self.action = np.clip(nxt, -1.0, 1.0)
        return self._scaler.to_command(self.action)
