"""
Small shared types with stated shapes.

n = number of joints in ``joint_states``, m = actuated joints (command length),
k = length of the task vector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Observation:
    """
    What a controller sees at one tick.

    Attributes:
        stamp_ns: stamp of the newest message used [ns]; copied into the command header.
        position: (n,) joint positions [rad or m], ``joint_states`` order.
        velocity: (n,) joint velocities [rad/s or m/s].
        task_names: names of the task vector entries (k,).
        task: (k,) task vector (object poses, valve angle, ...); empty if none.
    """

    stamp_ns: int
    position: np.ndarray
    velocity: np.ndarray
    task_names: tuple[str, ...] = ()
    task: np.ndarray = field(default_factory=lambda: np.empty(0))


#: A planner reward on predicted states: ``reward(states (..., H, nx), actions (..., H, nu),
#: state0 (nx,)) -> (rewards (..., H) float64, dones (..., H) bool)``; states laid out by a
#: :class:`~dexmpc_ros.core.state_layout.StateLayout`, ``state0`` the current state.
NumpyReward = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
