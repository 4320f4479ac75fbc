"""In-process model-based loop (runtime/sim_loop.py) on the WidowX twin."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dexmpc_ros.control.planners.random_shooting import RandomShootingConfig, RandomShootingPlanner
from dexmpc_ros.control.random_walk import RandomWalkConfig, RandomWalkController
from dexmpc_ros.control.task_rewards import make_reward, torch_reward
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.learning.dynamics.model import DeltaDynamics
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.robots.registry import make_twin
from dexmpc_ros.runtime.sim_loop import LoopConfig, TwinEnv, run_episode, run_loop
from dexmpc_ros.safety.clamp_rules import clamp_position_box, clamp_step, clamp_velocity
from dexmpc_ros.safety.limits import CommandLimits, MeasuredState

SPEC = load_robot_spec('widowx')
LIMITS = CommandLimits.from_spec(SPEC)
# The supervisor's clamps that depend only on the measured joints (the workspace box and
# the effort rule need more than TwinEnv models).
SUPERVISOR_CLAMPS = (clamp_step, clamp_velocity, clamp_position_box)


@pytest.fixture
def twin():
    twin = make_twin('widowx', task='reach', seed=0)
    yield twin
    twin.close()


def measured(twin) -> MeasuredState:
    """The actuated joints as the supervisor sees them."""
    joints = twin.joints()
    idx = SPEC.actuated_index
    return MeasuredState(joints.position[idx], joints.velocity[idx], 0)


def supervised(command: np.ndarray, state: MeasuredState) -> np.ndarray:
    """What the supervisor's step, velocity and box clamps make of ``command``."""
    for clamp in SUPERVISOR_CLAMPS:
        command = clamp(command, LIMITS, state).values
    return command


