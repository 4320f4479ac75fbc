"""
MLP policy (learning/policies/mlp.py) and its controller (control/mlp_policy.py).

Distillation must recover a known map, a checkpoint must round-trip bit for bit and be
refused with CheckpointError when corrupt or not what the caller expects, and the
controller must turn an observation into the command the policy's action maps to.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dexmpc_ros.control.mlp_policy import MLPPolicyConfig, MLPPolicyController
from dexmpc_ros.control.registry import make_controller
from dexmpc_ros.core.action_space import ActionScaler, DeltaActionScaler
from dexmpc_ros.core.errors import CheckpointError
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import Observation
from dexmpc_ros.learning.checkpoint import save_checkpoint
from dexmpc_ros.learning.dynamics.model import DeltaDynamics
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.learning.policies.mlp import MLPPolicy, PolicyConfig, load_policy, save_policy

W = np.array([[0.02, -0.01, 0.0], [0.0, 0.03, 0.5]])
B = np.array([0.1, -0.2])
OFFSET, SCALE = np.array([50.0, -20.0, 0.0]), np.array([10.0, 5.0, 0.3])
NAMES = ['pos/a', 'pos/b', 'vel/a']
ACTIONS = ['a', 'b']


def linear_data(n, seed):
    """Observations far from N(0, 1) (the normalizer must handle them) and W x + b."""
    rng = np.random.default_rng(seed)
    obs = OFFSET + SCALE * rng.standard_normal((n, 3))
    return obs, (obs - OFFSET) @ W.T + B


def trained_policy(seed=0, epochs=150):
    obs, actions = linear_data(2000, seed)
    policy = MLPPolicy(3, 2, PolicyConfig(epochs=epochs, batch_size=128, seed=seed))
    losses = policy.fit(obs, actions)
    return policy, losses


def extra(**overrides):
    values = {'state_names': NAMES, 'action_names': ACTIONS, 'robot': 'toy'}
    values.update(overrides)
    return values


def test_fit_recovers_linear_map():
    policy, losses = trained_policy()
    assert losses[-1] < 0.02 * losses[0]
    obs, actions = linear_data(500, seed=99)                      # held out
    error = np.mean((policy.act(obs) - actions) ** 2)
    assert error < 1e-3, error
    assert np.mean(actions ** 2) > 0.05                            # not a trivial target
    np.testing.assert_allclose(policy.obs_norm.mean, OFFSET, atol=0.1 * SCALE.max())


def test_gaussian_head_and_bounds():
    policy = MLPPolicy(3, 2)
    np.testing.assert_allclose(policy.log_std.detach().exp().numpy(), [0.5, 0.5])
    obs = torch.randn(7, 3) * 1e4
    dist = policy.distribution(obs)
    torch.testing.assert_close(dist.mean, policy(obs))
    assert torch.all(dist.mean.abs() <= 1.0)
    assert MLPPolicy(3, 2, PolicyConfig(init_std=1.0)).log_std.detach().abs().max() == 0.0
    # Seeded initialization, the global torch RNG untouched.
    state = torch.get_rng_state()
    a, b = MLPPolicy(3, 2, PolicyConfig(seed=4)), MLPPolicy(3, 2, PolicyConfig(seed=4))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_fit_validates_input():
    policy = MLPPolicy(3, 2)
    with pytest.raises(ValueError, match='need obs'):
        policy.fit(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match='NaN'):
        policy.fit(np.full((4, 3), np.nan), np.zeros((4, 2)))
    with pytest.raises(ValueError, match='hidden'):
        PolicyConfig(hidden=(64, 0))


def test_save_load_round_trip(tmp_path):
    policy, _ = trained_policy(epochs=5)
    with torch.no_grad():
        policy.log_std.add_(0.3)
    manifest_extra = extra(extra={'action_space': 'delta'}, metrics={'return': 1.5})
    path = save_policy(tmp_path / 'pi', policy, manifest_extra)
    loaded, manifest = load_policy(path, expect_state_names=NAMES, expect_action_names=ACTIONS,
                                   expect_robot='toy')
    obs = torch.from_numpy(linear_data(64, 5)[0]).float()
    assert torch.equal(loaded(obs), policy(obs))
    assert torch.equal(loaded.log_std, policy.log_std)
    np.testing.assert_array_equal(loaded.obs_norm.std, policy.obs_norm.std)
    assert loaded.config == policy.config
    assert manifest['format'] == 'dexmpc_ros.mlp_policy'
    assert manifest['state_names'] == NAMES and manifest['extra'] == {'action_space': 'delta'}
    assert manifest['metrics'] == {'return': 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['pi']   # no temporary left behind
    with pytest.raises(CheckpointError, match='already exists'):
        save_policy(path, policy, extra())


def test_corrupt_or_mismatched_checkpoints_are_refused(tmp_path):
    policy = MLPPolicy(3, 2)
    path = save_policy(tmp_path / 'pi', policy, extra())
    with pytest.raises(CheckpointError, match='state_names differ'):
        load_policy(path, expect_state_names=['pos/a', 'vel/a', 'pos/b'])
    with pytest.raises(CheckpointError, match='action_names differ'):
        load_policy(path, expect_action_names=['a', 'c'])
    with pytest.raises(CheckpointError, match="robot is 'toy'"):
        load_policy(path, expect_robot='widowx')

    weights = path / 'model.safetensors'
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='sha256'):
        load_policy(path)

    path = save_policy(tmp_path / 'pi2', policy, extra())
    manifest = json.loads((path / 'manifest.json').read_text())
    manifest['state_dim'] = 4                                   # weights are for 3 inputs
    manifest['state_names'] = NAMES + ['vel/b']
    manifest['normalizers']['obs'] = {'mean': [0.0] * 4, 'std': [1.0] * 4}
    (path / 'manifest.json').write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="tensor 'net.0.weight'"):
        load_policy(path)
    (path / 'manifest.json').write_text('{not json')
    with pytest.raises(CheckpointError, match='invalid JSON'):
        load_policy(path)
    with pytest.raises(CheckpointError, match='does not exist'):
        load_policy(tmp_path / 'nothing')

    model = DeltaDynamics(3, 2, DynamicsConfig(ensemble_size=1, hidden=(8,)))
    dyn = save_checkpoint(tmp_path / 'dyn', model, extra())
    with pytest.raises(CheckpointError, match='unknown format'):
        load_policy(dyn)


def toy_policy_checkpoint(tmp_path, spec, action_space='absolute', task=()):
    """A policy for the toy robot trained on the map action = -q (actuated joints a, b)."""
    layout = StateLayout.for_robot(spec, task)
    rng = np.random.default_rng(3)
    states = rng.uniform(-1.0, 1.0, (1000, layout.dim))
    policy = MLPPolicy(layout.dim, 2, PolicyConfig(epochs=20, batch_size=128))
    policy.fit(states, -0.5 * states[:, :2])
    return save_policy(tmp_path / f'pi_{action_space}{len(task)}', policy, {
        'state_names': list(layout.names), 'action_names': list(spec.command_names),
        'robot': spec.name, 'extra': {'action_space': action_space}}), policy, layout


def test_controller_maps_policy_action_to_command(tmp_path, toy_spec):
    path, policy, layout = toy_policy_checkpoint(tmp_path, toy_spec)
    controller = make_controller('mlp_policy', toy_spec, {'checkpoint': str(path)})
    assert isinstance(controller, MLPPolicyController)
    obs = Observation(0, np.array([0.4, 1.5, 0.1]), np.array([0.0, -0.2, 0.3]))
    command = controller.act(obs)
    state = layout.vector(obs, toy_spec.joint_names)
    expected = ActionScaler(toy_spec).to_command(policy.act(state))
    np.testing.assert_array_equal(command, expected)
    assert command.shape == (2,)
    assert np.all(command >= toy_spec.limits_array('lower'))
    assert np.all(command <= toy_spec.limits_array('upper'))
    controller.reset()
    np.testing.assert_array_equal(controller.act(obs), command)    # stateless

    delta_path, _, _ = toy_policy_checkpoint(tmp_path, toy_spec, 'delta')
    delta = MLPPolicyController(toy_spec, MLPPolicyConfig(str(delta_path), 'delta'))
    measured = obs.position[toy_spec.actuated_index]
    np.testing.assert_allclose(delta.act(obs), DeltaActionScaler(toy_spec).to_command(
        delta.last_action, measured))
    assert np.all(np.abs(delta.act(obs) - measured) <= DeltaActionScaler(toy_spec).step + 1e-12)


def test_controller_refuses_wrong_checkpoints(tmp_path, toy_spec, toy_velocity_spec):
    path, _, _ = toy_policy_checkpoint(tmp_path, toy_spec)
    with pytest.raises(CheckpointError, match='trained with absolute'):
        MLPPolicyController(toy_spec, MLPPolicyConfig(str(path), 'delta'))
    with pytest.raises(CheckpointError, match='action_names differ'):
        MLPPolicyController(toy_velocity_spec, MLPPolicyConfig(str(path)))
    with pytest.raises(ValueError, match='needs a checkpoint'):
        make_controller('mlp_policy', toy_spec, {})
    with_task, _, _ = toy_policy_checkpoint(tmp_path, toy_spec, task=('goal',))
    controller = MLPPolicyController(toy_spec, MLPPolicyConfig(str(with_task), threads=0))
    assert controller.policy.config.threads == 0
    obs = Observation(0, np.zeros(3), np.zeros(3))
    with pytest.raises(KeyError, match='task/goal'):
        controller.act(obs)
    command = controller.act(Observation(0, obs.position, obs.velocity, ('goal',),
                                         np.array([0.3])))
    assert command.shape == (2,)
