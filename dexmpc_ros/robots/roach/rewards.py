"""
Planner rewards of the roach's tasks, on predicted states (see ``control/task_rewards.py``).

``waypoints``: distance to the current waypoint, which stays fixed over the horizon.
``figure8``: the twin's reward (:func:`~dexmpc_ros.robots.roach.tasks.figure8_reward`, minus
the distance to a reference moving along a figure 8) of the predicted positions, with the
reference advanced over the horizon. Predicted step h (0-based) lies at episode time
``t0 + (h + 1) * dt``, ``t0`` being the current state's ``task/episode_time``: the waypoint
reward's fixed target would chase where the reference is now, not where it will be. The
clock comes from ``state0`` and the control period, not from the model's predicted time
column (which a model can only get wrong). The track's crossing point and initial heading
are not in the roach's task state; the twin starts every episode at the odom origin heading
+x, so the reward uses (0, 0) and 0. Should the task state ever carry them, read them from
``state0``. Options: the twin task's ``size`` and ``period_s``, and optionally ``dt``.
"""

from __future__ import annotations

import numpy as np

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.state_layout import TASK, StateLayout
from dexmpc_ros.core.types import NumpyReward
from dexmpc_ros.robots.roach.tasks import Figure8Config, figure8_reward, waypoint_reward


def waypoints(layout: StateLayout) -> NumpyReward:
    """Minus the predicted body distance to the current waypoint (fixed over the horizon)."""
    xy = layout.columns([TASK + 'x', TASK + 'y'])
    target = layout.columns([TASK + 'target_x', TASK + 'target_y'])

    def reward(states: np.ndarray, actions: np.ndarray, state0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        value = waypoint_reward(states[..., xy], state0[target])
        return value, np.zeros(value.shape, dtype=bool)

    return reward


def figure8(layout: StateLayout, size: float = Figure8Config.size,
            period_s: float = Figure8Config.period_s, dt: float | None = None) -> NumpyReward:
    """
    Minus the predicted distance to the figure-8 reference at each predicted step's time.

    Args:
        layout: the model's state layout (needs ``task/x``, ``task/y``,
            ``task/episode_time``).
        size: half-length of the figure [m] (the twin task's ``size``).
        period_s: duration of one figure 8 [s] (the twin task's ``period_s``).
        dt: time between predicted steps [s]; None: the roach spec's control period.

    Raises:
        KeyError: the layout lacks a needed column.
        ValueError: ``size``, ``period_s`` or ``dt`` is not > 0.
    """
    Figure8Config(size=size, period_s=period_s)  # the twin task's checks
    dt = load_robot_spec('roach').period_s if dt is None else float(dt)
    if not dt > 0.0:
        raise ValueError(f'dt must be > 0 s, got {dt}')
    xy = layout.columns([TASK + 'x', TASK + 'y'])
    clock = layout.columns([TASK + 'episode_time'])[0]

    def reward(states: np.ndarray, actions: np.ndarray, state0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        times = state0[clock] + dt * np.arange(1, states.shape[-2] + 1, dtype=np.float64)
        value = figure8_reward(states[..., xy], times, size, period_s)
        return value, np.zeros(value.shape, dtype=bool)

    return reward
