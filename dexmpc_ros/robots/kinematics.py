"""
Named forward kinematics, as a robot spec's ``safety.workspace.kinematics`` refers to them.

The functions live with their robot (``robots/widowx/kinematics.py``); this registry maps a
name to them and imports a robot's module only when its kinematics is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Kinematics:
    """
    A named forward-kinematics function.

    Attributes:
        joints: joint names the function takes, in order.
        ee_position: (..., len(joints)) joint positions [rad] -> (..., 3) end-effector
            position [m] in the robot base frame.
    """

    joints: tuple[str, ...]
    ee_position: Callable[[np.ndarray], np.ndarray]


#: ``safety.workspace.kinematics`` name -> ``module:attribute`` of its :class:`Kinematics`.
KINEMATICS: dict[str, str] = {
    'wx250s': 'dexmpc_ros.robots.widowx.kinematics:WX250S',
}


def load_kinematics(name: str) -> Kinematics:
    """
    The forward kinematics registered as ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in KINEMATICS:
        raise KeyError(f'unknown kinematics {name!r}; available: {", ".join(KINEMATICS)}')
    module, attribute = KINEMATICS[name].split(':')
    return getattr(importlib.import_module(module), attribute)
