"""
Planner rewards: each twin task's reward as a vectorized function of predicted states.

A planner scores predicted states (E, N, H, nx) laid out by a :class:`StateLayout`. These
builders pick the task's columns and call the same reward functions the twins use
(``robots/twins/*_tasks.py``, ``widowx.reach_reward``), so the planner optimizes exactly
what the twin reports on ``reward`` (a test checks that on real twin states).

Every builder returns ``reward(states, actions, state0) -> (rewards, dones)`` on numpy
arrays: states (..., H, nx), actions (..., H, nu), state0 (nx,) the current state;
rewards (..., H) float64 and dones (..., H) bool. :func:`torch_reward` adapts one to the
planners' torch interface.

Tasks: ``valve`` (hand), ``reach`` (WidowX), ``waypoints`` (roach: distance to the current
waypoint, which stays fixed over the horizon), ``baoding`` (hand) and ``figure8`` (roach).
Baoding's targets move: predicted state h (h = 1..H steps ahead) is scored against the
targets the twin will show h steps after ``state0``, on the task's ellipse from the phase of
the targets in ``state0`` (the targets a model predicts are not used), and a predicted ball
below the twin's drop height is done, so the planner's per-step done penalty applies from
there on.

Figure 8 (roach): the twin's reward (:func:`~dexmpc_ros.robots.twins.roach_tasks.figure8_reward`,
minus the distance to a reference moving along a figure 8) of the predicted positions, with
the reference advanced over the horizon. Predicted step h (0-based) lies at episode time
``t0 + (h + 1) * dt``, ``t0`` being the current state's ``task/episode_time``: the waypoint
reward's fixed target would chase where the reference is now, not where it will be. The clock
comes from ``state0`` and the control period, not from the model's predicted time column
(which a model can only get wrong). The track's crossing point and initial heading are not in
the roach's task state; the twin starts every episode at the odom origin heading +x, so the
reward uses (0, 0) and 0. Should the task state ever carry them, read them from ``state0``.

Builders that take options get them from :func:`make_reward` as keywords (``baoding``: the
:class:`~dexmpc_ros.robots.twins.hand_tasks.BaodingTask` fields the twin was given, and
optionally ``drop_z``; ``figure8``: the twin task's ``size`` and ``period_s``, and optionally
``dt``); the defaults are the twin's defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict
from functools import cache

import numpy as np

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.state_layout import POS, TASK, StateLayout
from dexmpc_ros.robots.twins.hand_tasks import (BaodingTask, baoding_dropped,
                                                baoding_target_phase, baoding_targets,
                                                make_task, reward_valve, valve_angle_error)
from dexmpc_ros.robots.twins.roach_tasks import Figure8Config, figure8_reward, waypoint_reward
from dexmpc_ros.robots.twins.widowx import reach_reward

NumpyReward = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def valve(layout: StateLayout) -> NumpyReward:
    """PDDM valve reward of the predicted valve angle against the (constant) target."""
    angle, target = layout.columns([TASK + 'valve_angle', TASK + 'target_angle'])

    def reward(states: np.ndarray, actions: np.ndarray, state0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        error = valve_angle_error(states[..., angle], state0[target])
        return reward_valve(error), np.zeros(error.shape, dtype=bool)

    return reward


def reach(layout: StateLayout) -> NumpyReward:
    """Minus the predicted end-effector distance to the (constant) reach target."""
    ee = layout.columns([TASK + 'ee_x', TASK + 'ee_y', TASK + 'ee_z'])
    target = layout.columns([TASK + 'target_x', TASK + 'target_y', TASK + 'target_z'])

    def reward(states: np.ndarray, actions: np.ndarray, state0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        value = reach_reward(states[..., ee], state0[target])
        return value, np.zeros(value.shape, dtype=bool)

    return reward


def waypoints(layout: StateLayout) -> NumpyReward:
    """Minus the predicted body distance to the current waypoint (fixed over the horizon)."""
    xy = layout.columns([TASK + 'x', TASK + 'y'])
    target = layout.columns([TASK + 'target_x', TASK + 'target_y'])

    def reward(states: np.ndarray, actions: np.ndarray, state0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        value = waypoint_reward(states[..., xy], state0[target])
        return value, np.zeros(value.shape, dtype=bool)

    return reward


#: the Baoding wrist flexion joint the reward penalises (HandTwin reads the same joint)
BAODING_WRIST = 'WRJ1'


def baoding_drop_z(task: BaodingTask | None = None) -> float:
    """
    The Baoding twin's drop height [m] for ``task`` (default: the default task).

    The twin derives it from where its palm settles under the balls, so it is read off a
    twin built with the same task options (about 0.3 s, once per task config and process).
    """
    return _twin_drop_z(task if task is not None else BaodingTask())


@cache
def _twin_drop_z(task: BaodingTask) -> float:
    from dexmpc_ros.robots.twins.hand import HandTwin

    twin = HandTwin('baoding', seed=0, **asdict(task))
    try:
        return float(twin.drop_z)
    finally:
        twin.close()


def baoding(layout: StateLayout, drop_z: float | None = None,
            **task_options: object) -> NumpyReward:
    """
    PDDM Baoding reward against the targets' future positions; done where a ball dropped.

    Args:
        layout: state columns (balls, targets, ``pos/WRJ1``).
        drop_z: a ball centre below this height [m] has dropped; None: the twin's own
            (:func:`baoding_drop_z` for these task options). Pass it where no twin model
            can be built (hardware).
        **task_options: :class:`BaodingTask` fields as given to the twin (``period_steps``,
            ``center``, ...); the defaults are the twin's.

    Raises:
        ValueError: unknown task option (the message lists the accepted ones).
        KeyError: the layout lacks a column the reward reads.
    """
    task = make_task('baoding', **task_options)
    drop = float(baoding_drop_z(task) if drop_z is None else drop_z)
    ball1 = layout.columns([TASK + 'ball1_x', TASK + 'ball1_y', TASK + 'ball1_z'])
    ball2 = layout.columns([TASK + 'ball2_x', TASK + 'ball2_y', TASK + 'ball2_z'])
    targets = layout.columns([TASK + 'target1_x', TASK + 'target1_y',
                              TASK + 'target2_x', TASK + 'target2_y'])
    wrist = layout.columns([POS + BAODING_WRIST])[0]
    radii = (task.x_radius, task.y_radius)

    def reward(states: np.ndarray, actions: np.ndarray, state0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        now = np.asarray(state0, dtype=np.float64)[targets].reshape(2, 2)
        phases = baoding_target_phase(now, task.center, radii)
        # predicted state h (0-based) is h + 1 steps ahead, where the twin scores it
        steps = np.arange(1, states.shape[-2] + 1)
        target1, target2 = baoding_targets(steps, task.period_steps, task.center, radii,
                                           (phases[0], phases[1]), task.counter_clockwise)
        b1, b2 = states[..., ball1], states[..., ball2]
        values = task.reward(b1, b2, target1, target2, states[..., wrist], drop)
        return values, baoding_dropped(b1, b2, drop)

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


#: task name -> builder ``builder(layout, **options) -> reward``
TASK_REWARDS: dict[str, Callable[..., NumpyReward]] = {
    'valve': valve, 'reach': reach, 'waypoints': waypoints, 'baoding': baoding,
    'figure8': figure8}


def make_reward(task: str, layout: StateLayout, **options: object) -> NumpyReward:
    """
    The planner reward of ``task`` for states laid out by ``layout``.

    Args:
        task: a key of :data:`TASK_REWARDS`.
        layout: the model's state layout.
        **options: the builder's options (e.g. Baoding's task fields); none by default.

    Raises:
        ValueError: unknown task or option; the message lists what is accepted.
    """
    if task not in TASK_REWARDS:
        raise ValueError(f'no planner reward for task {task!r}; available: '
                         f'{", ".join(TASK_REWARDS)}')
    builder = TASK_REWARDS[task]
    parameters = list(inspect.signature(builder).parameters.values())[1:]
    if options and not any(p.kind is p.VAR_KEYWORD for p in parameters):
        accepted = [p.name for p in parameters]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f'planner reward {task!r} has no option(s) {unknown}; '
                             f'accepted: {", ".join(accepted) or "(none)"}')
    return builder(layout, **options)


def torch_reward(reward: NumpyReward):
    """
    Adapt a numpy reward to the planners' torch interface (CPU tensors, no copies).

    Returns:
        ``fn(states (E, N, H, nx), actions (N, H, nu), state0 (nx,)) -> (rewards (E, N, H)
        float32, dones (E, N, H) bool)`` on torch tensors.
    """
    import torch

    def fn(states, actions, state0):
        values, dones = reward(states.detach().numpy(), actions.detach().numpy(),
                               state0.detach().numpy())
        return (torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(dones)))

    return fn
