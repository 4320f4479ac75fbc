"""MPC controller (control/mpc.py): layout, planning, swap, uncertainty, plan output."""

from __future__ import annotations

from dataclasses import asdict, fields, replace

import numpy as np
import pytest
import torch

from dexmpc_ros.control.planners.cem import CEMOptions
from dexmpc_ros.control.mpc import PLANNERS, MPCConfig, MPCController
from dexmpc_ros.control.planners.mppi import MPPIOptions
from dexmpc_ros.control.twin_model import TwinModel
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import Observation
from dexmpc_ros.learning.dynamics.model import DeltaDynamics
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.robots.registry import make_twin


def observe(twin) -> Observation:
    joints = twin.joints()
    names, values = twin.task_state()
    return Observation(0, joints.position, joints.velocity, tuple(names), values)


@pytest.fixture
def hand():
    spec = load_robot_spec('hand24')
    twin = make_twin('hand24', task='valve')
    twin.reset(101)
    yield spec, twin, StateLayout.for_robot(spec, twin.task_state()[0])
    twin.close()


def test_without_a_model_no_command(hand):
    spec, twin, _ = hand
    assert MPCController(spec).act(observe(twin)) is None


def test_ground_truth_mpc_moves_the_valve_toward_the_target(hand):
    spec, twin, layout = hand
    model = TwinModel(twin, spec, layout)
    mpc = MPCController(spec, MPCConfig(samples=32, horizon=5), model, layout)
    error0 = abs(twin.task_state()[1][3])
    for _ in range(12):
        model.capture()
        command = mpc.act(observe(twin))
        assert command.shape == (20,) and np.all(np.isfinite(command))
        assert np.all(command >= spec.limits_array('lower'))
        assert np.all(command <= spec.limits_array('upper'))
        twin.apply_command(model.command(mpc.last_action))
        twin.step()
    assert abs(twin.task_state()[1][3]) < error0 - 0.1
    names, positions = mpc.predicted_joint_positions()
    assert names == spec.joint_names and positions.shape == (5, 24)
    assert np.isnan(mpc.info['uncertainty'])  # one member: no disagreement
    assert mpc.info['plan_time_ms'] > 0


def test_learned_model_swap_and_uncertainty(hand):
    spec, twin, layout = hand
    rng = np.random.default_rng(0)
    states = rng.standard_normal((300, layout.dim))
    actions = rng.uniform(-1, 1, (300, 20))
    model = DeltaDynamics(layout.dim, 20, DynamicsConfig(hidden=(32,), epochs=2, seed=1))
    model.fit(states, actions, states + 0.01 * rng.standard_normal(states.shape))
    mpc = MPCController(spec, MPCConfig(samples=16, horizon=3))
    assert mpc.act(observe(twin)) is None
    mpc.swap(model, layout)
    command = mpc.act(observe(twin))
    assert command.shape == (20,)
    assert mpc.uncertainty > 0  # three members disagree after two epochs
    with pytest.raises(KeyError, match='observation lacks'):
        MPCController(spec, MPCConfig(samples=8, horizon=2), model,
                      StateLayout(layout.names[:-1] + ('task/ball1_x',))).act(observe(twin))
    with pytest.raises(ValueError, match='layout'):
        mpc.swap(model, None)


@pytest.mark.parametrize('field, value', [('planner', 'ilqr'), ('threads', -1),
                                          ('std_penalty', -1.0), ('samples', 0),
                                          ('mppi.beta', 1.5), ('action_noise', -0.1),
                                          ('action_noise', float('nan'))])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError):
        if '.' in field:  # a planner's nested option
            planner, name = field.split('.')
            MPCConfig(**{planner: replace(getattr(MPCConfig(), planner), **{name: value})})
        else:
            MPCConfig(**{field: value})


def test_every_registered_planner_has_its_options_nested_in_the_config():
    """A planner of PLANNERS is configured by the MPCConfig field of its name."""
    names = {f.name for f in fields(MPCConfig)}
    for name, (planner_cls, config_cls) in PLANNERS.items():
        assert name in names, name
        options = getattr(MPCConfig(), name)
        assert isinstance(config_cls(), type(options)), name
        config = MPCConfig(planner=name, horizon=4, samples=30, std_penalty=2.0, seed=-1)
        built = config.planner_config()
        assert type(built) is config_cls
        assert (built.horizon, built.num_samples, built.std_penalty, built.seed) == \
            (4, 30, 2.0, None)
        assert {f.name: getattr(built, f.name) for f in fields(options)} == asdict(options)


