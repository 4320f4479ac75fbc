"""
Planner rewards: each twin task's reward as a vectorized function of predicted states.

A planner scores predicted states (E, N, H, nx) laid out by a :class:`StateLayout`. The
builders live with their robot (``robots/<robot>/rewards.py``) and call the same reward
functions the twins use, so the planner optimizes exactly what the twin reports on
``reward`` (a test checks that on real twin states). This module is their registry
(:data:`TASK_REWARDS`, one line per task), :func:`make_reward` and :func:`torch_reward`,
which adapts one to the planners' torch interface.

Every builder returns a :data:`~dexmpc_ros.core.types.NumpyReward`: ``reward(states,
actions, state0) -> (rewards, dones)`` on numpy arrays: states (..., H, nx), actions
(..., H, nu), state0 (nx,) the current state; rewards (..., H) float64 and dones (..., H)
bool. Builders that take options get them from :func:`make_reward` as keywords.

Tasks: ``valve`` and ``baoding`` (hand), ``reach`` (WidowX), ``waypoints`` and
``figure8`` (roach).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import NumpyReward
from dexmpc_ros.robots.hand24.rewards import baoding, valve
from dexmpc_ros.robots.roach.rewards import figure8, waypoints
from dexmpc_ros.robots.widowx.rewards import reach

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