@pytest.mark.parametrize('action_space', ['delta', 'absolute'])
def test_twin_env_never_commands_beyond_the_supervisor_step_bound(twin, action_space):
    env = TwinEnv(twin, SPEC, action_space=action_space)
    applied = []
    apply = twin.apply_command

    def recording_apply(values):
        applied.append((measured(twin), np.array(values)))
        apply(values)

    twin.apply_command = recording_apply
    rng = np.random.default_rng(0)
    env.reset(1)
    m = env.action_dim
    # Saturating and out-of-range actions first: the bound must hold exactly there too.
    actions = [np.ones(m), -np.ones(m), np.full(m, 3.0)] + \
        [rng.uniform(-3.0, 3.0, m) for _ in range(30)]
    for action in actions:
        env.step(action)
    assert len(applied) == len(actions)
    step_bound = np.minimum(LIMITS.max_step, LIMITS.velocity * LIMITS.period_s)
    for state, command in applied:
        assert np.all(np.abs(command - state.position) <= step_bound + 1e-12)
        for clamp in SUPERVISOR_CLAMPS:
            result = clamp(command, LIMITS, state)
            assert not result.fired, result.reason
    if action_space == 'delta':  # a full action uses the whole step (within the box)
        state, command = applied[0]
        expected = np.clip(state.position + step_bound, LIMITS.lower, LIMITS.upper)
        np.testing.assert_allclose(command, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('action_space', ['delta', 'absolute'])
def test_exploration_actions_reproduce_the_explorers_clamped_command(twin, action_space):
    # A fast walk, so the raw commands often exceed one step and the clamp matters.
    config = RandomWalkConfig(vel_min=0.3, vel_max=0.6, hold_steps=2, seed=4)
    env = TwinEnv(twin, SPEC, RandomWalkController(SPEC, config), action_space)
    twin_walk = RandomWalkController(SPEC, config)  # same seed: the same raw commands
    rng = np.random.default_rng(0)
    env.reset(2)
    clamped = 0
    for _ in range(40):
        state = measured(twin)
        action = env.explore(rng)
        raw = twin_walk.act(env.observation())
        assert action.shape == (env.action_dim,)
        assert np.all(action >= -1.0) and np.all(action <= 1.0)
        expected = supervised(raw, state)
        np.testing.assert_allclose(env.command(action), expected, rtol=0, atol=1e-9)
        clamped += not np.allclose(expected, raw)
        env.step(action)
    assert clamped > 0  # the walk did outrun the step bound


def tiny_loop(env, config: LoopConfig, dynamics: DynamicsConfig, records=None):
    planner = RandomShootingPlanner(env.action_dim,
                                    RandomShootingConfig(horizon=2, num_samples=8, seed=0))
    reward = torch_reward(make_reward('reach', env.layout))
    return run_loop(env, planner, reward, dynamics, config,
                    on_episode=None if records is None else records.append)


def test_run_loop_records_episodes_and_aggregates_every_episode(twin):
    env = TwinEnv(twin, SPEC, RandomWalkController(SPEC, RandomWalkConfig(seed=0)))
    config = LoopConfig(explore_episodes=2, iterations=2, episodes_per_iteration=2,
                        episode_steps=5, first_epochs=2, epochs=1, seed=3)
    seen = []
    result = tiny_loop(env, config, DynamicsConfig(ensemble_size=1, hidden=(16,), seed=0),
                       seen)

    assert seen == result.records
    assert [r.episode for r in result.records] == list(range(6))
    assert [r.iteration for r in result.records] == [-1, -1, 0, 0, 1, 1]
    assert [r.steps for r in result.records] == [5] * 6  # reach never ends early
    assert [r.env_steps for r in result.records] == [5, 10, 15, 20, 25, 30]
    assert all(math.isnan(r.plan_ms) for r in result.records[:2])
    assert all(r.plan_ms > 0 for r in result.records[2:])

    states, actions, next_states = result.data.arrays()
    assert len(result.data) == 30
    assert states.shape == (30, env.layout.dim) and actions.shape == (30, 7)
    assert np.all(np.abs(actions) <= 1.0)
    # Episode i starts from the reset with seed 3 * 100000 + i, and within an episode each
    # next state is the following transition's state.
    check = TwinEnv(make_twin('widowx', task='reach'), SPEC)
    for i, episode in enumerate(result.data.states):
        np.testing.assert_array_equal(episode[0], check.reset(300000 + i))
    for s, n in zip(result.data.states, result.data.next_states):
        np.testing.assert_array_equal(n[:-1], s[1:])
    check.twin.close()

    # The returned model is the last one trained: on the 20 transitions that existed
    # before iteration 1 (exploration + iteration 0), not on iteration 1's own episodes.
    assert isinstance(result.model, DeltaDynamics) and result.model.fitted
    np.testing.assert_allclose(result.model.state_norm.mean, states[:20].mean(axis=0),
                               rtol=1e-12, atol=1e-12)
    assert not np.allclose(result.model.state_norm.mean, states.mean(axis=0))
    # Controller episodes are the on-policy data for new_data_fraction, exploration is not.
    assert result.data.is_new().tolist() == [False] * 10 + [True] * 20
    for record in result.records:
        assert record.action_change >= 0.0


def test_trained_model_predicts_held_out_transitions_better_than_no_change(twin):
    walk = dict(vel_min=0.1, vel_max=0.3)
    env = TwinEnv(twin, SPEC, RandomWalkController(SPEC, RandomWalkConfig(seed=1, **walk)))
    config = LoopConfig(explore_episodes=20, iterations=1, episodes_per_iteration=1,
                        episode_steps=50, first_epochs=50, seed=0)
    dynamics = DynamicsConfig(ensemble_size=1, hidden=(128, 128), batch_size=128, seed=0,
                              threads=1)
    model = tiny_loop(env, config, dynamics).model

    # Held out: other episodes (reset seeds) of another walk (explorer seed).
    held_env = TwinEnv(make_twin('widowx', task='reach'), SPEC,
                       RandomWalkController(SPEC, RandomWalkConfig(seed=99, **walk)))
    rng = np.random.default_rng(99)
    held = [run_episode(held_env, 50, 777 + k, None, rng)[0] for k in range(3)]
    held_env.twin.close()
    s = np.concatenate([h['states'] for h in held])
    a = np.concatenate([h['actions'] for h in held])
    s_next = np.concatenate([h['next_states'] for h in held])
    scale = np.where(s.std(axis=0) > 1e-6, s.std(axis=0), 1.0)

    def error(prediction):
        """Mean squared error in units of each column's std (as learning/dynamics/training.py)."""
        return float(np.mean(((prediction - s_next) / scale) ** 2))

    model_error = error(model.predict(s, a)[0])
    no_change_error = error(s)
    # Measured 0.21 vs 0.41; the margin absorbs float differences between machines.
    assert model_error < 0.7 * no_change_error, (model_error, no_change_error)


class StillPlanner:
    """Always plans 'no change' (delta action 0): whatever else is executed is the noise."""

    def __init__(self, action_dim: int) -> None:
        self.action_dim = action_dim

    def reset(self) -> None:
        pass

    def plan(self, state, model, reward) -> np.ndarray:
        return np.zeros(self.action_dim)


def test_every_kth_mpc_episode_is_an_evaluation_without_action_noise(twin):
    env = TwinEnv(twin, SPEC, RandomWalkController(SPEC, RandomWalkConfig(seed=0)))
    config = LoopConfig(explore_episodes=1, iterations=2, episodes_per_iteration=3,
                        episode_steps=4, first_epochs=1, epochs=1, action_noise=0.3,
                        eval_every=3, seed=1)
    result = run_loop(env, StillPlanner(env.action_dim),
                      torch_reward(make_reward('reach', env.layout)),
                      DynamicsConfig(ensemble_size=1, hidden=(8,), seed=0), config)
    assert [r.evaluation for r in result.records] == [False] + [False, False, True] * 2
    for record, actions in zip(result.records[1:], result.data.actions[1:]):
        # executed: the planned 0, plus the noise outside evaluation episodes
        assert np.all(actions == 0.0) == record.evaluation, (record, actions)
