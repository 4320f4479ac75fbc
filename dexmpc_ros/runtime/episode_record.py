"""
One finished episode, as the reports and the benches read it.

Two sources fill :class:`EpisodeRecord`: a ROS run's bag (runtime/run_bag.py, for the run
report) and the in-process loop (runtime/sim_loop.py, for presets and the benches). The
fields both know come first; the fields of one source keep their defaults in the other's
records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class EpisodeRecord:
    """
    One finished episode.

    Attributes:
        episode: the episode number (the twin's in a ROS run; from 0 in the loop).
        steps: env steps in it (rewards received in a ROS run).
        env_steps: env steps up to its end, this episode included, counted over the whole
            bag or loop (0: a bag without a ``reward`` topic).
        episode_return: sum of its rewards (NaN without a ``reward`` topic).
        success: the task's verdict at its last step (None without a success rule).
        evaluation: planned without exploration noise on the actions: the mpc node's
            ``action_noise`` off (its ``eval_every`` divides the episode number), or the
            loop's ``LoopConfig.eval_every``.
        start_ns: ROS run: bag time of its ``episode`` message.
        end_ns: ROS run: bag time of the next one.
        final_error: ROS run: ``|task_state[rule.entry]|`` at its last step (None without
            a rule).
        swap: ROS run: checkpoint swaps before it started (0: no model yet); indexes the
            run's swap list.
        checkpoint: ROS run: the checkpoint in force when it started (None: no model yet).
        partial: ROS run: the recording started during it (left out of statistics).
        iteration: loop: the training round whose model planned it; -1 = exploration.
        plan_ms: loop: mean planning time per step [ms] (NaN while exploring).
        action_change: loop: mean |a_t - a_{t-1}| over its steps and joints (PDDM's
            filtering, beta < 1, lowers it); NaN with fewer than two steps.
    """

    episode: int
    steps: int
    env_steps: int
    episode_return: float
    success: bool | None
    evaluation: bool = False
    start_ns: int = 0
    end_ns: int = 0
    final_error: float | None = None
    swap: int = 0
    checkpoint: str | None = None
    partial: bool = False
    iteration: int = -1
    plan_ms: float = math.nan
    action_change: float = math.nan

    @property
    def planned(self) -> bool:
        """True when a learned model planned it (not exploration)."""
        return self.checkpoint is not None or self.iteration >= 0
