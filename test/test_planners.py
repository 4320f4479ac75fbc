"""
Sampling planners (random shooting, CEM, PDDM's filtered MPPI) on analytic toy problems.

Toy task: s' = s + dt B a with B = [[1, 0.5], [0, 1]], dt = 0.1, reward
-W (||s - goal||^2 + c ||a||^2). With H = 1 the best action is the one-step optimum
a* = (dt^2 B^T B + c I)^{-1} dt B^T (goal - s), which every planner must find; with the
default H = 7 the planners drive the toy system to the goal in closed loop. All tests are
seeded (seed 0); every threshold also holds for seeds 0-39.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dexmpc_ros.control.planners.cem import CEMConfig, CEMPlanner
from dexmpc_ros.control.planners.mppi import (MPPIConfig, MPPIPlanner, filter_sequences,
                                              mppi_weights)
from dexmpc_ros.control.planners.base import PlannerConfig, RolloutModel, score
from dexmpc_ros.control.planners.random_shooting import RandomShootingConfig, RandomShootingPlanner

DT, C, W = 0.1, 0.1, 100.0
B = np.array([[1.0, 0.5], [0.0, 1.0]])
GOAL = torch.tensor([0.6, -0.5], dtype=torch.float64)
S0 = torch.zeros(2, dtype=torch.float64)
PLANNERS = {
    'rs': (RandomShootingPlanner, RandomShootingConfig),
    'cem': (CEMPlanner, CEMConfig),
    'mppi': (MPPIPlanner, MPPIConfig),
}


class LinearModel:
    """s_{k+1} = s_k + dt b (gain_e * a_k) for each member e; gains (E, nu)."""

    def __init__(self, gains: np.ndarray | None = None, b: np.ndarray = B) -> None:
        self.gains = torch.as_tensor(np.ones((1, 2)) if gains is None else gains)
        self.ensemble_size = self.gains.shape[0]
        self.b = b

    def rollout(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        b = torch.as_tensor(self.b, dtype=state.dtype)
        gains = self.gains.to(state.dtype)[:, None, None, :]
        deltas = DT * (actions[None] * gains) @ b.T
        return state + torch.cumsum(deltas, dim=2)


def goal_reward(states, actions, state0):
    rewards = -W * (((states - GOAL.to(states.dtype)) ** 2).sum(-1) + C * (actions ** 2).sum(-1))
    return rewards, torch.zeros_like(rewards, dtype=torch.bool)


def make(name, **kwargs):
    planner_cls, config_cls = PLANNERS[name]
    return planner_cls(2, config_cls(**kwargs))


def step(state, action):
    return state + DT * torch.as_tensor(B @ action, dtype=state.dtype)


def closed_loop(planner, reward_fn, steps=30, model=None):
    model = model or LinearModel()
    state, states, actions = S0.clone(), [], []
    for _ in range(steps):
        actions.append(planner.plan(state, model, reward_fn))
        state = step(state, actions[-1])
        states.append(state)
    return torch.stack(states).numpy(), np.stack(actions)


def mean_abs_increment(actions, axis):
    return float(np.abs(np.diff(np.asarray(actions), axis=axis)).mean())


def test_toy_model_satisfies_protocol():
    assert isinstance(LinearModel(), RolloutModel)


@pytest.mark.parametrize('name', sorted(PLANNERS))
def test_contract_and_info(name):
    planner = make(name, num_samples=50)
    action = planner.plan(S0, LinearModel(np.ones((3, 2))), goal_reward)
    assert action.shape == (2,) and action.dtype == np.float64
    assert np.all(np.abs(action) <= 1.0)
    info = planner.last_info
    iterations = planner.config.iterations if name == 'cem' else 1
    assert info['model_evaluations'] == iterations * 50 * 7 * 3
    assert info['best_return'] >= info['mean_return'] and info['plan_time_ms'] > 0.0
    # For a model affine in the actions the reported trajectory is exactly the prediction of
    # the executed plan, so its first state is one step of the executed action.
    assert info['trajectory'].shape == (7, 2)
    np.testing.assert_allclose(info['trajectory'][0], step(S0, action).numpy(), atol=1e-12)


@pytest.mark.parametrize('name', sorted(PLANNERS))
def test_float32_state_gives_action(name):
    action = make(name, num_samples=20).plan(S0.float(), LinearModel(), goal_reward)
    assert action.shape == (2,) and np.all(np.isfinite(action))


@pytest.mark.parametrize('name', sorted(PLANNERS))
def test_same_seed_same_action_and_reset_forgets_warm_start(name):
    first, twin = make(name, seed=3), make(name, seed=3)
    a = first.plan(S0, LinearModel(), goal_reward)
    np.testing.assert_array_equal(a, twin.plan(S0, LinearModel(), goal_reward))
    assert not np.allclose(a, make(name, seed=4).plan(S0, LinearModel(), goal_reward))
    closed_loop(first, goal_reward, steps=5)
    first.reset()
    fresh = make(name, seed=3)
    first.generator.set_state(fresh.generator.get_state())
    np.testing.assert_array_equal(first.plan(S0, LinearModel(), goal_reward),
                                  fresh.plan(S0, LinearModel(), goal_reward))
    assert first.last_info['model_evaluations'] > 0


@pytest.mark.parametrize('name, tolerance', [('rs', 0.15), ('cem', 0.01), ('mppi', 0.1)])
def test_one_step_plan_finds_analytic_optimum(name, tolerance):
    optimum = np.linalg.solve(DT ** 2 * B.T @ B + C * np.eye(2), DT * B.T @ GOAL.numpy())
    assert np.all(np.abs(optimum) < 1.0)   # interior, so clipping does not move it
    action = make(name, horizon=1).plan(S0, LinearModel(), goal_reward)
    np.testing.assert_allclose(action, optimum, atol=tolerance)


@pytest.mark.parametrize('name, cosine', [('rs', 0.5), ('cem', 0.9), ('mppi', 0.5)])
def test_first_action_of_horizon_plan_points_toward_optimum(name, cosine):
    optimum = np.linalg.solve(DT ** 2 * B.T @ B + C * np.eye(2), DT * B.T @ GOAL.numpy())
    # H = 7 trades the first action against the later ones, so only its direction is
    # pinned down; MPPI's first step is also pulled toward the previous action (0) by beta.
    action = make(name).plan(S0, LinearModel(), goal_reward)
    assert action[0] > 0.2   # toward the goal along the dominant axis
    assert action @ optimum / (np.linalg.norm(action) * np.linalg.norm(optimum)) > cosine


@pytest.mark.parametrize('name, factor', [('rs', 4.0), ('cem', 20.0), ('mppi', 4.0)])
def test_closed_loop_reaches_goal(name, factor):
    states, _ = closed_loop(make(name), goal_reward)
    initial = float(np.linalg.norm(GOAL.numpy()))
    assert np.linalg.norm(states[-1] - GOAL.numpy()) < initial / factor


@pytest.mark.parametrize('name', sorted(PLANNERS))
def test_done_region_is_avoided(name):
    center, radius = torch.tensor([0.3, -0.25], dtype=torch.float64), 0.12   # on the way

    def cliff_reward(states, actions, state0):
        rewards, _ = goal_reward(states, actions, state0)
        return rewards, (states - center).norm(dim=-1) < radius

    free, _ = closed_loop(make(name), goal_reward)
    careful, _ = closed_loop(make(name), cliff_reward)
    distance = lambda s: np.linalg.norm(s - center.numpy(), axis=-1)  # noqa: E731
    assert distance(free).min() < radius, 'without dones the straight path crosses the region'
    assert distance(careful).min() >= radius
    assert np.linalg.norm(careful[-1] - GOAL.numpy()) < 0.25   # goes around, not stuck


@pytest.mark.parametrize('name', sorted(PLANNERS))
def test_std_penalty_prefers_the_direction_members_agree_on(name):
    # Member gains 1.5 and 0.5 on a_x, both 1 on a_y: equal mean, spread only along x.
    # Reward W (s_x + s_y - c' ||a||^2), H = 1: the mean optimum is a = dt / (2 c') on both
    # axes; with std_penalty * 0.5 = 2 > 1 the x progress is not worth its spread: a_x = 0.
    model = LinearModel(np.array([[1.5, 1.0], [0.5, 1.0]]), b=np.eye(2))
    c_prime = 0.07

    def progress_reward(states, actions, state0):
        rewards = W * (states.sum(-1) - c_prime * (actions ** 2).sum(-1))
        return rewards, torch.zeros_like(rewards, dtype=torch.bool)

    optimum = DT / (2.0 * c_prime)
    unpenalized = make(name, horizon=1).plan(S0, model, progress_reward)
    penalized = make(name, horizon=1, std_penalty=4.0).plan(S0, model, progress_reward)
    np.testing.assert_allclose(unpenalized, [optimum, optimum], atol=0.1)
    assert abs(penalized[0]) < 0.1 and abs(penalized[1] - optimum) < 0.2


# score --------------------------------------------------------------------------------------
def fixed_reward(rewards, dones):
    return lambda states, actions, state0: (torch.as_tensor(rewards, dtype=torch.float64),
                                            torch.as_tensor(dones))


def dummy(e, n, h):
    return torch.zeros(e, n, h, 2, dtype=torch.float64), torch.zeros(n, h, 2), S0


def test_score_done_is_absorbing_and_penalized():
    rewards = [[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]]
    dones = [[[False, True, False, False], [False, False, False, False]]]
    returns = score(*dummy(1, 2, 4), fixed_reward(rewards, dones), done_penalty=500.0)
    # The done flag at step 1 covers steps 1..3 even though the reward_fn clears it later.
    np.testing.assert_allclose(returns.numpy(), [1.0 - 3 * 500.0, 10.0])


def test_score_mean_minus_std_over_members():
    rewards = [[[1.0, 1.0]], [[3.0, 5.0]]]   # member returns 2 and 8: mean 5, std 3
    dones = np.zeros((2, 1, 2), dtype=bool)
    reward_fn = fixed_reward(rewards, dones)
    assert float(score(*dummy(2, 1, 2), reward_fn)) == pytest.approx(5.0)
    assert float(score(*dummy(2, 1, 2), reward_fn, std_penalty=4.0)) == pytest.approx(-7.0)


def test_score_maps_non_finite_returns_to_minus_inf():
    rewards = [[[1.0], [math.nan], [math.inf]]]
    returns = score(*dummy(1, 3, 1), fixed_reward(rewards, np.zeros((1, 3, 1), bool)))
    assert returns.tolist() == [1.0, -math.inf, -math.inf]


def test_score_rejects_wrong_reward_shape():
    with pytest.raises(ValueError, match=r'expected \(E, N, H\)'):
        score(*dummy(1, 2, 3), fixed_reward(np.zeros((2, 3)), np.zeros((2, 3), bool)))


def test_planner_rejects_wrong_model_output_and_all_diverged():
    class Wrong(LinearModel):
        def rollout(self, state, actions):
            return super().rollout(state, actions)[:, :, :-1]

    class Diverged(LinearModel):
        def rollout(self, state, actions):
            return super().rollout(state, actions) * math.nan

    with pytest.raises(ValueError, match=r'model.rollout returned \(1, 10, 6, 2\)'):
        make('rs', num_samples=10).plan(S0, Wrong(), goal_reward)
    with pytest.raises(ValueError, match='no sampled sequence has a finite'):
        make('mppi', num_samples=10).plan(S0, Diverged(), goal_reward)


# random shooting ----------------------------------------------------------------------------
def test_random_shooting_executes_first_action_of_argmax_sample():
    seen = {}

    def recording_reward(states, actions, state0):
        seen['states'], seen['actions'] = states, actions
        return goal_reward(states, actions, state0)

    planner = make('rs', num_samples=64)
    action = planner.plan(S0, LinearModel(), recording_reward)
    returns = score(seen['states'], seen['actions'], S0, goal_reward)
    best = int(torch.argmax(returns))
    assert planner.last_info['best_index'] == best
    assert planner.last_info['best_return'] == pytest.approx(float(returns[best]))
    np.testing.assert_array_equal(action, seen['actions'][best, 0].numpy())
    assert seen['actions'].min() >= -1.0 and seen['actions'].max() <= 1.0
    assert seen['actions'].min() < -0.9 and seen['actions'].max() > 0.9   # uniform on the box


# CEM ----------------------------------------------------------------------------------------
def test_cem_elite_refit_shrinks_sampling_std():
    planner = make('cem')
    planner.plan(S0, LinearModel(), goal_reward)
    stds = planner.last_info['std_per_iteration']
    assert len(stds) == 3 and stds[0] == pytest.approx(0.5)
    assert stds[0] > stds[1] > stds[2]


def test_cem_shifts_mean_between_steps():
    planner = make('cem')
    planner.plan(S0, LinearModel(), goal_reward)
    planned = planner.mean.clone()
    seen = {}

    def recording_reward(states, actions, state0):
        seen.setdefault('actions', actions)
        return goal_reward(states, actions, state0)

    noise_state = planner.generator.get_state()
    planner.plan(S0, LinearModel(), recording_reward)
    # The first batch of the next step is clip(shifted plan + init_std * eps), the shifted
    # plan repeating its last entry.
    eps = torch.randn((700, 7, 2), dtype=torch.float64,
                      generator=torch.Generator().set_state(noise_state))
    shifted = torch.cat([planned[1:], planned[-1:]])
    np.testing.assert_allclose(seen['actions'].numpy(),
                               torch.clamp(shifted + 0.5 * eps, -1, 1).numpy(), atol=1e-12)


# MPPI ---------------------------------------------------------------------------------------
def test_mppi_weights_are_normalized_and_analytic():
    kappa = 2.0
    returns = torch.tensor([0.0, -math.log(2.0) / kappa, -math.inf], dtype=torch.float64)
    weights = mppi_weights(returns, kappa)
    np.testing.assert_allclose(weights.numpy(), [2 / 3, 1 / 3, 0.0], rtol=1e-9)
    returns = torch.randn(700, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(mppi_weights(returns, 20.0).sum()) == pytest.approx(1.0, abs=1e-9)


def test_mppi_weights_do_not_overflow():
    returns = torch.tensor([3e38, 2.9e38, -3e38], dtype=torch.float32)
    weights = mppi_weights(returns, 20.0)
    assert torch.all(torch.isfinite(weights))
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.0, 0.0], atol=1e-6)


def test_filter_sequences_recursion():
    mean = torch.tensor([[0.2], [0.4]])
    noise = torch.tensor([[[0.0], [0.0]], [[2.0], [-4.0]]])
    past = torch.tensor([1.0])
    out = filter_sequences(mean, noise, past, beta=0.5)
    # n0 = 0.5 (0.2 + u0) + 0.5 past; n1 = 0.5 (0.4 + u1) + 0.5 n0; then clip to [-1, 1].
    np.testing.assert_allclose(out[0, :, 0].numpy(), [0.6, 0.5], rtol=1e-6)
    np.testing.assert_allclose(out[1, :, 0].numpy(), [1.0, -1.0], rtol=1e-6)   # 1.6, -1.0
    unfiltered = filter_sequences(mean, noise, past, beta=1.0)
    np.testing.assert_allclose(unfiltered.numpy(), torch.clamp(mean + noise, -1, 1).numpy())


def test_mppi_sample_velocities_shrinks_last_tenth_of_noise():
    planner = make('mppi', num_samples=1000, sample_velocities=True)
    noise = planner._noise(torch.float64)
    assert float(noise[:900].std()) == pytest.approx(0.9, rel=0.05)
    assert float(noise[900:].std()) == pytest.approx(0.27, rel=0.05)


def test_mppi_filtering_smooths_sampled_and_executed_actions():
    def run(beta):
        sampled = []

        def recording_reward(states, actions, state0):
            sampled.append(mean_abs_increment(actions.numpy(), axis=1))
            return goal_reward(states, actions, state0)

        _, executed = closed_loop(make('mppi', beta=beta), recording_reward)
        return float(np.mean(sampled)), mean_abs_increment(executed, axis=0)

    sampled_raw, executed_raw = run(1.0)
    sampled_smooth, executed_smooth = run(0.3)
    assert sampled_smooth < 0.5 * sampled_raw
    assert executed_smooth < 0.5 * executed_raw


# configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize('config_cls, kwargs, message', [
    (PlannerConfig, {'num_samples': 0}, 'num_samples'),
    (PlannerConfig, {'horizon': 0}, 'horizon'),
    (PlannerConfig, {'std_penalty': -1.0}, 'std_penalty'),
    (PlannerConfig, {'std_penalty': math.nan}, 'std_penalty'),
    (PlannerConfig, {'done_penalty': -1.0}, 'done_penalty'),
    (RandomShootingConfig, {'horizon': -3}, 'horizon'),
    (CEMConfig, {'num_elites': 701}, 'num_elites'),
    (CEMConfig, {'num_elites': 0}, 'num_elites'),
    (CEMConfig, {'iterations': 0}, 'iterations'),
    (CEMConfig, {'init_std': 0.0}, 'init_std'),
    (CEMConfig, {'alpha': 1.0}, 'alpha'),
    (CEMConfig, {'min_std': 0.6}, 'min_std'),
    (MPPIConfig, {'beta': 0.0}, 'beta'),
    (MPPIConfig, {'beta': 1.5}, 'beta'),
    (MPPIConfig, {'kappa': 0.0}, 'kappa'),
    (MPPIConfig, {'sigma': -0.1}, 'sigma'),
    (MPPIConfig, {'num_samples': 0}, 'num_samples'),
])
def test_configs_reject_bad_values(config_cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_cls(**kwargs)


def test_configs_default_to_pddm_values_and_reject_bad_action_dim():
    mppi, cem = MPPIConfig(), CEMConfig()
    assert (mppi.horizon, mppi.num_samples, mppi.kappa, mppi.sigma, mppi.beta) == \
        (7, 700, 20.0, 0.9, 0.6)
    assert (cem.iterations, cem.num_elites) == (3, 20)
    with pytest.raises(ValueError, match='action_dim'):
        MPPIPlanner(0)