def test_the_chosen_planner_gets_its_options_checked_against_the_samples():
    config = MPCConfig(planner='cem', samples=50, cem=CEMOptions(iterations=2, num_elites=5))
    assert (config.planner_config().iterations, config.planner_config().num_elites) == (2, 5)
    with pytest.raises(ValueError, match='num_elites'):
        MPCConfig(planner='cem', samples=8)            # CEM's 20 elites of 8 samples
    assert MPCConfig(planner='mppi', samples=8).samples == 8   # CEM's options unused


@pytest.mark.parametrize('options, message', [('[1, 2]', 'YAML mapping'),
                                              ('{a: [', 'not YAML'),
                                              ('{period_steps: 10}', 'valve')])
def test_task_options_are_checked_before_a_swap(hand, options, message):
    """A bad task_options string is refused when the reward is built (the node's loader)."""
    _, _, layout = hand
    mpc = MPCController(load_robot_spec('hand24'), MPCConfig(task_options=options))
    with pytest.raises(ValueError, match=message):
        mpc.task_reward(layout)


def test_baoding_task_options_reach_the_reward():
    """task_options set the Baoding geometry the planner scores against (period here)."""
    spec = load_robot_spec('hand24')
    twin = make_twin('hand24', task='baoding')
    try:
        twin.reset(3)
        layout = StateLayout.for_robot(spec, twin.task_state()[0])
        state0 = layout.vector(observe(twin), spec.joint_names)
    finally:
        twin.close()
    states = np.repeat(state0[None, None, None], 5, axis=2)  # (E=1, N=1, H=5, nx): balls still
    actions = np.zeros((1, 5, 20))
    rewards = {}
    for period in (20, 60):
        config = MPCConfig(task='baoding', task_options=f'{{period_steps: {period}}}')
        mpc = MPCController(spec, config)
        tensors = [torch.from_numpy(x).float() for x in (states, actions, state0)]
        reward, _ = mpc.task_reward(layout)(*tensors)
        rewards[period] = reward.numpy().ravel()
    # Targets run away from still balls faster with a shorter lap: lower reward each step.
    assert np.all(rewards[20][1:] < rewards[60][1:])


def test_sample_velocities_reaches_the_mppi_planner():
    config = MPCConfig(mppi=MPPIOptions(sample_velocities=True)).planner_config()
    assert config.sample_velocities is True


def quiet_and_noisy(hand, **noisy_config) -> tuple[MPCController, MPCController]:
    """Two MPCs on one small model and planner seed: without, and with ``noisy_config``."""
    spec, _, layout = hand
    rng = np.random.default_rng(0)
    states = rng.standard_normal((200, layout.dim))
    model = DeltaDynamics(layout.dim, 20, DynamicsConfig(hidden=(16,), epochs=1, seed=1))
    model.fit(states, rng.uniform(-1, 1, (200, 20)), states)
    config = dict(samples=16, horizon=3, action_space='delta', seed=3)
    return (MPCController(spec, MPCConfig(**config), model, layout),
            MPCController(spec, MPCConfig(**noisy_config, **config), model, layout))


def test_action_noise_perturbs_only_the_executed_action(hand):
    """Exploration noise: executed = clip(plan + N(0, std)); the planner's plan is untouched."""
    twin = hand[1]
    quiet, noisy = quiet_and_noisy(hand, action_noise=0.3)
    differences = []
    for _ in range(20):
        obs = observe(twin)
        quiet.act(obs)
        noisy.act(obs)
        assert np.all(np.abs(noisy.last_action) <= 1.0)
        differences.append(noisy.last_action - quiet.last_action)
    # Same seed, same plans: every difference is the noise (or its clip at +-1).
    spread = float(np.std(differences))
    assert 0.15 < spread < 0.35, spread
    assert np.allclose(noisy.planner.last_info['trajectory'],
                       quiet.planner.last_info['trajectory'])


def test_evaluation_episodes_run_without_the_action_noise(hand):
    """eval_every=3: episodes 0, 3, 6 ... execute the plan itself; the others add noise."""
    twin = hand[1]
    quiet, noisy = quiet_and_noisy(hand, action_noise=0.3, eval_every=3)
    for episode in (5, 6, 7, 9):
        quiet.reset(episode)
        noisy.reset(episode)
        assert noisy.evaluating == (episode % 3 == 0) and not quiet.evaluating
        obs = observe(twin)
        quiet.act(obs)
        noisy.act(obs)
        same = np.allclose(noisy.last_action, quiet.last_action)
        assert same == noisy.evaluating, episode
    noisy.reset()  # no episode number: not an evaluation episode
    assert not noisy.evaluating
    with pytest.raises(ValueError, match='eval_every'):
        MPCConfig(eval_every=-1)
