"""
Shared contract of the sampling MPC planners (papers.md §0.1 item 2, §1.2, §7.2).

Every planner searches over N action sequences of horizon H in normalized action space
``[-1, 1]^nu``; the node maps actions to joint commands. Shapes (E = ensemble members)::

    RolloutModel.rollout(state (nx,), actions (N, H, nu)) -> states (E, N, H, nx)
        predicted s_1..s_H of every member for every sequence (s_0 = state is not included)
    RewardFn(states (E, N, H, nx), actions (N, H, nu), state0 (nx,))
        -> rewards (E, N, H), dones (E, N, H) bool

:func:`score` turns predictions into one return per sequence, as PDDM's ``calculate_costs``:
once a member's trajectory is done at step h, steps h..H-1 earn no reward and cost
``done_penalty`` each (a dropped ball stays dropped); the return of a sequence is the mean
over members minus ``std_penalty`` times their (population) std. PDDM ranks with
``std_penalty = 0`` when evaluating and 4 when taking exploratory actions. A sequence whose
return is not finite (the model diverged) gets ``-inf`` and ranks last.

A planner is a frozen config (validated on construction) and a :class:`SamplingPlanner`
subclass: ``plan(state, model, reward_fn) -> action (nu,)``, ``reset()`` at episode start,
an explicit ``torch.Generator`` seeded from the config (``reset`` does not reseed it, so
episodes see fresh noise), and ``last_info`` describing the last call:

    best_return, mean_return   predicted returns over the (last) sampled batch
    model_evaluations          N * H * E per model call, summed over the call's iterations
    plan_time_ms               wall time of ``plan``
    trajectory                 (H, nx) numpy, member-mean prediction of the chosen plan
    num_members                E

plus one key per algorithm (``best_index``, ``std_per_iteration``, ``effective_samples``).

Planners never call ``torch.set_num_threads``: the process owner decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

RewardFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


@runtime_checkable
class RolloutModel(Protocol):
    """A (possibly ensemble) dynamics model that predicts H steps for N sequences at once."""

    ensemble_size: int

    def rollout(self, state: Tensor, actions: Tensor) -> Tensor:
        """Predicted s_1..s_H (E, N, H, nx) from ``state`` (nx,) and ``actions`` (N, H, nu)."""
        ...


def score(states: Tensor, actions: Tensor, state0: Tensor, reward_fn: RewardFn, *,
          std_penalty: float = 0.0, done_penalty: float = 500.0) -> Tensor:
    """
    Return of every action sequence, PDDM-style (module docstring).

    Args:
        states: (E, N, H, nx) predicted states.
        actions: (N, H, nu) the sequences that produced them.
        state0: (nx,) the state the prediction started from.
        reward_fn: per-step rewards and done flags, see :data:`RewardFn`.
        std_penalty: weight of the std over members (PDDM: 0 eval, 4 exploration).
        done_penalty: cost of every step from the first done step on (PDDM: 500).

    Returns:
        (N,) returns; ``-inf`` where the return is not finite.
    """
    rewards, dones = reward_fn(states, actions, state0)
    expected = tuple(states.shape[:3])
    if tuple(rewards.shape) != expected or tuple(dones.shape) != expected:
        raise ValueError(f'reward_fn returned rewards {tuple(rewards.shape)} and dones '
                         f'{tuple(dones.shape)}, expected (E, N, H) = {expected}')
    # Done is absorbing: the first done step and every later one are penalized.
    done_so_far = torch.cumsum(dones.to(torch.int32), dim=-1) > 0
    per_step = torch.where(done_so_far, torch.full_like(rewards, -done_penalty), rewards)
    member_returns = per_step.sum(dim=-1)
    returns = member_returns.mean(dim=0)
    if std_penalty:
        returns = returns - std_penalty * member_returns.std(dim=0, correction=0)
    return torch.where(torch.isfinite(returns), returns, torch.full_like(returns, -torch.inf))


@dataclass(frozen=True)
class PlannerConfig:
    """
    Settings every sampling planner shares (PDDM defaults, papers.md §7.3).

    Attributes:
        horizon: H, steps predicted per sequence.
        num_samples: N, sequences sampled per model call.
        std_penalty: weight of the std of returns over ensemble members (0 eval, 4 explore).
        done_penalty: cost per step once a predicted trajectory is done.
        seed: seed of the planner's torch.Generator; None draws fresh entropy.
    """

    horizon: int = 7
    num_samples: int = 700
    std_penalty: float = 0.0
    done_penalty: float = 500.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f'horizon (H) must be >= 1, got {self.horizon}')
        if self.num_samples < 1:
            raise ValueError(f'num_samples (N) must be >= 1, got {self.num_samples}')
        if not self.std_penalty >= 0.0:
            raise ValueError(f'std_penalty must be >= 0, got {self.std_penalty}')
        if not self.done_penalty >= 0.0:
            raise ValueError(f'done_penalty must be >= 0, got {self.done_penalty}')


class SamplingPlanner:
    """Base class: generator, timing and ``last_info``; subclasses implement :meth:`_plan`."""

    def __init__(self, action_dim: int, config: PlannerConfig) -> None:
        if action_dim < 1:
            raise ValueError(f'action_dim (nu) must be >= 1, got {action_dim}')
        self.action_dim = action_dim
        self.config = config
        self.generator = torch.Generator()
        if config.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(config.seed)
        self.last_info: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the warm start of the previous episode (the generator keeps running)."""
        self.last_info = {}

    def plan(self, state: Tensor, model: RolloutModel, reward_fn: RewardFn) -> np.ndarray:
        """
        Plan from ``state`` (nx,) and return the action to execute now, (nu,) in [-1, 1].

        Raises:
            ValueError: the model's output has the wrong shape, or no sequence has a finite
                predicted return.
        """
        start = time.perf_counter()
        state = torch.as_tensor(state)
        if not state.is_floating_point():
            state = state.to(torch.get_default_dtype())
        with torch.no_grad():
            action, info = self._plan(state, model, reward_fn)
        info['plan_time_ms'] = 1e3 * (time.perf_counter() - start)
        self.last_info = info
        return action.detach().cpu().numpy().astype(np.float64)

    def _plan(self, state: Tensor, model: RolloutModel, reward_fn: RewardFn
              ) -> tuple[Tensor, dict[str, Any]]:
        raise NotImplementedError

    def _sample_shape(self) -> tuple[int, int, int]:
        return self.config.num_samples, self.config.horizon, self.action_dim

    def _evaluate(self, state: Tensor, actions: Tensor, model: RolloutModel,
                  reward_fn: RewardFn) -> tuple[Tensor, Tensor]:
        """Roll out and score ``actions`` (N, H, nu): returns (N,) and states (E, N, H, nx)."""
        states = model.rollout(state, actions)
        n, h, _ = actions.shape
        expected = (model.ensemble_size, n, h, state.shape[-1])
        if tuple(states.shape) != expected:
            raise ValueError(f'model.rollout returned {tuple(states.shape)}, expected '
                             f'(E, N, H, nx) = {expected}')
        returns = score(states, actions, state, reward_fn,
                        std_penalty=self.config.std_penalty,
                        done_penalty=self.config.done_penalty)
        if not torch.isfinite(returns).any():
            raise ValueError('no sampled sequence has a finite predicted return')
        return returns, states


def planning_info(returns: Tensor, states: Tensor, trajectory: Tensor,
                  model_evaluations: int) -> dict[str, Any]:
    """
    The ``last_info`` entries every planner reports (module docstring).

    Args:
        returns: (N,) returns of the last sampled batch.
        states: (E, N, H, nx) its predictions.
        trajectory: (H, nx) the chosen plan's member-mean prediction.
        model_evaluations: total N * H * E over the call.
    """
    finite = returns[torch.isfinite(returns)]
    return {
        'best_return': float(returns.max()),
        'mean_return': float(finite.mean()),
        'model_evaluations': int(model_evaluations),
        'trajectory': trajectory.detach().cpu().numpy().astype(np.float64),
        'num_members': int(states.shape[0]),
    }


def count_evaluations(states: Tensor) -> int:
    """N * H * E of one model call, from its predictions (E, N, H, nx)."""
    e, n, h, _ = states.shape
    return e * n * h
