"""
Contract test over every registered controller, plus each controller's own behaviour.

Contract (gymnasium env_checker-style): command shape (m,), finite, within the command
limits, deterministic for a seed, and ``reset()`` restores the first command.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROBOTS

from dexmpc_ros.core.action_space import ActionScaler
from dexmpc_ros.control.random_walk import RandomWalkConfig, RandomWalkController
from dexmpc_ros.control.registry import CONTROLLERS, config_fields, make_controller
from dexmpc_ros.control.scripted import ScriptedConfig, ScriptedController
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.types import Observation


def obs_for(spec):
    n = len(spec.joints)
    return Observation(0, np.asarray(spec.default_pose), np.zeros(n))


def within_command_limits(spec, command):
    if spec.command_interface == 'velocity':
        vmax = spec.limits_array('velocity')
        return np.all(np.abs(command) <= vmax + 1e-9)
    return np.all(command >= spec.limits_array('lower') - 1e-9) and \
        np.all(command <= spec.limits_array('upper') + 1e-9)


@pytest.mark.parametrize('robot', ROBOTS)
@pytest.mark.parametrize('name', sorted(CONTROLLERS))
def test_controller_contract(robot, name):
    if 'checkpoint' in config_fields(name):
        pytest.skip('a learned controller needs its checkpoint: test_policy.py covers it')
    spec = load_robot_spec(robot)
    params = {'seed': 7} if 'seed' in config_fields(name) else {}
    ctrl = make_controller(name, spec, params)
    twin = make_controller(name, spec, params)
    obs = obs_for(spec)
    first = [ctrl.act(obs) for _ in range(50)]
    for command in first:
        assert command.shape == (len(spec.actuated_joints),)
        assert np.all(np.isfinite(command))
        assert within_command_limits(spec, command)
    np.testing.assert_array_equal(np.stack(first), np.stack([twin.act(obs) for _ in range(50)]))
    assert not np.allclose(first[0], first[-1]), 'controller never moves'
    ctrl.reset()
    if name == 'scripted':   # a random walk resumes with fresh noise; the script restarts
        np.testing.assert_allclose(ctrl.act(obs), first[0])


def test_unknown_controller_and_parameter(toy_spec):
    with pytest.raises(ValueError, match='available'):
        make_controller('teleport', toy_spec, {})
    with pytest.raises(ValueError, match='no parameters'):
        make_controller('scripted', toy_spec, {'speed': 1})


def test_action_scaler_round_trip(toy_spec, toy_velocity_spec):
    scaler = ActionScaler(toy_spec)
    np.testing.assert_allclose(scaler.to_command(np.array([-1.0, 1.0])), [-1.0, 2.0])
    np.testing.assert_allclose(scaler.to_command(np.array([5.0, -5.0])), [1.0, 0.0])
    cmd = np.array([0.3, 0.7])
    np.testing.assert_allclose(scaler.to_command(scaler.to_action(cmd)), cmd)
    vel = ActionScaler(toy_velocity_spec)
    np.testing.assert_allclose(vel.to_command(np.array([1.0, -0.5])), [50.0, -25.0])
    with pytest.raises(ValueError, match='margin'):
        ActionScaler(toy_spec, margin=1.0)


def test_scripted_sine_is_analytic(toy_spec):
    ctrl = ScriptedController(toy_spec, ScriptedConfig(amplitude=0.5, period_s=2.0, ramp_s=0.0))
    obs = obs_for(toy_spec)
    commands = np.stack([ctrl.act(obs) for _ in range(20)])   # 2 s at 10 Hz
    t = np.arange(20) * 0.1
    # joint a: centre 0, half range 1, phase 0; joint b: centre 1, half range 1, phase pi
    np.testing.assert_allclose(commands[:, 0], 0.5 * np.sin(np.pi * t), atol=1e-12)
    np.testing.assert_allclose(commands[:, 1], 1.0 + 0.5 * np.sin(np.pi * t + np.pi),
                               atol=1e-12)


def test_scripted_velocity_robot_weaves(toy_velocity_spec):
    ctrl = ScriptedController(toy_velocity_spec, ScriptedConfig(amplitude=0.2, offset=0.4,
                                                                ramp_s=0.0))
    commands = np.stack([ctrl.act(obs_for(toy_velocity_spec)) for _ in range(40)])
    np.testing.assert_allclose(commands.mean(axis=0), [20.0, 20.0], atol=1e-9)
    np.testing.assert_allclose(commands[:, 0] + commands[:, 1], 40.0, atol=1e-9)


def test_scripted_fades_in_from_the_default_pose(toy_spec):
    ctrl = ScriptedController(toy_spec, ScriptedConfig(amplitude=0.5, period_s=2.0, ramp_s=1.0))
    obs = obs_for(toy_spec)
    commands = np.stack([ctrl.act(obs) for _ in range(20)])
    np.testing.assert_allclose(commands[0], toy_spec.default_command)
    t = np.arange(20) * 0.1
    fade = np.minimum(1.0, t / 1.0)
    np.testing.assert_allclose(commands[:, 0], fade * 0.5 * np.sin(np.pi * t), atol=1e-12)
    assert np.max(np.abs(np.diff(commands, axis=0))) < 0.2


def test_random_walk_step_sizes_and_reflection(toy_spec):
    cfg = RandomWalkConfig(vel_min=0.05, vel_max=0.15, hold_steps=3, seed=1)
    ctrl = RandomWalkController(toy_spec, cfg)
    actions = [ctrl.action.copy()]
    for _ in range(3000):
        ctrl.act(obs_for(toy_spec))
        actions.append(ctrl.action.copy())
    actions = np.stack(actions)
    steps = np.abs(np.diff(actions, axis=0))
    assert np.all(actions >= -1) and np.all(actions <= 1)
    assert np.all(steps <= 0.15 + 1e-12)
    interior = np.all(np.abs(actions[1:]) < 0.8, axis=1) & np.all(np.abs(actions[:-1]) < 0.8,
                                                                  axis=1)
    assert np.all(steps[interior] >= 0.05 - 1e-12)
    # the walk starts at the centre, so its first hold_steps steps stay interior and
    # repeat the same velocity
    signed = np.diff(actions, axis=0)
    np.testing.assert_allclose(signed[0], signed[1])
    np.testing.assert_allclose(signed[0], signed[2])
    assert not np.allclose(signed[2], signed[3])
    # wide coverage: both ends of the range are visited
    assert actions.min() < -0.9 and actions.max() > 0.9


def test_random_walk_starts_at_default(toy_spec):
    ctrl = RandomWalkController(toy_spec, RandomWalkConfig(seed=0))
    np.testing.assert_allclose(ActionScaler(toy_spec).to_command(ctrl.action),
                               toy_spec.default_command)


def test_random_walk_config_validation():
    with pytest.raises(ValueError, match='vel_min'):
        RandomWalkConfig(vel_min=0.2, vel_max=0.1)
    with pytest.raises(ValueError, match='hold_steps'):
        RandomWalkConfig(hold_steps=0)
