"""Planner reward of the WidowX reach task on predicted states (``control/task_rewards.py``)."""

from __future__ import annotations

import numpy as np

from dexmpc_ros.core.state_layout import TASK, StateLayout
from dexmpc_ros.core.types import NumpyReward
from dexmpc_ros.robots.widowx.twin import reach_reward


def reach(layout: StateLayout) -> NumpyReward:
    """Minus the predicted end-effector distance to the (constant) reach target."""
    ee = layout.columns([TASK + 'ee_x', TASK + 'ee_y', TASK + 'ee_z'])
    target = layout.columns([TASK + 'target_x', TASK + 'target_y', TASK + 'target_z'])

    def reward(states: np.ndarray, actions: np.ndarray, state0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        value = reach_reward(states[..., ee], state0[target])
        return value, np.zeros(value.shape, dtype=bool)

    return reward
