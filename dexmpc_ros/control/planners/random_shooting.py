"""
Random-shooting MPC (MBMF, papers.md §1.2; PDDM's ``random_shooting.py`` baseline).

Per control step, from the current state s_t::

    A ~ Uniform(-1, 1)^{N x H x nu}         N sequences (num_samples), horizon H
    R_i = score(model(s_t, A_i))            mean over members - std_penalty * std
    execute A[argmax_i R_i, 0]; replan at the next step

Nothing is carried between control steps, so ``reset`` has no plan to forget. One model
call per step: N * H * E model evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dexmpc_ros.control.planners.base import (PlannerConfig, RewardFn, RolloutModel,
                                              SamplingPlanner, count_evaluations, planning_info)


@dataclass(frozen=True)
class RandomShootingOptions:
    """Random shooting adds nothing to the shared sampling settings (the MPC nests it)."""


@dataclass(frozen=True)
class RandomShootingConfig(RandomShootingOptions, PlannerConfig):
    """Random shooting needs only the shared settings (H, N, penalties, seed)."""


class RandomShootingPlanner(SamplingPlanner):
    """Uniform sequences, pick the best predicted return, execute its first action."""

    def __init__(self, action_dim: int, config: RandomShootingConfig | None = None) -> None:
        super().__init__(action_dim, config or RandomShootingConfig())

    def _plan(self, state: Tensor, model: RolloutModel, reward_fn: RewardFn
              ) -> tuple[Tensor, dict[str, Any]]:
        uniform = torch.rand(self._sample_shape(), generator=self.generator, dtype=state.dtype)
        actions = (2.0 * uniform - 1.0).to(state.device)
        returns, states = self._evaluate(state, actions, model, reward_fn)
        best = int(torch.argmax(returns))
        info = planning_info(returns, states, states[:, best].mean(dim=0),
                             count_evaluations(states))
        info['best_index'] = best
        return actions[best, 0], info
