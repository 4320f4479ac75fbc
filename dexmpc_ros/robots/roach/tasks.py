"""
Roach tasks: waypoint following, straight running and a figure-8 track.

Two layers, so a model-based planner scores imagined rollouts with exactly the twin's reward:

- pure, vectorized reward functions over batches of planar states (``xy (..., 2)`` in the
  world/odom frame [m], times [s]): :func:`waypoint_reward`, :func:`straight_reward`,
  :func:`figure8_reference`, :func:`figure8_reward`;
- task objects that hold one episode's goal (the waypoints, the line, the track's start) and
  call those functions on the robot's pose after every control step.

Every task exposes the same named state: ``x, y, cos_yaw, sin_yaw, target_x, target_y``
followed by its :attr:`RoachTask.extra_names`; ``target_*`` is the point the robot should head
for now. The heading is the cosine and sine of the yaw, not the angle: the angle wraps at
+-pi, so a model learning state changes sees a 2 pi jump whenever the robot turns through
the wrap (5.5 % of a random walk's steps; a learned model's 10-step position error was 95 mm
with the angle, 59 mm with cos/sin). The full pose is on ``odom``.

Options are frozen config dataclasses; :func:`make_task` builds a task from keyword options.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

BASE_STATE_NAMES = ('x', 'y', 'cos_yaw', 'sin_yaw', 'target_x', 'target_y')


# Vectorized rewards ------------------------------------------------------------------------
def waypoint_reward(xy: np.ndarray, target_xy: np.ndarray) -> np.ndarray:
    """
    Waypoint reward: minus the distance to the current waypoint.

    Args:
        xy: (..., 2) robot positions [m].
        target_xy: (..., 2) waypoint positions [m], broadcast against ``xy``.

    Returns:
        (...) rewards [-m]; 0 on the waypoint.
    """
    diff = np.asarray(xy, dtype=np.float64) - np.asarray(target_xy, dtype=np.float64)
    return -np.linalg.norm(diff, axis=-1)


def line_coordinates(xy: np.ndarray, origin: np.ndarray, heading: float | np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """
    Coordinates of points relative to a directed line.

    Args:
        xy: (..., 2) positions [m].
        origin: (..., 2) a point of the line [m].
        heading: (...) direction of the line [rad], world frame.

    Returns:
        (progress, lateral), each (...) [m]: distance along the line from ``origin`` and
        signed distance from it (positive to the left of the direction of travel).
    """
    rel = np.asarray(xy, dtype=np.float64) - np.asarray(origin, dtype=np.float64)
    cos, sin = np.cos(heading), np.sin(heading)
    return rel[..., 0] * cos + rel[..., 1] * sin, -rel[..., 0] * sin + rel[..., 1] * cos


def straight_reward(xy: np.ndarray, prev_xy: np.ndarray, origin: np.ndarray,
                    heading: float | np.ndarray, dt: float,
                    lateral_weight: float = 1.0) -> np.ndarray:
    """
    Straight-running reward: speed along the line minus weighted lateral deviation.

    ``r = (progress(xy) - progress(prev_xy)) / dt - lateral_weight * |lateral(xy)|``

    Args:
        xy: (..., 2) positions after the step [m].
        prev_xy: (..., 2) positions before the step [m].
        origin: (2,) start of the line [m] (the robot's position at reset).
        heading: direction of the line [rad] (the robot's yaw at reset).
        dt: step duration [s], > 0.
        lateral_weight: penalty per metre of lateral deviation [1/s].

    Returns:
        (...) rewards [m/s].
    """
    progress, lateral = line_coordinates(xy, origin, heading)
    prev_progress, _ = line_coordinates(prev_xy, origin, heading)
    return (progress - prev_progress) / dt - lateral_weight * np.abs(lateral)


def figure8_reference(time_s: np.ndarray | float, size: float, period_s: float,
                      origin: np.ndarray = (0.0, 0.0), heading: float = 0.0) -> np.ndarray:
    """
    Point of a lemniscate of Gerono traversed once per ``period_s``.

    In the track frame ``q(t) = size * (sin p, sin p cos p)`` with ``p = 2 pi t / period_s``;
    the track frame is turned by ``heading - pi/4`` and placed at ``origin`` so the reference
    leaves the crossing point (t = 0) along ``heading``. The lobes lie 45 deg to either side.

    Args:
        time_s: (...) times since the episode start [s].
        size: half-length of the figure [m].
        period_s: duration of one full figure 8 [s].
        origin: (2,) crossing point [m].
        heading: initial direction of travel [rad].

    Returns:
        (..., 2) reference positions [m].
    """
    phase = 2.0 * math.pi * np.asarray(time_s, dtype=np.float64) / period_s
    local_x = size * np.sin(phase)
    local_y = size * np.sin(phase) * np.cos(phase)
    turn = heading - math.pi / 4.0
    cos, sin = math.cos(turn), math.sin(turn)
    return np.stack([origin[0] + cos * local_x - sin * local_y,
                     origin[1] + sin * local_x + cos * local_y], axis=-1)


def figure8_reward(xy: np.ndarray, time_s: np.ndarray | float, size: float, period_s: float,
                   origin: np.ndarray = (0.0, 0.0), heading: float = 0.0) -> np.ndarray:
    """
    Figure-8 reward: minus the distance to the moving reference point.

    Args:
        xy: (..., 2) positions [m] at times ``time_s`` (..., broadcast).
        time_s, size, period_s, origin, heading: see :func:`figure8_reference`.

    Returns:
        (...) rewards [-m].
    """
    return waypoint_reward(xy, figure8_reference(time_s, size, period_s, origin, heading))


# Configs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WaypointsConfig:
    """
    Follow waypoints; reach each within ``reach_radius`` to move on to the next.

    Attributes:
        waypoints: fixed waypoints [(x, y), ...] in the world frame [m]; empty: draw
            ``count`` random ones per episode.
        count: random waypoints per episode.
        distance_range: (min, max) distance between consecutive random waypoints [m] (the
            first from the start position).
        max_bearing: largest turn of a random leg relative to the previous one (the first
            relative to the start heading) [rad].
        reach_radius: distance at which a waypoint counts as reached [m].
    """

    waypoints: tuple[tuple[float, float], ...] = ()
    count: int = 1
    distance_range: tuple[float, float] = (0.3, 1.0)
    max_bearing: float = math.pi / 4.0
    reach_radius: float = 0.05

    def __post_init__(self) -> None:
        try:
            points = tuple((float(x), float(y)) for x, y in self.waypoints)
        except (TypeError, ValueError) as exc:
            raise ValueError(f'waypoints must be a list of (x, y) pairs, got '
                             f'{self.waypoints!r}') from exc
        if not all(math.isfinite(v) for p in points for v in p):
            raise ValueError(f'waypoints must be finite, got {points}')
        object.__setattr__(self, 'waypoints', points)
        if self.count < 1:
            raise ValueError(f'count must be >= 1, got {self.count}')
        low, high = (float(v) for v in self.distance_range)
        if not 0.0 < low <= high:
            raise ValueError(f'distance_range must satisfy 0 < min <= max, got '
                             f'{self.distance_range}')
        object.__setattr__(self, 'distance_range', (low, high))
        if not 0.0 <= self.max_bearing <= math.pi:
            raise ValueError(f'max_bearing must be in [0, pi] rad, got {self.max_bearing}')
        if not self.reach_radius > 0.0:
            raise ValueError(f'reach_radius must be > 0 m, got {self.reach_radius}')


@dataclass(frozen=True)
class StraightConfig:
    """
    Run straight along the start heading.

    Attributes:
        lateral_weight: reward penalty per metre of lateral deviation [1/s].
        lookahead: distance ahead of the robot's projection on the line where the
            published target lies [m].
    """

    lateral_weight: float = 1.0
    lookahead: float = 0.5

    def __post_init__(self) -> None:
        if not self.lateral_weight >= 0.0:
            raise ValueError(f'lateral_weight must be >= 0, got {self.lateral_weight}')
        if not self.lookahead > 0.0:
            raise ValueError(f'lookahead must be > 0 m, got {self.lookahead}')


@dataclass(frozen=True)
class Figure8Config:
    """
    Track a point moving along a figure 8 (:func:`figure8_reference`).

    Attributes:
        size: half-length of the figure [m].
        period_s: duration of one figure 8 [s]; the default peaks at 0.15 m/s.
    """

    size: float = 0.5
    period_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.size > 0.0:
            raise ValueError(f'size must be > 0 m, got {self.size}')
        if not self.period_s > 0.0:
            raise ValueError(f'period_s must be > 0 s, got {self.period_s}')


# Tasks -------------------------------------------------------------------------------------
class RoachTask(abc.ABC):
    """
    One task's episode state; the twin calls :meth:`reset` then :meth:`update` per step.

    Poses are planar ``(x [m], y [m], yaw [rad])`` in the world frame; times are seconds
    since the episode start.
    """

    #: names of :meth:`extras`, appended to :data:`BASE_STATE_NAMES` in ``task_state``
    extra_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.last_reward = 0.0

    @abc.abstractmethod
    def reset(self, rng: np.random.Generator, pose: np.ndarray) -> None:
        """Start an episode from ``pose`` (3,); draws the goal from ``rng``."""

    @abc.abstractmethod
    def update(self, pose: np.ndarray, time_s: float) -> None:
        """Score the step that ended at ``pose`` (3,) and ``time_s``; advance the goal."""

    @abc.abstractmethod
    def target(self) -> np.ndarray:
        """The point (2,) the robot should head for now [m]."""

    @abc.abstractmethod
    def extras(self) -> np.ndarray:
        """Task-specific state values, one per :attr:`extra_names`."""

    def done(self) -> bool:
        """True once the task is complete."""
        return False


class WaypointsTask(RoachTask):
    """Reward ``-distance`` to the current waypoint; done after the last one is reached."""

    extra_names = ('waypoint_index',)

    def __init__(self, config: WaypointsConfig) -> None:
        super().__init__()
        self.config = config
        self.waypoints = np.zeros((1, 2))
        self.index = 0
        self._done = False

    def reset(self, rng: np.random.Generator, pose: np.ndarray) -> None:
        """Use the fixed waypoints, or draw a random chain ahead of ``pose``."""
        cfg = self.config
        if cfg.waypoints:
            self.waypoints = np.array(cfg.waypoints, dtype=np.float64)
        else:
            points, position, heading = [], np.asarray(pose[:2], dtype=np.float64), pose[2]
            for _ in range(cfg.count):
                heading = heading + rng.uniform(-cfg.max_bearing, cfg.max_bearing)
                position = position + rng.uniform(*cfg.distance_range) * np.array(
                    [math.cos(heading), math.sin(heading)])
                points.append(position)
            self.waypoints = np.array(points)
        self.index = 0
        self._done = False
        self.last_reward = float(waypoint_reward(pose[:2], self.waypoints[0]))

    def update(self, pose: np.ndarray, time_s: float) -> None:
        """Reward against the current waypoint, then move on if it was reached."""
        self.last_reward = float(waypoint_reward(pose[:2], self.waypoints[self.index]))
        if -self.last_reward <= self.config.reach_radius:
            if self.index + 1 < len(self.waypoints):
                self.index += 1
            else:
                self._done = True

    def target(self) -> np.ndarray:
        """The current waypoint (2,) [m]."""
        return self.waypoints[self.index].copy()

    def extras(self) -> np.ndarray:
        """Index of the current waypoint."""
        return np.array([float(self.index)])

    def done(self) -> bool:
        """True once the last waypoint was reached."""
        return self._done


class StraightTask(RoachTask):
    """Reward speed along the start heading minus lateral deviation (:func:`straight_reward`)."""

    extra_names = ('progress', 'lateral', 'line_heading')

    def __init__(self, config: StraightConfig) -> None:
        super().__init__()
        self.config = config
        self.origin = np.zeros(2)
        self.heading = 0.0
        self._xy = np.zeros(2)
        self._time = 0.0

    def reset(self, rng: np.random.Generator, pose: np.ndarray) -> None:
        """The line starts at the robot and points along its yaw."""
        self.origin = np.array(pose[:2], dtype=np.float64)
        self.heading = float(pose[2])
        self._xy = self.origin.copy()
        self._time = 0.0
        self.last_reward = 0.0

    def update(self, pose: np.ndarray, time_s: float) -> None:
        """Reward the step from the previous position to ``pose``."""
        xy = np.array(pose[:2], dtype=np.float64)
        dt = time_s - self._time
        if dt > 0.0:
            self.last_reward = float(straight_reward(
                xy, self._xy, self.origin, self.heading, dt, self.config.lateral_weight))
        self._xy, self._time = xy, time_s

    def target(self) -> np.ndarray:
        """The line point ``lookahead`` ahead of the robot's projection onto it (2,) [m]."""
        progress, _ = line_coordinates(self._xy, self.origin, self.heading)
        along = float(progress) + self.config.lookahead
        return self.origin + along * np.array([math.cos(self.heading), math.sin(self.heading)])

    def extras(self) -> np.ndarray:
        """Progress [m] and signed lateral offset [m] on the line, the line's heading [rad]."""
        progress, lateral = line_coordinates(self._xy, self.origin, self.heading)
        return np.array([float(progress), float(lateral), self.heading])


class Figure8Task(RoachTask):
    """Reward ``-distance`` to a reference moving along a figure 8 through the start."""

    extra_names = ('episode_time',)

    def __init__(self, config: Figure8Config) -> None:
        super().__init__()
        self.config = config
        self.origin = np.zeros(2)
        self.heading = 0.0
        self._time = 0.0

    def reset(self, rng: np.random.Generator, pose: np.ndarray) -> None:
        """The figure crosses itself at the robot's start and leaves along its yaw."""
        self.origin = np.array(pose[:2], dtype=np.float64)
        self.heading = float(pose[2])
        self._time = 0.0
        self.last_reward = float(self.reward_at(pose[:2], 0.0))

    def update(self, pose: np.ndarray, time_s: float) -> None:
        """Reward against the reference point at ``time_s``."""
        self._time = time_s
        self.last_reward = float(self.reward_at(pose[:2], time_s))

    def reward_at(self, xy: np.ndarray, time_s: np.ndarray | float) -> np.ndarray:
        """Vectorized reward of positions (..., 2) at episode times (...) for this episode."""
        return figure8_reward(xy, time_s, self.config.size, self.config.period_s,
                              self.origin, self.heading)

    def target(self) -> np.ndarray:
        """The reference point now (2,) [m]."""
        return figure8_reference(self._time, self.config.size, self.config.period_s,
                                 self.origin, self.heading)

    def extras(self) -> np.ndarray:
        """Time since the episode start [s] (the reference's clock)."""
        return np.array([self._time])


TASKS: dict[str, tuple[type[RoachTask], type]] = {
    'waypoints': (WaypointsTask, WaypointsConfig),
    'straight': (StraightTask, StraightConfig),
    'figure8': (Figure8Task, Figure8Config),
}


def make_task(name: str, **options: object) -> RoachTask:
    """
    Build a task by name with its config options.

    Raises:
        ValueError: unknown task or option (the message lists the accepted ones), or an
            option value the config rejects.
    """
    if name not in TASKS:
        raise ValueError(f'roach: unknown task {name!r}; available: {", ".join(sorted(TASKS))}')
    task_cls, config_cls = TASKS[name]
    accepted = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f'roach task {name!r}: unknown options {unknown}; accepted: '
                         f'{", ".join(accepted) or "none"}')
    try:
        config = config_cls(**options)
    except ValueError as exc:
        raise ValueError(f'roach task {name!r}: {exc}') from exc
    return task_cls(config)
