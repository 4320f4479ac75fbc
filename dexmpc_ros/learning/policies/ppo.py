"""
Compact PPO for fine-tuning a distilled :class:`MLPPolicy` (MBMF's MF stage, papers.md §1.2).

MBMF fine-tunes the DAgger-distilled policy with TRPO (rllab); this is the clipped-surrogate
variant (Schulman et al. 2017) with the same starting point: the Gaussian policy's mean
network *is* the distilled network (its weights, input normalizer and ``log_std``, MBMF
cheetah init std 0.5), so fine-tuning starts from the MPC's behaviour, not from scratch.

Per batch of ``steps_per_batch`` env steps (episodes continue across batches)::

    a_t ~ N(μ(o_t), σ), executed clipped to [-1, 1]; log π(a_t|o_t) of the unclipped sample
    δ_t = r_t + γ·V(o'_t)·(1 - terminal_t) - V(o_t)
    Â_t = δ_t + γλ·(1 - end_t)·Â_{t+1}          (GAE; end = terminal, time limit or batch end)
    R_t = Â_t + V(o_t)                           (value targets)
    for `epochs` passes over shuffled minibatches:
        ratio = π(a|o) / π_old(a|o);  Â normalized per minibatch
        L = -min(ratio·Â, clip(ratio, 1±ε)·Â) + c_v·(V(o)/scale - R/scale)² - c_e·H[π]
        Adam step on policy and value parameters (gradient norm clipped)

A cut by ``episode_steps`` or by the batch end is a truncation: V(o') of the state reached
is bootstrapped (only an env ``done`` is terminal, see ``GymEnv``). The value net (2×64
tanh by default) reads the policy's normalized input; it predicts ``V/scale`` where
``scale`` is the std of the first batch's returns (fixed afterwards), so its targets are of
order 1 whatever the reward's magnitude. ``value_warmup_batches`` first fits only the value
net, so a distilled policy is not pushed around by the advantages of an untrained critic.
Optional early stop of a batch's epochs when the approximate KL exceeds ``1.5·target_kl``.

CPU, float32; ``threads`` torch threads during :meth:`PPO.train` (default 1). Randomness:
``seed`` seeds the value net's initialization (inside ``fork_rng``), a private torch
generator for action noise and a numpy generator for minibatch order; episode seeds are
``seed * 100000 + index``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dexmpc_ros.learning.policies.mlp import MLPPolicy
from dexmpc_ros.learning.torch_threads import torch_threads


@dataclass(frozen=True)
class PPOConfig:
    """
    PPO settings (common MuJoCo defaults; γ, λ, ε as in the brief of issue 4).

    Attributes:
        steps_per_batch: env steps collected per update.
        epochs: passes over a batch.
        minibatch_size: samples per gradient step.
        gamma: discount γ.
        lam: GAE λ.
        clip: surrogate clip ε.
        lr: Adam learning rate (policy and value).
        value_hidden: hidden widths of the value net (tanh).
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus.
        max_grad_norm: gradient norm clip (0: off).
        target_kl: stop a batch's epochs once approx. KL > 1.5·target_kl (0: off).
        episode_steps: time limit per episode (a truncation, bootstrapped).
        value_warmup_batches: first batches that train only the value net.
        seed: seed of the value init, the action noise, minibatches and episode seeds.
        threads: torch threads during training (0: leave torch's setting).
    """

    steps_per_batch: int = 2048
    epochs: int = 10
    minibatch_size: int = 64
    gamma: float = 0.99
    lam: float = 0.95
    clip: float = 0.2
    lr: float = 3e-4
    value_hidden: tuple[int, ...] = (64, 64)
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    max_grad_norm: float = 0.5
    target_kl: float = 0.0
    episode_steps: int = 1000
    value_warmup_batches: int = 0
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, 'value_hidden', tuple(self.value_hidden))
        for name, low in (('steps_per_batch', 1), ('epochs', 1), ('minibatch_size', 1),
                          ('episode_steps', 1), ('value_warmup_batches', 0), ('seed', 0),
                          ('threads', 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f'{name} must be an integer >= {low}, got {value!r}')
        if not all(isinstance(n, int) and n >= 1 for n in self.value_hidden):
            raise ValueError(f'value_hidden widths must be integers >= 1, '
                             f'got {self.value_hidden!r}')
        for name in ('gamma', 'lam'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {getattr(self, name)!r}')
        if not 0.0 < self.clip < 1.0 or not self.lr > 0.0:
            raise ValueError(f'need 0 < clip < 1 and lr > 0, got {self.clip!r}, {self.lr!r}')
        for name in ('value_coef', 'entropy_coef', 'max_grad_norm', 'target_kl'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f'{name} must be finite and >= 0, got {value!r}')


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, ends: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """
    Generalized advantage estimation over one batch of consecutive steps.

    Args:
        rewards: (T,) r_t.
        values: (T,) V(o_t).
        next_values: (T,) V(o'_t) of the state reached, 0 where that state is terminal.
        ends: (T,) True where the trajectory stops after step t (terminal, truncated, or
            the batch's last step): no advantage flows back across it.
        gamma: discount.
        lam: GAE λ.

    Returns:
        (advantages (T,), value targets (T,) = advantages + values), float64.
    """
    rewards, values, next_values = (np.asarray(x, dtype=np.float64)
                                    for x in (rewards, values, next_values))
    ends = np.asarray(ends, dtype=bool)
    deltas = rewards + gamma * next_values - values
    advantages = np.zeros_like(deltas)
    running = 0.0
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + (0.0 if ends[t] else gamma * lam * running)
        advantages[t] = running
    return advantages, advantages + values


@dataclass
class PPOBatch:
    """
    Figures of one collect-and-update round.

    Attributes:
        index: batch index.
        env_steps: cumulative env steps after this batch.
        episode_returns: returns of the episodes that ended in this batch (sampled
            actions; a time-limit cut counts as an end).
        policy_loss, value_loss, entropy, approx_kl, clip_fraction: means over the
            minibatches of the last epoch run.
        std: mean action std after the update.
        policy_updated: False during the value warm-up.
    """

    index: int
    env_steps: int
    episode_returns: list[float]
    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    std: float
    policy_updated: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_return(self) -> float:
        """Mean of :attr:`episode_returns` (nan if no episode ended)."""
        return float(np.mean(self.episode_returns)) if self.episode_returns else float('nan')


class PPO:
    """
    PPO on a :class:`StepEnv` starting from ``policy`` (module docstring).

    Args:
        policy: the Gaussian policy, trained in place (its ``obs_norm`` stays fixed).
        config: PPO settings.
        observe: env state -> policy input; None: the state itself.
    """

    def __init__(self, policy: MLPPolicy, config: PPOConfig | None = None,
                 observe: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.policy = policy
        self.config = config or PPOConfig()
        self.observe = observe or (lambda s: s)
        cfg = self.config
        sizes = (policy.obs_dim, *cfg.value_hidden, 1)
        layers: list[nn.Module] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(nn.Linear(n_in, n_out))
                if i < len(sizes) - 2:
                    layers.append(nn.Tanh())
        self.value_net = nn.Sequential(*layers)
        self.value_scale: float | None = None
        self.optimizer = torch.optim.Adam(
            [*policy.parameters(), *self.value_net.parameters()], lr=cfg.lr, eps=1e-5)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self._rng = np.random.default_rng([cfg.seed, 2])
        self.env_steps = 0
        self.batches: list[PPOBatch] = []
        self._state: np.ndarray | None = None
        self._episode = 0
        self._episode_steps = 0
        self._episode_return = 0.0

    def value(self, obs: Tensor) -> Tensor:
        """V(obs) (...,) in reward units."""
        scale = 1.0 if self.value_scale is None else self.value_scale
        return self.value_net(self.policy.obs_norm.normalize(obs))[..., 0] * scale

    # ---------------------------------------------------------------- collection

    def _reset(self, env: Any) -> None:
        self._state = env.reset(self.config.seed * 100000 + self._episode)
        self._episode += 1
        self._episode_steps, self._episode_return = 0, 0.0

    def collect(self, env: Any, steps: int) -> tuple[dict[str, np.ndarray], list[float]]:
        """
        ``steps`` env steps with sampled actions; the episode carries over to the next call.

        Returns:
            (batch arrays ``obs``, ``next_obs``, ``actions``, ``log_probs``, ``rewards``,
            ``terminals``, ``ends``; the returns of the episodes that ended).
        """
        cfg, policy = self.config, self.policy
        if self._state is None:
            self._reset(env)
        keys = ('obs', 'next_obs', 'actions', 'log_probs', 'rewards', 'terminals', 'ends')
        out: dict[str, list] = {k: [] for k in keys}
        finished: list[float] = []
        std = policy.log_std.detach().exp()
        for t in range(steps):
            obs = np.asarray(self.observe(self._state), dtype=np.float32)
            with torch.no_grad():
                mean = policy(torch.from_numpy(obs))
                action = mean + std * torch.randn(mean.shape, generator=self.generator)
                log_prob = torch.distributions.Normal(mean, std).log_prob(action).sum()
            action_np = action.numpy().astype(np.float64)
            nxt, reward, terminal = env.step(np.clip(action_np, -1.0, 1.0))
            self._episode_steps += 1
            self._episode_return += reward
            truncated = self._episode_steps >= cfg.episode_steps
            for key, value in (('obs', obs), ('next_obs', self.observe(nxt)),
                               ('actions', action_np), ('log_probs', float(log_prob)),
                               ('rewards', reward), ('terminals', bool(terminal)),
                               ('ends', bool(terminal or truncated or t == steps - 1))):
                out[key].append(value)
            if terminal or truncated:
                finished.append(self._episode_return)
                self._reset(env)
            else:
                self._state = nxt
        self.env_steps += steps
        batch = {k: np.asarray(v, dtype=np.float32 if k in ('obs', 'next_obs', 'actions')
                               else None) for k, v in out.items()}
        return batch, finished

    # -------------------------------------------------------------------- update

    def update(self, batch: dict[str, np.ndarray], update_policy: bool = True
               ) -> dict[str, float]:
        """One PPO update on a collected batch; returns the last epoch's mean figures."""
        cfg = self.config
        obs = torch.from_numpy(batch['obs'])
        actions = torch.from_numpy(batch['actions'])
        old_log_probs = torch.from_numpy(batch['log_probs']).float()
        with torch.no_grad():
            values = self.value(obs).numpy()
            next_values = self.value(torch.from_numpy(batch['next_obs'])).numpy() \
                * (1.0 - batch['terminals'])
        advantages, returns = gae(batch['rewards'], values, next_values, batch['ends'],
                                  cfg.gamma, cfg.lam)
        if self.value_scale is None:
            # Fixed once: the critic's early predictions (~0 in any scale) stay consistent.
            self.value_scale = float(max(np.std(returns), 1e-6))
        advantages_t = torch.from_numpy(advantages).float()
        targets = torch.from_numpy(returns / self.value_scale).float()
        params = [*self.policy.parameters(), *self.value_net.parameters()]
        size = obs.shape[0]
        stats: dict[str, float] = {}
        self.policy.train()
        for _ in range(cfg.epochs):
            order = torch.from_numpy(self._rng.permutation(size))
            sums = dict.fromkeys(('policy_loss', 'value_loss', 'entropy', 'approx_kl',
                                  'clip_fraction'), 0.0)
            for start in range(0, size, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size]
                value_pred = self.value_net(self.policy.obs_norm.normalize(obs[idx]))[:, 0]
                value_loss = (value_pred - targets[idx]).square().mean()
                loss = cfg.value_coef * value_loss
                dist = self.policy.distribution(obs[idx])
                log_probs = dist.log_prob(actions[idx]).sum(dim=-1)
                log_ratio = log_probs - old_log_probs[idx]
                ratio = log_ratio.exp()
                adv = advantages_t[idx]
                if adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                surrogate = torch.min(ratio * adv,
                                      ratio.clamp(1.0 - cfg.clip, 1.0 + cfg.clip) * adv)
                policy_loss = -surrogate.mean()
                entropy = dist.entropy().sum(dim=-1).mean()
                if update_policy:
                    loss = loss + policy_loss - cfg.entropy_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                n = idx.shape[0]
                with torch.no_grad():
                    # The (r - 1) - log r estimator of KL(old || new): unbiased, >= 0.
                    sums['approx_kl'] += ((ratio - 1.0) - log_ratio).mean().item() * n
                    sums['clip_fraction'] += \
                        ((ratio - 1.0).abs() > cfg.clip).float().mean().item() * n
                sums['policy_loss'] += policy_loss.item() * n
                sums['value_loss'] += value_loss.item() * n
                sums['entropy'] += entropy.item() * n
            stats = {k: v / size for k, v in sums.items()}
            if update_policy and cfg.target_kl > 0 and stats['approx_kl'] > 1.5 * cfg.target_kl:
                break
        self.policy.eval()
        return stats

    def train(self, env: Any, total_steps: int,
              on_batch: Callable[[PPOBatch], Any] | None = None) -> list[PPOBatch]:
        """
        Collect and update until ``total_steps`` more env steps have been taken.

        The last batch is shortened to fit the budget. The episode in progress carries over
        to the next call, which must therefore pass the same env. Returns this call's
        batches (also appended to :attr:`batches`).
        """
        cfg = self.config
        done, new = 0, []
        with torch_threads(cfg.threads):
            while done < total_steps:
                steps = min(cfg.steps_per_batch, total_steps - done)
                batch, finished = self.collect(env, steps)
                done += steps
                update_policy = len(self.batches) >= cfg.value_warmup_batches
                stats = self.update(batch, update_policy)
                record = PPOBatch(len(self.batches), self.env_steps, finished,
                                  std=float(self.policy.log_std.detach().exp().mean()),
                                  policy_updated=update_policy, **stats)
                self.batches.append(record)
                new.append(record)
                if on_batch is not None:
                    on_batch(record)
        return new
