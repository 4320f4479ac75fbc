"""
DAgger (learning/policies/dagger.py) on a toy double integrator with a known linear teacher.

The teacher's own data is one episode from one start, so behaviour cloning alone sees a
thin slice of the state space; DAgger must label the states the student itself visits
and end up with (nearly) the teacher's return on starts it never saw.
"""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.learning.policies.dagger import DaggerConfig, rollout, run_dagger
from dexmpc_ros.learning.policies.mlp import MLPPolicy, PolicyConfig

K = np.array([3.0, 2.5])
STEPS = 60
EVAL_SEEDS = range(500, 520)


class Integrator:
    """p' = p + 0.1 v, v' = v + 0.1 a; reward -(p² + 0.1 v²) - 0.01 a² (a clipped to ±1)."""

    action_dim = 1

    def reset(self, seed):
        rng = np.random.default_rng(seed)
        self.s = np.array([rng.uniform(-1, 1), rng.uniform(-0.5, 0.5)])
        return self.s.copy()

    def step(self, action):
        a = float(np.clip(action[0], -1.0, 1.0))
        p, v = self.s
        self.s = np.array([p + 0.1 * v, v + 0.1 * a])
        return self.s.copy(), -(p * p + 0.1 * v * v) - 0.01 * a * a, False

    def explore(self, rng):
        return rng.uniform(-1.0, 1.0, 1)

    def success(self):
        return False


def teacher(state):
    return np.clip([-K @ state], -1.0, 1.0)


def mean_return(env, act):
    return float(np.mean([rollout(env, act, STEPS, seed)[1] for seed in EVAL_SEEDS]))


def distill(iterations, stride=1, epochs=150):
    env = Integrator()
    states, _ = rollout(env, teacher, STEPS, seed=1000)
    actions = np.array([teacher(s) for s in states])
    policy = MLPPolicy(2, 1, PolicyConfig(epochs=epochs, batch_size=64, seed=0))
    result = run_dagger(env, teacher, policy, states, actions, DaggerConfig(
        iterations=iterations, rollouts_per_iteration=2, episode_steps=STEPS,
        relabel_stride=stride, eval_episodes=1))
    return env, result


def test_dagger_reaches_teacher_return_where_cloning_does_not():
    env, cloned = distill(iterations=0)
    _, dagger = distill(iterations=3)
    teacher_return = mean_return(env, teacher)
    assert teacher_return == pytest.approx(-3.97, abs=0.01)
    # Not a trivial task: doing nothing scores far worse than the teacher.
    assert mean_return(env, lambda s: np.zeros(1)) < 10 * teacher_return
    dagger_return = mean_return(env, dagger.policy.act)
    cloned_return = mean_return(env, cloned.policy.act)
    assert dagger_return >= teacher_return - 0.05 * abs(teacher_return)
    assert cloned_return < teacher_return - 0.5 * abs(teacher_return)
    assert len(dagger.iterations) == 3 and len(dagger.eval_returns) == 1


def test_dataset_aggregates_teacher_labels_of_visited_states():
    _, result = distill(iterations=2, stride=3, epochs=2)
    per_round = 2 * STEPS // 3
    assert [r.labeled for r in result.iterations] == [per_round, per_round]
    sizes = [STEPS + per_round, STEPS + 2 * per_round]
    assert [r.dataset_size for r in result.iterations] == sizes
    assert result.observations.shape == (STEPS + 2 * per_round, 2)
    # Every label, the teacher's own and the relabeled ones, is the teacher's action there.
    np.testing.assert_array_equal(result.actions,
                                  np.array([teacher(s) for s in result.observations]))
    assert all(len(r.returns) == 2 for r in result.iterations)


def test_config_validation():
    with pytest.raises(ValueError, match='relabel_stride'):
        DaggerConfig(relabel_stride=0)
    with pytest.raises(ValueError, match='actions'):
        run_dagger(Integrator(), teacher, MLPPolicy(2, 1), np.zeros((3, 2)), np.zeros((2, 1)))
