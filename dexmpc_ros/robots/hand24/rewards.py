"""
Planner rewards of the hand's tasks, on predicted states (see ``control/task_rewards.py``).

``valve``: PDDM's valve reward of the predicted angle against the constant target.
``baoding``: the targets move: predicted state h (h = 1..H steps ahead) is scored against
the targets the twin will show h steps after ``state0``, on the task's ellipse from the
phase of the targets in ``state0`` (the targets a model predicts are not used), and a
predicted ball below the twin's drop height is done, so the planner's per-step done
penalty applies from there on. Its options are the :class:`BaodingTask` fields the twin was
given, and optionally ``drop_z``; the defaults are the twin's.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import cache

import numpy as np

from dexmpc_ros.core.state_layout import POS, TASK, StateLayout
from dexmpc_ros.core.types import NumpyReward
from dexmpc_ros.robots.hand24.tasks import (BaodingTask, baoding_dropped, baoding_target_phase,
                                            baoding_targets, make_task, reward_valve,
                                            valve_angle_error)


def valve(layout: StateLayout) -> NumpyReward:
    """PDDM valve reward of the predicted valve angle against the (constant) target."""
    angle, target = layout.columns([TASK + 'valve_angle', TASK + 'target_angle'])

    def reward(states: np.ndarray, actions: np.ndarray, state0: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        error = valve_angle_error(states[..., angle], state0[target])
        return reward_valve(error), np.zeros(error.shape, dtype=bool)

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
    from dexmpc_ros.robots.hand24.twin import HandTwin

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
