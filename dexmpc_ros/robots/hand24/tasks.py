"""
PDDM's hand tasks, valve turning and Baoding balls, as configs plus vectorized rewards.

The reward functions are pure numpy and broadcast over any leading batch shape, so the
learned-dynamics MPC scores predicted states with exactly the function the twin publishes
on ``reward`` (PDDM's ``get_reward(obs, acts)``, papers.md §7.2, hardware.md §3.4).

Valve (PDDM ``dclaw_turn``): turn a three-spoke valve to a target angle.
    r = -10 |dtheta| + 1[|dtheta| < 0.25] + 10[|dtheta| < 0.1],  dtheta wrapped to (-pi, pi].

Baoding (PDDM ``baoding``, task BAODING_CCW): two balls in the palm follow two targets that
travel half a turn apart on an ellipse, counter-clockwise seen from above, one lap every
``period_steps`` control steps.
    r = -5 ||b1_xy - t1|| - 5 ||b2_xy - t2|| - 500 * drop - 10 * [wrist flexion > 0.15 rad],
    drop = a ball centre below ``drop_z`` (the episode ends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

VALVE_STATE_NAMES = ['valve_angle', 'valve_velocity', 'target_angle', 'angle_error']
BAODING_STATE_NAMES = ['ball1_x', 'ball1_y', 'ball1_z', 'ball2_x', 'ball2_y', 'ball2_z',
                       'target1_x', 'target1_y', 'target2_x', 'target2_y']

DROP_PENALTY = 500.0
WRIST_PENALTY = 10.0


# Valve -------------------------------------------------------------------------------------
def valve_angle_error(angle: np.ndarray | float, target: np.ndarray | float) -> np.ndarray:
    """
    Signed valve error ``angle - target`` wrapped to (-pi, pi] [rad], broadcast.

    A full turn too far is on target (PDDM's convention); the raw angle keeps counting turns.
    """
    diff = np.asarray(angle, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return np.arctan2(np.sin(diff), np.cos(diff))


def reward_valve(angle_error: np.ndarray | float) -> np.ndarray:
    """
    PDDM valve reward of a wrapped angle error.

    Args:
        angle_error: (...) wrapped valve error [rad] (see :func:`valve_angle_error`).

    Returns:
        (...) rewards: ``-10|e| + 1[|e| < 0.25] + 10[|e| < 0.1]``; 11 on target.
    """
    error = np.abs(np.asarray(angle_error, dtype=np.float64))
    return -10.0 * error + (error < 0.25) + 10.0 * (error < 0.1)


@dataclass(frozen=True)
class ValveTask:
    """
    Valve turning: reach a target angle drawn as ``sign * U(target_low, target_high)``.

    PDDM's D'Claw draws |target| from (pi/2, pi). The default here is (pi/8, pi/4): one
    stroke of the Shadow hand (fingers dipped beside the spoke, wrist swept across its
    range) turns our valve 0.6-0.7 rad (test_hand_twin.py scripts it). Going further needs
    a regrasp gait onto the next spoke, which a scripted lift-return-dip-sweep cycle does
    not achieve (< 0.1 rad more), and 100-step random walks with PDDM's settings rarely
    pass 0.7 rad (at most about 1.2 rad in 20 episodes). Targets beyond one stroke would
    measure that gait more than the controller. Pass ``target_low=pi/2, target_high=pi``
    for PDDM's range.

    Attributes:
        target_low: smallest |target| [rad], >= 0.
        target_high: largest |target| [rad], <= pi.
    """

    target_low: float = math.pi / 8
    target_high: float = math.pi / 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_low <= self.target_high <= math.pi:
            raise ValueError(f'valve targets need 0 <= target_low <= target_high <= pi, got '
                             f'target_low={self.target_low}, target_high={self.target_high}')

    def sample_target(self, rng: np.random.Generator) -> float:
        """Draw a target angle [rad] relative to the valve's reset angle (0)."""
        magnitude = rng.uniform(self.target_low, self.target_high)
        return float(magnitude if rng.random() < 0.5 else -magnitude)

    @staticmethod
    def reward(angle_error: np.ndarray | float) -> np.ndarray:
        """Vectorized reward, see :func:`reward_valve`."""
        return reward_valve(angle_error)


# Baoding -----------------------------------------------------------------------------------
def baoding_dropped(ball1_xyz: np.ndarray, ball2_xyz: np.ndarray,
                    drop_z: float) -> np.ndarray:
    """(...) True where either ball centre (..., 3) [m] is below ``drop_z`` [m]."""
    ball1_z = np.asarray(ball1_xyz, dtype=np.float64)[..., 2]
    ball2_z = np.asarray(ball2_xyz, dtype=np.float64)[..., 2]
    return (ball1_z < drop_z) | (ball2_z < drop_z)


def reward_baoding(ball1_xyz: np.ndarray, ball2_xyz: np.ndarray, target1_xy: np.ndarray,
                   target2_xy: np.ndarray, wrist_angle: np.ndarray | float, drop_z: float,
                   wrist_threshold: float = 0.15) -> np.ndarray:
    """
    PDDM Baoding reward, broadcast over leading batch dimensions.

    Args:
        ball1_xyz: (..., 3) ball 1 centre [m], world frame.
        ball2_xyz: (..., 3) ball 2 centre [m].
        target1_xy: (..., 2) target of ball 1 [m].
        target2_xy: (..., 2) target of ball 2 [m].
        wrist_angle: (...) wrist flexion WRJ1 [rad] (PDDM's ``obs[:, 1]``; positive lifts
            the fingers).
        drop_z: a ball centre below this height [m] has dropped.
        wrist_threshold: flexion above which the wrist penalty applies [rad].

    Returns:
        (...) ``-5 d1 - 5 d2 - 500 drop - 10 [wrist_angle > wrist_threshold]``.
    """
    ball1 = np.asarray(ball1_xyz, dtype=np.float64)
    ball2 = np.asarray(ball2_xyz, dtype=np.float64)
    dist1 = np.linalg.norm(ball1[..., :2] - np.asarray(target1_xy, dtype=np.float64), axis=-1)
    dist2 = np.linalg.norm(ball2[..., :2] - np.asarray(target2_xy, dtype=np.float64), axis=-1)
    dropped = baoding_dropped(ball1, ball2, drop_z)
    wrist_high = np.asarray(wrist_angle, dtype=np.float64) > wrist_threshold
    return -5.0 * dist1 - 5.0 * dist2 - DROP_PENALTY * dropped - WRIST_PENALTY * wrist_high


def baoding_targets(step: np.ndarray | int, period_steps: float,
                    center: tuple[float, float], radii: tuple[float, float],
                    phases: tuple[float, float],
                    counter_clockwise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """
    Positions of the two moving targets after ``step`` control steps.

    Target i sits at ``center + (rx cos a_i, ry sin a_i)`` with
    ``a_i = phases[i] + sign * 2 pi step / period_steps`` (sign + for counter-clockwise).

    Args:
        step: (...) control steps since the episode start.
        period_steps: steps per lap.
        center: ellipse centre (x, y) [m].
        radii: semi-axes (rx, ry) [m].
        phases: start angles of targets 1 and 2 [rad].
        counter_clockwise: direction seen from above (+z).

    Returns:
        target1, target2: each (..., 2) [m].
    """
    sign = 1.0 if counter_clockwise else -1.0
    sweep = sign * 2.0 * np.pi * np.asarray(step, dtype=np.float64) / period_steps
    out = []
    for phase in phases:
        angle = phase + sweep
        out.append(np.stack([center[0] + radii[0] * np.cos(angle),
                             center[1] + radii[1] * np.sin(angle)], axis=-1))
    return out[0], out[1]


def baoding_target_phase(target_xy: np.ndarray, center: tuple[float, float],
                         radii: tuple[float, float]) -> np.ndarray:
    """
    Ellipse angle [rad] of a target position, the inverse of :func:`baoding_targets`.

    ``baoding_targets(k, ..., phases=(a1, a2))`` seen at step 0 with ``a_i`` from this
    function are the targets ``k`` steps after the ones given (the angle is the phase plus
    the sweep so far, wrapped to (-pi, pi]).

    Args:
        target_xy: (..., 2) a target on the ellipse [m].
        center: ellipse centre (x, y) [m].
        radii: semi-axes (rx, ry) [m].

    Returns:
        (...) the angle ``a`` with ``target = center + (rx cos a, ry sin a)``.
    """
    xy = np.asarray(target_xy, dtype=np.float64)
    return np.arctan2((xy[..., 1] - center[1]) / radii[1], (xy[..., 0] - center[0]) / radii[0])


@dataclass(frozen=True)
class BaodingTask:
    """
    Baoding balls: two balls follow targets circling the palm (PDDM's geometry).

    Lengths are in the Baoding scene's world frame (palm centre of the default pose at
    (0, 0, 0.2) m, fingers along +y, thumb on +x; ``assets/hand_baoding.xml``).

    Attributes:
        period_steps: control steps per lap (PDDM: 60, i.e. 6 s at 10 Hz).
        center: ellipse centre (x, y) [m]; between the balls' resting places.
        x_radius: semi-axis across the palm [m] (PDDM 0.02).
        y_radius: semi-axis along the fingers [m] (PDDM 0.036).
        ball1_phase: start angle of target 1 [rad] (PDDM 3 pi / 4).
        ball2_phase: start angle of target 2 [rad] (PDDM -pi / 4).
        counter_clockwise: direction seen from above (PDDM BAODING_CCW).
        drop_depth: a ball has dropped when its centre is this far below the palm box
            centre of the default pose [m].
        wrist_threshold: wrist flexion (WRJ1) penalised above this [rad].
    """

    period_steps: float = 60.0
    center: tuple[float, float] = (-0.005, 0.02)
    x_radius: float = 0.02
    y_radius: float = 0.036
    ball1_phase: float = 3.0 * math.pi / 4.0
    ball2_phase: float = -math.pi / 4.0
    counter_clockwise: bool = True
    drop_depth: float = 0.05
    wrist_threshold: float = 0.15

    def __post_init__(self) -> None:
        for name in ('period_steps', 'x_radius', 'y_radius', 'drop_depth'):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f'baoding: {name} must be finite and > 0, got {value}')
        if len(self.center) != 2:
            raise ValueError(f'baoding: center needs (x, y), got {self.center}')
        object.__setattr__(self, 'center', (float(self.center[0]), float(self.center[1])))

    def targets(self, step: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Target positions (..., 2) [m] after ``step`` control steps."""
        return baoding_targets(step, self.period_steps, self.center,
                               (self.x_radius, self.y_radius),
                               (self.ball1_phase, self.ball2_phase), self.counter_clockwise)

    def reward(self, ball1_xyz: np.ndarray, ball2_xyz: np.ndarray, target1_xy: np.ndarray,
               target2_xy: np.ndarray, wrist_angle: np.ndarray | float,
               drop_z: float) -> np.ndarray:
        """Vectorized reward, see :func:`reward_baoding`."""
        return reward_baoding(ball1_xyz, ball2_xyz, target1_xy, target2_xy, wrist_angle,
                              drop_z, self.wrist_threshold)


TASKS = {'valve': ValveTask, 'baoding': BaodingTask}


def make_task(name: str, **options: object) -> ValveTask | BaodingTask:
    """
    Build task ``name`` with its options.

    Raises:
        ValueError: unknown task or option (the message lists what is accepted).
    """
    if name not in TASKS:
        raise ValueError(f'hand24: unknown task {name!r}; available: {", ".join(TASKS)}')
    cls = TASKS[name]
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f'hand24: task {name!r} has no option(s) {unknown}; '
                         f'accepted: {", ".join(accepted)}')
    return cls(**options)
