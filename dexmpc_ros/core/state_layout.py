"""
The state vector a learned dynamics model sees: named columns built from an observation.

A model, its checkpoint manifest, its planner rewards and the MPC node must agree on what
column ``j`` of a state means. :class:`StateLayout` is that agreement: an ordered tuple of
names, one per column, built from the robot spec and the task's ``task_state`` names:

    pos/<joint>     joint position [rad or m], for each joint in ``joint_states`` order
    vel/<joint>     joint velocity [rad/s or m/s]
    task/<name>     an entry of ``task_state`` (valve angle, ball positions, body pose, ...)

Unbounded joint angles (continuous joints such as the roach's leg cranks) are left out of
``pos/`` by default: their value grows without bound, which a normalized MLP input cannot
use; their velocities stay. The manifest stores the names, so loading a model checks that
the layout it was trained with is the one in use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.types import Observation

POS, VEL, TASK = 'pos/', 'vel/', 'task/'


@dataclass(frozen=True)
class StateLayout:
    """
    Ordered, named columns of a model state.

    Attributes:
        names: one name per column (``pos/<joint>``, ``vel/<joint>``, ``task/<name>``).
        index: name -> column.
    """

    names: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f'state layout has duplicate names: {self.names}')
        bad = [n for n in self.names if not n.startswith((POS, VEL, TASK))]
        if bad:
            raise ValueError(f'state layout names must start with pos/, vel/ or task/: {bad}')
        object.__setattr__(self, 'index', {n: i for i, n in enumerate(self.names)})

    @classmethod
    def for_robot(cls, spec: RobotSpec, task_names: Sequence[str] = (),
                  unbounded_positions: bool = False) -> StateLayout:
        """
        Positions and velocities of every joint, then the task entries.

        Args:
            spec: the robot.
            task_names: ``task_state`` names, in message order.
            unbounded_positions: keep positions of joints without finite limits.
        """
        positions = [POS + j.name for j in spec.joints
                     if unbounded_positions or math.isfinite(j.lower + j.upper)]
        velocities = [VEL + j.name for j in spec.joints]
        return cls(tuple(positions + velocities + [TASK + n for n in task_names]))

    @property
    def dim(self) -> int:
        """Number of columns."""
        return len(self.names)

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """Column indices (k,) of ``names``; KeyError naming the missing ones."""
        missing = [n for n in names if n not in self.index]
        if missing:
            raise KeyError(f'state layout lacks {missing}')
        return np.array([self.index[n] for n in names], dtype=np.int64)

    def vector(self, obs: Observation, joint_names: Sequence[str]) -> np.ndarray:
        """
        Build the state (dim,) float64 from an observation.

        Args:
            obs: the observation (positions/velocities in ``joint_names`` order).
            joint_names: the robot's joint names (``RobotSpec.joint_names``).

        Raises:
            KeyError: the observation lacks a task entry the layout needs.
        """
        values = {}
        for i, name in enumerate(joint_names):
            values[POS + name] = obs.position[i]
            values[VEL + name] = obs.velocity[i]
        for name, value in zip(obs.task_names, obs.task):
            values[TASK + name] = value
        missing = [n for n in self.names if n not in values]
        if missing:
            raise KeyError(f'observation lacks {missing}')
        return np.array([values[n] for n in self.names], dtype=np.float64)
