"""
Cross-entropy-method MPC (PDDM's ``cem.py`` baseline, GrBAL option; papers.md §7.3).

A diagonal Gaussian over whole sequences, mean m and std sd in R^{H x nu}, per control step::

    m[:-1] = m[1:]  (last entry repeated);  sd = init_std      warm start from the last step
    repeat iterations times:
        A = clip(m + sd * eps, -1, 1),  eps ~ N(0, I)^{N x H x nu}
        R = score(model(s_t, A))
        elites = the num_elites sequences of highest R
        m = alpha * m + (1 - alpha) * mean(elites);  sd = alpha * sd + (1 - alpha) * std(elites)
    execute m[0]

PDDM restarts from m = 0 every step and truncates the Gaussian to the action box; we shift
the mean between steps (PETS-style warm start) and clip samples instead, so the refit is
over what the model actually saw and m stays in [-1, 1]. PDDM: 3 iterations, 20 elites,
alpha = 0. ``last_info['std_per_iteration']`` lists the mean sampling std of each
iteration (it shrinks as the elites agree). Model evaluations: iterations * N * H * E.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dexmpc_ros.control.planners.base import (PlannerConfig, RewardFn, RolloutModel,
                                              SamplingPlanner, count_evaluations, planning_info)


@dataclass(frozen=True)
class CEMOptions:
    """
    What CEM adds to the shared sampling settings (PDDM defaults where it has them).

    The MPC nests these as its ``cem`` settings (the mpc node's ``cem.*`` parameters).

    Attributes:
        iterations: Gaussian refits per control step.
        num_elites: sequences of highest return the Gaussian is refit on (at most the
            number of samples).
        init_std: sampling std at the start of each control step (normalized actions).
        alpha: weight of the previous mean/std in each refit (0 = elites only).
        min_std: floor of the refit std, so the search never collapses entirely.
    """

    iterations: int = 3
    num_elites: int = 20
    init_std: float = 0.5
    alpha: float = 0.0
    min_std: float = 1e-3

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f'iterations must be >= 1, got {self.iterations}')
        if self.num_elites < 1:
            raise ValueError(f'num_elites must be >= 1, got {self.num_elites}')
        if not self.init_std > 0.0:
            raise ValueError(f'init_std must be > 0, got {self.init_std}')
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f'alpha must be in [0, 1), got {self.alpha}')
        if not 0.0 <= self.min_std <= self.init_std:
            raise ValueError(f'min_std must be in [0, init_std], got {self.min_std}')


@dataclass(frozen=True)
class CEMConfig(CEMOptions, PlannerConfig):
    """CEM settings: the shared ones (:class:`PlannerConfig`) and :class:`CEMOptions`."""

    def __post_init__(self) -> None:
        PlannerConfig.__post_init__(self)
        CEMOptions.__post_init__(self)
        if self.num_elites > self.num_samples:
            raise ValueError(f'num_elites must be in [1, num_samples={self.num_samples}], '
                             f'got {self.num_elites}')


class CEMPlanner(SamplingPlanner):
    """Iterative Gaussian refit on elites; executes the first entry of the final mean."""

    config: CEMConfig

    def __init__(self, action_dim: int, config: CEMConfig | None = None) -> None:
        super().__init__(action_dim, config or CEMConfig())

    def reset(self) -> None:
        """Restart the sequence mean at 0 (the middle of every joint range)."""
        super().reset()
        self.mean = torch.zeros(self.config.horizon, self.action_dim)

    def _plan(self, state: Tensor, model: RolloutModel, reward_fn: RewardFn
              ) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        mean = self.mean.to(state.dtype)
        mean = torch.cat([mean[1:], mean[-1:]], dim=0).to(state.device)
        std = torch.full_like(mean, cfg.init_std)
        evaluations, std_trace = 0, []
        for _ in range(cfg.iterations):
            std_trace.append(float(std.mean()))
            eps = torch.randn(self._sample_shape(), generator=self.generator, dtype=state.dtype)
            actions = torch.clamp(mean + std * eps.to(state.device), -1.0, 1.0)
            returns, states = self._evaluate(state, actions, model, reward_fn)
            evaluations += count_evaluations(states)
            elite_idx = torch.topk(returns, cfg.num_elites).indices
            elites = actions[elite_idx]
            mean = cfg.alpha * mean + (1.0 - cfg.alpha) * elites.mean(dim=0)
            elite_std = elites.std(dim=0, correction=0)
            std = torch.clamp(cfg.alpha * std + (1.0 - cfg.alpha) * elite_std, min=cfg.min_std)
        self.mean = mean
        # The elites' mean prediction stands for the prediction of their mean sequence; an
        # elite with a non-finite return (fewer finite samples than elites) is left out.
        shown = elite_idx[torch.isfinite(returns[elite_idx])]
        trajectory = states[:, shown].mean(dim=(0, 1))
        info = planning_info(returns, states, trajectory, evaluations)
        info['std_per_iteration'] = std_trace
        return mean[0].clone(), info
