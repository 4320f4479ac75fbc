"""
PPO (learning/policies/ppo.py): GAE against hand-computed values, learning on 1-D point reaching.

Point reaching: x' = clip(x + 0.2·clip(a), ±2), reward -|x|, 20 steps from x0 ~ U(-1, 1).
A fresh policy (mean ≈ 0) scores about -11 on the evaluation starts, the bang-bang optimum
-0.68; PPO has to get most of the way within a small seeded budget.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexmpc_ros.learning.policies.dagger import rollout
from dexmpc_ros.learning.policies.mlp import MLPPolicy, PolicyConfig
from dexmpc_ros.learning.policies.ppo import PPO, PPOConfig, gae

STEPS = 20
EVAL_SEEDS = range(900, 930)


class Point:
    """1-D point that should reach the origin."""

    action_dim = 1

    def reset(self, seed):
        self.x = np.random.default_rng(seed).uniform(-1.0, 1.0)
        return np.array([self.x])

    def step(self, action):
        self.x = float(np.clip(self.x + 0.2 * np.clip(action[0], -1.0, 1.0), -2.0, 2.0))
        return np.array([self.x]), -abs(self.x), False

    def explore(self, rng):
        return rng.uniform(-1.0, 1.0, 1)

    def success(self):
        return False


def mean_return(act):
    env = Point()
    return float(np.mean([rollout(env, act, STEPS, seed)[1] for seed in EVAL_SEEDS]))


def test_gae_matches_hand_computation():
    # Steps 0-1 end in a terminal state; steps 2-3 are cut by a time limit (bootstrap 5.0).
    rewards = [1.0, 2.0, 3.0, 4.0]
    values = [0.5, 1.0, 1.5, 2.0]
    next_values = [1.0, 0.0, 2.0, 5.0]
    ends = [False, True, False, True]
    # δ = [1 + .9·1 - .5, 2 - 1, 3 + .9·2 - 1.5, 4 + .9·5 - 2] = [1.4, 1.0, 3.3, 6.5]
    advantages, returns = gae(rewards, values, next_values, ends, gamma=0.9, lam=0.8)
    np.testing.assert_allclose(advantages, [1.4 + 0.72 * 1.0, 1.0, 3.3 + 0.72 * 6.5, 6.5])
    np.testing.assert_allclose(returns, [2.62, 2.0, 9.48, 8.5])
    # λ = 1: Monte Carlo returns with the bootstrap at the cut, independent of V.
    _, returns = gae(rewards, values, next_values, ends, gamma=0.9, lam=1.0)
    np.testing.assert_allclose(returns, [1 + 0.9 * 2, 2.0, 3 + 0.9 * (4 + 0.9 * 5), 4 + 0.9 * 5])


def test_ppo_improves_point_reaching():
    policy = MLPPolicy(1, 1, PolicyConfig(seed=0))
    before = mean_return(policy.act)
    optimum = mean_return(lambda s: np.clip(-s / 0.2, -1.0, 1.0))
    assert before < -9.0 and optimum == pytest.approx(-0.68, abs=0.01)
    ppo = PPO(policy, PPOConfig(steps_per_batch=1024, minibatch_size=64, epochs=10,
                                episode_steps=STEPS, lr=1e-3, seed=0))
    batches = ppo.train(Point(), 8192)
    after = mean_return(policy.act)
    assert after > -2.0, (before, after)
    assert [b.env_steps for b in batches] == [1024 * (i + 1) for i in range(8)]
    # Every episode is cut at STEPS: 1024 steps hold 51 ends (the carried-over one included).
    assert all(len(b.episode_returns) in (51, 52) for b in batches)
    assert batches[-1].mean_return > batches[0].mean_return + 5.0
    assert batches[-1].std < 0.5                   # exploration noise shrank as it learned


def test_value_warmup_keeps_the_policy():
    policy = MLPPolicy(1, 1, PolicyConfig(seed=1))
    policy.fit(np.linspace(-1, 1, 50)[:, None], -np.linspace(-1, 1, 50)[:, None] * 0.5,
               epochs=3)
    before = [p.detach().clone() for p in policy.parameters()]
    ppo = PPO(policy, PPOConfig(steps_per_batch=200, episode_steps=STEPS,
                                value_warmup_batches=1, seed=1))
    value_before = [p.detach().clone() for p in ppo.value_net.parameters()]
    env = Point()
    first = ppo.train(env, 200)
    assert not first[0].policy_updated
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(value_before, ppo.value_net.parameters()))
    second = ppo.train(env, 200)          # the episode in progress continues
    assert second[0].policy_updated and second[0].env_steps == 400
    assert not all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_config_validation():
    with pytest.raises(ValueError, match='lam'):
        PPOConfig(lam=1.5)
    with pytest.raises(ValueError, match='clip'):
        PPOConfig(clip=0.0)
