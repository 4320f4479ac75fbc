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
waypoint, which stays fixed over the horizon). Baoding needs the twin's drop height and its
moving targets over the horizon; it comes with the Baoding experiment.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dexmpc_ros.core.state_layout import TASK, StateLayout
from dexmpc_ros.robots.twins.hand_tasks import reward_valve, valve_angle_error
from dexmpc_ros.robots.twins.roach_tasks import waypoint_reward
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


#: task name -> builder
TASK_REWARDS: dict[str, Callable[[StateLayout], NumpyReward]] = {
    'valve': valve, 'reach': reach, 'waypoints': waypoints}


def make_reward(task: str, layout: StateLayout) -> NumpyReward:
    """The planner reward of ``task``; ValueError listing the known tasks otherwise."""
    if task not in TASK_REWARDS:
        raise ValueError(f'no planner reward for task {task!r}; available: '
                         f'{", ".join(TASK_REWARDS)}')
    return TASK_REWARDS[task](layout)


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
