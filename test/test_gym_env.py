"""
GymEnv over HalfCheetah-v5 and the cheetah planner reward (runtime/gym_env.py).

The planner reward evaluated on real consecutive states must equal what the env itself
pays (``reward_forward + reward_ctrl``), and normalized actions must land in the env's box.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip('gymnasium')
pytest.importorskip('mujoco')

from dexmpc_ros.runtime.gym_env import GymEnv, forward_reward  # noqa: E402


@pytest.fixture(scope='module')
def cheetah():
    env = GymEnv('HalfCheetah-v5')
    yield env
    env.close()


def test_cheetah_layout_and_names(cheetah):
    assert cheetah.state_dim == 18 and cheetah.action_dim == 6
    assert cheetah.dt == pytest.approx(0.05)
    assert cheetah.state_names[:3] == ['pos/rootx', 'pos/rootz', 'pos/rooty']
    assert cheetah.state_names[9] == 'vel/rootx'
    assert cheetah.action_names == ['bthigh', 'bshin', 'bfoot', 'fthigh', 'fshin', 'ffoot']
    assert cheetah.x_column() == 0
    state = cheetah.reset(3)
    # The x position is the env's own info entry (the observation includes it).
    assert state[0] == pytest.approx(cheetah.last_info['x_position'])


def test_planner_reward_equals_env_reward(cheetah):
    rng = np.random.default_rng(0)
    states = [cheetah.reset(11)]
    actions, env_rewards, forward = [], [], []
    for _ in range(60):
        action = rng.uniform(-1.2, 1.2, 6)   # some beyond the range: both must clip
        state, reward, done = cheetah.step(action)
        assert not done
        states.append(state)
        actions.append(action)
        env_rewards.append(reward)
        forward.append(cheetah.last_info['reward_forward'])
    states_t = torch.tensor(np.array(states[1:]))[None, None]      # (1, 1, H, nx)
    actions_t = torch.tensor(np.array(actions))[None]              # (1, H, nu)
    rewards, dones = cheetah.planner_reward()(states_t, actions_t, torch.tensor(states[0]))
    assert rewards.shape == (1, 1, 60) and dones.shape == (1, 1, 60) and not dones.any()
    # The env computes its control cost on float32 actions in float32 (~1e-7 rounding).
    np.testing.assert_allclose(rewards[0, 0].numpy(), env_rewards, rtol=0, atol=1e-6)
    # The forward part alone (float64 on both sides): no control cost with zero weight.
    only_forward = forward_reward(0, cheetah.dt, ctrl_cost_weight=0.0)
    np.testing.assert_allclose(only_forward(states_t, actions_t, torch.tensor(states[0]))[0]
                               [0, 0].numpy(), forward, rtol=0, atol=1e-9)


def test_planner_reward_is_vectorized_over_members_and_samples():
    fn = forward_reward(0, dt=0.5, forward_weight=2.0, ctrl_cost_weight=0.1)
    states = torch.zeros(2, 3, 2, 4)
    states[..., 0] = torch.tensor([1.0, 3.0])             # x: 0 -> 1 -> 3 in every sequence
    states[1, 2, :, 0] = torch.tensor([-1.0, -1.0])        # member 1, sample 2: backwards
    actions = torch.zeros(3, 2, 2)
    actions[1] = 1.0                                       # sample 1: |a|^2 = 2 per step
    rewards, _ = fn(states, actions, torch.zeros(4))
    expected = torch.tensor([[4.0, 8.0], [3.8, 7.8], [4.0, 8.0]]).expand(2, 3, 2).clone()
    expected[1, 2] = torch.tensor([-4.0, 0.0])
    torch.testing.assert_close(rewards, expected)


def test_action_mapping_into_box(cheetah):
    np.testing.assert_array_equal(cheetah.to_env_action(np.array([-1, 1, 0, 0.5, -3, 7.0])),
                                  [-1, 1, 0, 0.5, -1, 1])
    box = GymEnv.__new__(GymEnv)
    box.low, box.high = np.array([0.0, -2.0]), np.array([4.0, 2.0])
    np.testing.assert_allclose(box.to_env_action(np.array([[-1.0, 1.0], [0.0, 0.5],
                                                           [2.0, -5.0]])),
                               [[0.0, 2.0], [2.0, 1.0], [4.0, -2.0]])
    rng = np.random.default_rng(1)
    samples = np.array([cheetah.explore(rng) for _ in range(500)])
    assert samples.shape == (500, 6) and samples.min() >= -1 and samples.max() <= 1
    assert samples.min() < -0.95 and samples.max() > 0.95
    with pytest.raises(ValueError, match=r'\(6,\)'):
        cheetah.step(np.zeros(5))


def test_reward_maps_actions_through_the_box():
    low, high = np.array([0.0]), np.array([4.0])
    fn = forward_reward(0, dt=1.0, ctrl_cost_weight=1.0, low=low, high=high)
    states = torch.zeros(1, 1, 1, 1)
    rewards, _ = fn(states, torch.tensor([[[0.5]]]), torch.zeros(1))
    assert float(rewards) == pytest.approx(-9.0)       # a = 0.5 -> 3.0 in [0, 4]


def test_reset_is_seeded(cheetah):
    a = cheetah.reset(5)
    b = cheetah.reset(6)
    np.testing.assert_array_equal(a, cheetah.reset(5))
    assert not np.array_equal(a, b)
    assert cheetah.success() is False
