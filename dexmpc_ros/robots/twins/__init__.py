"""
MuJoCo twins of the three robots.

:func:`make_twin` is the one factory the twin node and tests use.
"""

from __future__ import annotations

from typing import Any

from dexmpc_ros.robots.twin import Twin

TWINS = {
    'widowx': 'dexmpc_ros.robots.twins.widowx:WidowXTwin',
    'hand24': 'dexmpc_ros.robots.twins.hand:HandTwin',
    'roach': 'dexmpc_ros.robots.twins.roach:RoachTwin',
}


def make_twin(robot: str, **options: Any) -> Twin:
    """
    Build the twin of ``robot`` with twin-specific ``options`` (task, friction, ...).

    Raises:
        ValueError: unknown robot or option (the message lists what is accepted).
    """
    import importlib

    if robot not in TWINS:
        raise ValueError(f'no twin for robot {robot!r}; available: {", ".join(sorted(TWINS))}')
    module_name, class_name = TWINS[robot].split(':')
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)
