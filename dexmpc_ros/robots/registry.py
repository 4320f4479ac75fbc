"""
ROBOTS: every robot the stack knows, one line each, and the twin factory.

Adding a robot = a folder ``robots/<name>/`` (``twin.py`` with its Twin class, optionally
``driver.py`` with a Driver and its config), ``config/robots/<name>.yaml``,
``urdf/<name>.urdf`` and one line below. The driver registry (``driver_registry.py``) and
the experiment runner (``runtime/experiment.py``: which node moves the robot on each
backend) read this table; nothing else names the robots.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from dexmpc_ros.robots.twin import Twin


@dataclass(frozen=True)
class RobotEntry:
    """
    What the stack needs to know of one robot beyond its YAML.

    Attributes:
        folder: its package, ``dexmpc_ros.robots.<folder>``.
        twin_class: its :class:`Twin` in ``<folder>/twin.py``.
        driver_classes: (Driver class, its frozen config class) in ``<folder>/driver.py``
            for the generic ``driver_node``; None when the robot has no such driver.
        hardware_node: node kind that moves the real robot (``driver``: driver_node around
            ``driver_classes``; ``hand_driver``: the ros2_control client node).
        hil: its emulator can stand behind the real driver (backend ``hil``):
            ``<folder>/emulator.py`` has ``hil_emulator(world)`` (``robots/hil_world.py``).
    """

    folder: str
    twin_class: str
    driver_classes: tuple[str, str] | None
    hardware_node: str
    hil: bool = False

    @property
    def package(self) -> str:
        return f'dexmpc_ros.robots.{self.folder}'


ROBOTS: dict[str, RobotEntry] = {
    'widowx': RobotEntry('widowx', 'WidowXTwin', ('WidowXDriver', 'WidowXDriverConfig'),
                         'driver', hil=True),
    'hand24': RobotEntry('hand24', 'HandTwin', None, 'hand_driver'),
    'roach': RobotEntry('roach', 'RoachTwin', ('RoachDriver', 'RoachDriverConfig'),
                        'driver', hil=True),
}


def robot_node_kinds() -> dict[str, dict[str, str]]:
    """backend (``sim``, ``hardware``, ``hil``) -> robot -> node kind that moves it."""
    return {
        'sim': {name: 'twin' for name in ROBOTS},
        'hardware': {name: entry.hardware_node for name, entry in ROBOTS.items()},
        'hil': {name: 'driver' for name, entry in ROBOTS.items() if entry.hil},
    }


def make_twin(robot: str, **options: Any) -> Twin:
    """
    Build the twin of ``robot`` with twin-specific ``options`` (task, friction, ...).

    Raises:
        ValueError: unknown robot or option (the message lists what is accepted).
    """
    if robot not in ROBOTS:
        raise ValueError(f'no twin for robot {robot!r}; available: {", ".join(sorted(ROBOTS))}')
    entry = ROBOTS[robot]
    cls = getattr(importlib.import_module(f'{entry.package}.twin'), entry.twin_class)
    return cls(**options)
