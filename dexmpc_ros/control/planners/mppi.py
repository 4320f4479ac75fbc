"""
PDDM's filtered, reward-weighted MPPI (papers.md §7.2, ``pddm/policies/mppi.py``).

A mean sequence mu in R^{H x nu} is kept across control steps. Per control step::

    past = mu[0];  mu[:-1] = mu[1:]                 shift, the last entry repeats
    u ~ N(0, sigma^2 I)^{N x H x nu}                 sample_velocities: last 10% use 0.3 sigma
    n_0 = beta (mu_0 + u_0) + (1 - beta) past        filtering, beta in (0, 1]
    n_h = beta (mu_h + u_h) + (1 - beta) n_{h-1}
    A = clip(n, -1, 1)
    R_i = score(model(s_t, A_i))                     mean over members - std_penalty * std
    w_i = exp(kappa (R_i - max_j R_j)) / (sum_j exp(kappa (R_j - max_j R_j)) + 1e-10)
    mu = sum_i w_i A_i;  execute mu[0]               one refinement per control step

Symbols: H ``horizon``, N ``num_samples``, kappa ``kappa`` (reward-weighting temperature:
large = nearly argmax, small = nearly the plain average), sigma ``sigma`` (noise std in
normalized action units), beta ``beta`` (1 = no filtering; smaller = smoother sequences).
Defaults are PDDM's baoding config (H 7, N 700, kappa 20, sigma 0.9, beta 0.6); its
dclaw_turn config uses kappa 0.5, beta 0.7. The samples are convex combinations of clipped
actions, so mu stays in [-1, 1]. Model evaluations: N * H * E per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dexmpc_ros.control.planners.base import (PlannerConfig, RewardFn, RolloutModel,
                                              SamplingPlanner, count_evaluations, planning_info)

WEIGHT_EPS = 1e-10
LOW_NOISE_FRACTION = 0.1   # share of samples drawn with the small noise (sample_velocities)
LOW_NOISE_SCALE = 0.3      # their std relative to sigma


def mppi_weights(returns: Tensor, kappa: float) -> Tensor:
    """
    PDDM's reward weights ``exp(kappa (R - max R)) / (sum + 1e-10)``.

    Subtracting max R keeps the exponent <= 0, so huge returns never overflow; the best
    sequence has unnormalized weight 1, so the sum is >= 1 and the 1e-10 only guards the
    degenerate case. Sequences with return ``-inf`` get weight 0.

    Args:
        returns: (N,) predicted returns, at least one finite.
        kappa: temperature, > 0.

    Returns:
        (N,) nonnegative weights summing to 1 (up to the 1e-10).
    """
    unnormalized = torch.exp(kappa * (returns - returns.max()))
    return unnormalized / (unnormalized.sum() + WEIGHT_EPS)


def filter_sequences(mean: Tensor, noise: Tensor, past: Tensor, beta: float) -> Tensor:
    """
    PDDM's smoothing of noisy sequences, clipped to [-1, 1].

    Args:
        mean: (H, nu) mean sequence mu (already shifted).
        noise: (N, H, nu) noise u.
        past: (nu,) the action executed at the previous step (n_{-1}).
        beta: filter coefficient in (0, 1]; 1 returns clip(mu + u).

    Returns:
        (N, H, nu) candidate sequences A.
    """
    target = beta * (mean + noise)
    filtered = torch.empty_like(target)
    previous = past.expand_as(target[:, 0])
    for h in range(target.shape[1]):   # the recursion runs along the horizon, not samples
        previous = target[:, h] + (1.0 - beta) * previous
        filtered[:, h] = previous
    return torch.clamp(filtered, -1.0, 1.0)


def _weighted_mean_prediction(weights: Tensor, states: Tensor) -> Tensor:
    """
    ``sum_i w_i states[:, i]`` averaged over members, (H, nx), over samples with w_i > 0.

    One matmul over all samples first (no copy of the (E, N, H, nx) predictions): a
    zero weight times a finite state adds exactly 0. Only if that sum is not finite,
    because a sample's prediction diverged, are the weighted samples gathered.
    """
    e, n, h, nx = states.shape
    flat = states.reshape(e, n, h * nx)
    trajectory = torch.matmul(weights.to(states.dtype), flat).sum(0)
    if not torch.isfinite(trajectory).all():
        used = weights > 0
        trajectory = torch.einsum('n,enk->k', weights[used], flat[:, used])
    return (trajectory / e).reshape(h, nx)


@dataclass(frozen=True)
class MPPIOptions:
    """
    What filtered MPPI adds to the shared sampling settings (PDDM baoding defaults).

    The MPC nests these as its ``mppi`` settings (the mpc node's ``mppi.*`` parameters).

    Attributes:
        kappa: reward-weighting temperature, > 0.
        sigma: std of the sampling noise in normalized action units, > 0.
        beta: filter coefficient in (0, 1]; 1 disables filtering.
        sample_velocities: draw the last 10% of the samples with std 0.3 sigma (PDDM ties
            this to ``rand_policy_sample_velocities``, on in its hand configs).
    """

    kappa: float = 20.0
    sigma: float = 0.9
    beta: float = 0.6
    sample_velocities: bool = False

    def __post_init__(self) -> None:
        if not self.kappa > 0.0:
            raise ValueError(f'kappa must be > 0, got {self.kappa}')
        if not self.sigma > 0.0:
            raise ValueError(f'sigma must be > 0, got {self.sigma}')
        if not 0.0 < self.beta <= 1.0:
            raise ValueError(f'beta must be in (0, 1], got {self.beta}')


@dataclass(frozen=True)
class MPPIConfig(MPPIOptions, PlannerConfig):
    """Filtered MPPI settings: the shared :class:`PlannerConfig` and :class:`MPPIOptions`."""

    def __post_init__(self) -> None:
        PlannerConfig.__post_init__(self)
        MPPIOptions.__post_init__(self)


class MPPIPlanner(SamplingPlanner):
    """PDDM's controller: filtered samples around a shifted mean, reward-weighted refit."""

    config: MPPIConfig

    def __init__(self, action_dim: int, config: MPPIConfig | None = None) -> None:
        super().__init__(action_dim, config or MPPIConfig())

    def reset(self) -> None:
        """Restart the mean sequence mu at 0 (PDDM starts every rollout there)."""
        super().reset()
        self.mean = torch.zeros(self.config.horizon, self.action_dim)

    def _noise(self, dtype: torch.dtype) -> Tensor:
        cfg = self.config
        scale = torch.full((cfg.num_samples, 1, 1), cfg.sigma, dtype=dtype)
        if cfg.sample_velocities:
            low = int(LOW_NOISE_FRACTION * cfg.num_samples)
            if low:
                scale[-low:] = LOW_NOISE_SCALE * cfg.sigma
        eps = torch.randn(self._sample_shape(), generator=self.generator, dtype=dtype)
        return eps * scale

    def _plan(self, state: Tensor, model: RolloutModel, reward_fn: RewardFn
              ) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        mean = self.mean.to(device=state.device, dtype=state.dtype)
        past = mean[0].clone()
        mean = torch.cat([mean[1:], mean[-1:]], dim=0)
        noise = self._noise(state.dtype).to(state.device)
        actions = filter_sequences(mean, noise, past, cfg.beta)
        returns, states = self._evaluate(state, actions, model, reward_fn)
        weights = mppi_weights(returns, cfg.kappa)
        self.mean = torch.einsum('n,nhu->hu', weights, actions)
        # Same weights over the predictions: exact for models affine in the actions. Only
        # weighted samples count, so a diverged (non-finite) prediction cannot leak in.
        trajectory = _weighted_mean_prediction(weights, states)
        info = planning_info(returns, states, trajectory, count_evaluations(states))
        info['effective_samples'] = float(1.0 / (weights ** 2).sum())
        return self.mean[0].clone(), info
