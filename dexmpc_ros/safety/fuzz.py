"""
A hostile controller for fault injection: random commands of every bad kind.

Used by ``ros/fuzz_node.py`` (the ``fuzz`` node kind of the ``*_fuzz_sim`` experiments), the
multi-process safety tests and ``bench/safety.py``. Each call to :meth:`CommandFuzzer.next`
draws one command from a fixed mix:

``near``      plausible: the measured command joints plus small noise (often passes)
``far``       finite but uniformly spread over 3x the joint range (clamped)
``huge``      +-1e6 .. +-1e300 entries (clamped)
``nan``       one NaN or +-inf entry (rejected)
``length``    one value too few or too many (rejected)
``names``     an unknown, missing, duplicated or non-actuated joint name (rejected)
``past``      stamped 1 s before the observation (rejected: age)
``future``    stamped 1 s after now (rejected: age)

No rclpy: the node supplies the observation and the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec

KINDS = ('near', 'far', 'huge', 'nan', 'length', 'names', 'past', 'future')


@dataclass(frozen=True)
class FuzzConfig:
    """
    Hostile controller settings.

    Attributes:
        seed: random seed.
        rate_hz: commands per second on average.
        burst: commands published back to back per timer tick (rate_hz / burst ticks/s).
        weights: relative frequency of each kind, in :data:`KINDS` order.
        near_noise: std of the ``near`` noise as a fraction of the per-step limit.
    """

    seed: int = 0
    rate_hz: float = 1000.0
    burst: int = 10
    weights: tuple[float, ...] = (0.3, 0.2, 0.1, 0.08, 0.08, 0.08, 0.08, 0.08)
    near_noise: float = 2.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f'rate_hz must be finite and > 0, got {self.rate_hz!r}')
        if not (isinstance(self.burst, int) and self.burst >= 1):
            raise ValueError(f'burst must be an int >= 1, got {self.burst!r}')
        if len(self.weights) != len(KINDS) or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(f'weights need {len(KINDS)} values >= 0 ({", ".join(KINDS)}), '
                             f'got {self.weights!r}')


@dataclass(frozen=True)
class FuzzCommand:
    """One hostile command: joint names, values (any length), stamp [ns], and its kind."""

    names: list[str]
    values: np.ndarray
    stamp_ns: int
    kind: str


class CommandFuzzer:
    """
    Draws hostile commands for one robot.

    Args:
        spec: the robot (command joints, limits, interface).
        config: mix and seed.
    """

    def __init__(self, spec: RobotSpec, config: FuzzConfig | None = None) -> None:
        self.spec = spec
        self.config = config or FuzzConfig()
        self.rng = np.random.default_rng(self.config.seed)
        weights = np.asarray(self.config.weights, dtype=np.float64)
        self._p = weights / weights.sum()
        self.names = list(spec.command_names)
        lower, upper = spec.limits_array('lower'), spec.limits_array('upper')
        speed = spec.limits_array('velocity')
        if spec.command_interface == 'velocity':
            lower, upper = -speed, speed
        finite = np.isfinite(lower) & np.isfinite(upper)
        self._lower = np.where(finite, lower, -10.0)
        self._upper = np.where(finite, upper, 10.0)
        self._noise = self.config.near_noise * spec.limits_array('max_step')
        self._passive = [j.name for j in spec.joints if not j.actuated]
        self.counts = dict.fromkeys(KINDS, 0)

    def next(self, measured: np.ndarray, obs_stamp_ns: int, now_ns: int) -> FuzzCommand:
        """
        Draw one command.

        Args:
            measured: (m,) measured command-joint positions (velocities for velocity
                robots), command order.
            obs_stamp_ns: stamp of the newest observation [ns].
            now_ns: current time [ns].
        """
        kind = KINDS[int(self.rng.choice(len(KINDS), p=self._p))]
        self.counts[kind] += 1
        rng, m = self.rng, len(self.names)
        names = list(self.names)
        stamp = obs_stamp_ns
        values = measured + rng.normal(0.0, 1.0, m) * self._noise
        if kind == 'far':
            span = self._upper - self._lower
            values = rng.uniform(self._lower - span, self._upper + span)
        elif kind == 'huge':
            values = rng.choice([-1.0, 1.0], m) * 10.0 ** rng.uniform(6, 300, m)
        elif kind == 'nan':
            values[rng.integers(m)] = rng.choice([np.nan, np.inf, -np.inf])
        elif kind == 'length':
            values = values[:-1] if rng.random() < 0.5 else np.append(values, 0.0)
        elif kind == 'names':
            names = self._bad_names(names)
        elif kind == 'past':
            stamp = obs_stamp_ns - 1_000_000_000
        elif kind == 'future':
            stamp = now_ns + 1_000_000_000
        if rng.random() < 0.5:  # any joint order is legal; shuffle half of them
            order = rng.permutation(len(names)) if len(names) == len(values) else None
            if order is not None:
                names, values = [names[i] for i in order], values[order]
        return FuzzCommand(names, np.asarray(values, dtype=np.float64), int(stamp), kind)

    def _bad_names(self, names: list[str]) -> list[str]:
        choice = int(self.rng.integers(4 if self._passive else 3))
        if choice == 0:
            names[int(self.rng.integers(len(names)))] = 'laser_cannon'
        elif choice == 1 and len(names) > 1:
            names[-1] = names[0]  # duplicate, one joint missing
        elif choice == 2 or len(names) == 1:
            names = names[:-1] + ['laser_cannon']
        else:
            names[-1] = self._passive[0]  # a joint that exists but is never commanded
        return names
