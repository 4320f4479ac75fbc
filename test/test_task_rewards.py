"""Planner rewards (control/task_rewards.py) equal the twins' own rewards; StateLayout."""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.control.planners.base import score
from dexmpc_ros.robots.hand24.rewards import baoding_drop_z
from dexmpc_ros.control.task_rewards import make_reward, torch_reward
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import Observation
from dexmpc_ros.robots.registry import make_twin
from dexmpc_ros.robots.hand24.tasks import BAODING_STATE_NAMES, VALVE_STATE_NAMES, BaodingTask
from dexmpc_ros.robots.roach.tasks import figure8_reference


def observe(twin, spec) -> Observation:
    joints = twin.joints()
    names, values = twin.task_state()
    return Observation(0, joints.position, joints.velocity, tuple(names), values)


@pytest.mark.parametrize('robot, task', [('hand24', 'valve'), ('widowx', 'reach'),
                                         ('roach', 'waypoints')])
def test_planner_reward_is_the_twins_reward(robot, task):
    spec = load_robot_spec(robot)
    twin = make_twin(robot, task=task)
    twin.reset(3)
    rng = np.random.default_rng(3)
    obs = observe(twin, spec)
    layout = StateLayout.for_robot(spec, obs.task_names)
    reward = make_reward(task, layout)
    checked = 0
    try:
        for _ in range(25):
            state0 = layout.vector(obs, spec.joint_names)
            command = spec.default_command + rng.normal(0.0, 0.3, len(spec.command_names)) * (
                spec.limits_array('max_step'))
            twin.apply_command(np.clip(command, spec.limits_array('lower'),
                                       spec.limits_array('upper')))
            twin.step()
            obs = observe(twin, spec)
            state1 = layout.vector(obs, spec.joint_names)
            if task == 'waypoints' and not np.array_equal(state0[layout.columns(
                    ['task/target_x', 'task/target_y'])], state1[layout.columns(
                    ['task/target_x', 'task/target_y'])]):
                continue  # the twin moved on to the next waypoint after scoring this step
            values, dones = reward(state1[None, None], np.zeros((1, 1, 2)), state0)
            assert values.shape == dones.shape == (1, 1) and not dones.any()
            assert values[0, 0] == pytest.approx(twin.reward(), abs=1e-9)
            checked += 1
    finally:
        twin.close()
    assert checked >= 20


def test_torch_adapter_shapes_and_values():
    import torch

    spec = load_robot_spec('hand24')
    layout = StateLayout.for_robot(spec, ['valve_angle', 'valve_velocity', 'target_angle',
                                          'angle_error'])
    fn = torch_reward(make_reward('valve', layout))
    states = torch.zeros(3, 5, 7, layout.dim)
    states[..., layout.index['task/valve_angle']] = 0.05
    state0 = torch.zeros(layout.dim)
    rewards, dones = fn(states, torch.zeros(5, 7, 20), state0)
    assert rewards.shape == dones.shape == (3, 5, 7) and rewards.dtype == torch.float32
    assert torch.allclose(rewards, torch.full((3, 5, 7), -0.5 + 1 + 10))  # |e| = 0.05 < 0.1


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError, match='available: valve, reach, waypoints, baoding, figure8'):
        make_reward('juggling', StateLayout(('task/x',)))


def test_unknown_option_lists_the_accepted_ones():
    spec = load_robot_spec('hand24')
    valve_layout = StateLayout.for_robot(spec, VALVE_STATE_NAMES)
    with pytest.raises(ValueError, match="'valve' has no option.*accepted: \\(none\\)"):
        make_reward('valve', valve_layout, period_steps=40.0)
    with pytest.raises(ValueError, match='accepted: period_steps'):
        make_reward('baoding', StateLayout.for_robot(spec, BAODING_STATE_NAMES), drop_z=0.1,
                    period=40.0)


def test_state_layout_columns_and_vector():
    spec = load_robot_spec('roach')
    layout = StateLayout.for_robot(spec, ['x', 'y', 'sin_yaw'])
    # continuous crank angles are not model inputs; their speeds are
    assert layout.names == ('vel/left_legs', 'vel/right_legs', 'task/x', 'task/y', 'task/sin_yaw')
    obs = Observation(0, np.array([100.0, -3.0]), np.array([5.0, 6.0]), ('sin_yaw', 'x', 'y'),
                      np.array([0.3, 1.0, 2.0]))
    np.testing.assert_array_equal(layout.vector(obs, spec.joint_names), [5, 6, 1, 2, 0.3])
    np.testing.assert_array_equal(layout.columns(['task/sin_yaw', 'vel/left_legs']), [4, 0])
    with pytest.raises(KeyError, match='task/z'):
        layout.columns(['task/z'])
    with pytest.raises(KeyError, match="observation lacks \\['task/sin_yaw'\\]"):
        layout.vector(Observation(0, obs.position, obs.velocity, ('x', 'y'), obs.task[1:]),
                      spec.joint_names)
    with pytest.raises(ValueError, match='duplicate'):
        StateLayout(('task/x', 'task/x'))
    with pytest.raises(ValueError, match='must start with'):
        StateLayout(('x',))
    full = StateLayout.for_robot(spec, (), unbounded_positions=True)
    assert full.names[:2] == ('pos/left_legs', 'pos/right_legs')


# Baoding -----------------------------------------------------------------------------------
#: non-default geometry: the planner must follow the options the twin was given
BAODING_OPTIONS = {'period_steps': 40.0, 'center': (0.0, 0.015), 'x_radius': 0.025,
                   'ball1_phase': 0.3, 'ball2_phase': 0.3 - np.pi, 'counter_clockwise': False,
                   'drop_depth': 0.04}


def random_commands(spec, rng, scale):
    """A seeded command near the default pose, ``scale`` supervisor steps of noise."""
    command = spec.default_command + rng.normal(0.0, scale, len(spec.command_names)) * (
        spec.limits_array('max_step'))
    return np.clip(command, spec.limits_array('lower'), spec.limits_array('upper'))


def baoding_episode(options, warmup, horizon, scale, seed):
    """
    Hold a Baoding twin at its default pose ``warmup`` steps, then record ``horizon`` steps.

    The recorded steps send seeded commands with ``scale`` supervisor steps of noise.

    Returns:
        layout, state0 (nx,) after the warm-up, states (horizon, nx), the twin's rewards,
        dones and step counts (horizon,) for those states, and the twin's drop height.
    """
    spec = load_robot_spec('hand24')
    twin = make_twin('hand24', task='baoding', **options)
    twin.reset(seed)
    rng = np.random.default_rng(seed)
    layout = StateLayout.for_robot(spec, twin.task_state()[0])
    states, rewards, dones, steps = [], [], [], []
    try:
        for _ in range(warmup):
            twin.step()
        state0 = layout.vector(observe(twin, spec), spec.joint_names)
        for _ in range(horizon):
            twin.apply_command(random_commands(spec, rng, scale))
            twin.step()
            states.append(layout.vector(observe(twin, spec), spec.joint_names))
            rewards.append(twin.reward())
            dones.append(twin.done())
            steps.append(twin.steps)
        drop_z = twin.drop_z
    finally:
        twin.close()
    return (layout, state0, np.array(states), np.array(rewards), np.array(dones),
            np.array(steps), drop_z)


@pytest.mark.parametrize('options', [{}, BAODING_OPTIONS], ids=['default', 'options'])
def test_baoding_planner_reward_is_the_twins_reward_over_a_horizon(options):
    """
    A whole horizon scored from the state before it equals what the twin published.

    Starting 45 steps in, 30 steps cross the end of a lap (the twin's step count passes
    period_steps), and the noise drops a ball 11 steps into the horizon, so the wrist,
    distance and drop terms and the done flags are all compared.
    """
    import torch

    layout, state0, states, rewards, dones, steps, drop_z = baoding_episode(
        options, warmup=45, horizon=30, scale=1.0, seed=0)
    assert steps[0] == 46 and steps[-1] == 75
    assert dones.any() and not dones[:10].any()
    wrist = states[:, layout.index['pos/WRJ1']]
    assert (wrist > 0.15).any() and (wrist <= 0.15).any()
    assert baoding_drop_z(BaodingTask(**options)) == drop_z
    reward = make_reward('baoding', layout, **options)
    actions = np.zeros((2, 30, 20))
    values, flags = reward(np.stack([states, states]), actions, state0)
    assert values.shape == flags.shape == (2, 30)
    np.testing.assert_allclose(values, np.stack([rewards, rewards]), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(flags, np.stack([dones, dones]))
    # the planners' float32 path, (E, N, H, nx)
    fn = torch_reward(reward)
    values32, flags32 = fn(torch.from_numpy(states[None, None]).float(),
                           torch.zeros(1, 30, 20), torch.from_numpy(state0).float())
    np.testing.assert_allclose(values32[0, 0].numpy(), rewards, rtol=0, atol=2e-4)
    np.testing.assert_array_equal(flags32[0, 0].numpy(), dones)


@pytest.mark.parametrize('options', [{}, BAODING_OPTIONS], ids=['default', 'options'])
def test_baoding_targets_move_with_the_twins(options):
    """
    Balls put exactly on the targets the twin shows h steps later score 0 at step h.

    The predicted target columns are zeroed: the reward must take the targets from the
    phase in state0 and the task's motion, not from the prediction. The same balls one step
    late score below zero, so a stale target could not pass.
    """
    layout, state0, states, rewards, dones, steps, drop_z = baoding_episode(
        options, warmup=50, horizon=20, scale=0.0, seed=2)
    assert not dones.any()
    task = BaodingTask(**options)
    shown = states[:, layout.columns(['task/target1_x', 'task/target1_y',
                                      'task/target2_x', 'task/target2_y'])]
    expected1, expected2 = task.targets(np.arange(51, 71))  # the twin's own formula
    np.testing.assert_allclose(shown, np.hstack([expected1, expected2]), atol=1e-12)
    on_target = states.copy()
    on_target[:, layout.columns(['task/ball1_x', 'task/ball1_y'])] = shown[:, :2]
    on_target[:, layout.columns(['task/ball2_x', 'task/ball2_y'])] = shown[:, 2:]
    on_target[:, layout.columns(['task/ball1_z', 'task/ball2_z'])] = drop_z + 0.05
    on_target[:, layout.columns(['pos/WRJ1'])] = 0.0
    late = on_target.copy()
    late[1:, layout.columns(['task/ball1_x', 'task/ball1_y', 'task/ball2_x',
                             'task/ball2_y'])] = shown[:-1]
    for predicted in (on_target, late):
        predicted[:, layout.columns(['task/target1_x', 'task/target1_y', 'task/target2_x',
                                     'task/target2_y'])] = 0.0
    reward = make_reward('baoding', layout, **options)
    values, flags = reward(np.stack([on_target, late]), np.zeros((2, 20, 20)), state0)
    np.testing.assert_allclose(values[0], 0.0, atol=1e-12)
    # one step of travel: 2 * 5 * |chord| on the ellipse, a few mm per ball
    assert np.all(values[1, 1:] < -0.02), values[1]
    assert not flags.any()


def test_baoding_ball_below_drop_height_is_done_and_costs_every_later_step():
    spec = load_robot_spec('hand24')
    layout = StateLayout.for_robot(spec, BAODING_STATE_NAMES)
    drop_z = 0.15
    reward = make_reward('baoding', layout, drop_z=drop_z)
    state0 = np.zeros(layout.dim)
    state0[layout.columns(['task/target1_x', 'task/target1_y'])] = BaodingTask().targets(0)[0]
    state0[layout.columns(['task/target2_x', 'task/target2_y'])] = BaodingTask().targets(0)[1]
    state0[layout.columns(['task/ball1_z', 'task/ball2_z'])] = 0.2
    states = np.tile(state0, (3, 5, 1))  # (N=3, H=5, nx)
    z1, z2 = layout.index['task/ball1_z'], layout.index['task/ball2_z']
    states[0, 2, z1] = drop_z - 1e-3        # ball 1 dropped at step 2 only
    states[1, :, z2] = drop_z + 1e-3        # ball 2 just above the drop height
    states[2, 4, z2] = drop_z - 1e-3        # ball 2 dropped at the last step
    values, dones = reward(states, np.zeros((3, 5, 20)), state0)
    np.testing.assert_array_equal(dones, [[0, 0, 1, 0, 0], [0] * 5, [0, 0, 0, 0, 1]])
    assert values[0, 2] < -500.0 and values[1].max() > -1.0
    # the planner's score: from the first done step on, every step costs done_penalty
    import torch

    returns = score(torch.from_numpy(states[None]).float(), torch.zeros(3, 5, 20),
                    torch.from_numpy(state0).float(), torch_reward(reward), done_penalty=500.0)
    np.testing.assert_allclose(returns.numpy(), [values[0, :2].sum() - 3 * 500.0,
                                                 values[1].sum(),
                                                 values[2, :4].sum() - 500.0], rtol=1e-6)


# Figure 8 ----------------------------------------------------------------------------------
#: non-default track: the planner must follow the options the twin was given
FIGURE8_OPTIONS = {'size': 0.3, 'period_s': 12.0}


def figure8_episode(options, warmup, horizon, seed):
    """
    Drive a figure-8 roach twin with seeded random leg speeds; record after ``warmup`` steps.

    Returns:
        layout, state0 (nx,) after the warm-up, states (horizon, nx) and the twin's
        rewards (horizon,) for them.
    """
    spec = load_robot_spec('roach')
    twin = make_twin('roach', task='figure8', seed=seed, spec=spec, **options)
    rng = np.random.default_rng(seed)
    layout = StateLayout.for_robot(spec, twin.task_state()[0])
    limit = spec.limits_array('velocity')
    states, rewards = [], []
    try:
        for k in range(warmup + horizon):
            if k == warmup:
                state0 = layout.vector(observe(twin, spec), spec.joint_names)
            twin.apply_command(rng.uniform(0.1, 0.7, 2) * limit)   # forward, turning
            twin.step()
            if k >= warmup:
                states.append(layout.vector(observe(twin, spec), spec.joint_names))
                rewards.append(twin.reward())
    finally:
        twin.close()
    return layout, state0, np.array(states), np.array(rewards)


@pytest.mark.parametrize('options', [{}, FIGURE8_OPTIONS], ids=['default', 'options'])
def test_figure8_planner_reward_is_the_twins_reward_over_a_horizon(options):
    """
    A whole horizon scored from the state before it equals what the twin published.

    The predicted ``episode_time`` column is zeroed: the reward's clock must come from
    state0 and the control period. With non-default options the default track scores the
    same states differently, so the options must reach the reward.
    """
    import torch

    layout, state0, states, rewards = figure8_episode(options, warmup=20, horizon=25, seed=1)
    assert state0[layout.index['task/episode_time']] == pytest.approx(2.0)
    assert np.ptp(rewards) > 0.01                 # the robot and the reference both move
    predicted = states.copy()
    predicted[:, layout.index['task/episode_time']] = 0.0
    reward = make_reward('figure8', layout, **options)
    values, dones = reward(np.stack([predicted, predicted]), np.zeros((2, 25, 2)), state0)
    assert values.shape == dones.shape == (2, 25) and not dones.any()
    np.testing.assert_allclose(values, np.stack([rewards, rewards]), rtol=0, atol=1e-9)
    values32, dones32 = torch_reward(reward)(torch.from_numpy(predicted[None, None]).float(),
                                             torch.zeros(1, 25, 2),
                                             torch.from_numpy(state0).float())
    np.testing.assert_allclose(values32[0, 0].numpy(), rewards, rtol=0, atol=1e-5)
    assert not dones32.any()
    if options:
        default, _ = make_reward('figure8', layout)(states, np.zeros((25, 2)), state0)
        assert np.max(np.abs(default - rewards)) > 0.05


def test_figure8_reward_advances_the_reference_by_dt_per_predicted_step():
    layout = StateLayout.for_robot(load_robot_spec('roach'), ['x', 'y', 'episode_time'])
    size, period, dt, t0 = 0.4, 10.0, 0.25, 3.0
    state0 = np.zeros(layout.dim)
    state0[layout.index['task/episode_time']] = t0
    times = t0 + dt * np.arange(1, 7)
    on_track = np.zeros((2, 6, layout.dim))
    on_track[0, :, layout.columns(['task/x', 'task/y'])] = figure8_reference(
        times, size, period).T
    on_track[1, :, layout.columns(['task/x', 'task/y'])] = figure8_reference(
        times - dt, size, period).T                # one step late
    reward = make_reward('figure8', layout, size=size, period_s=period, dt=dt)
    values, dones = reward(on_track, np.zeros((2, 6, 2)), state0)
    np.testing.assert_allclose(values[0], 0.0, atol=1e-12)
    late = -np.linalg.norm(figure8_reference(times - dt, size, period)
                           - figure8_reference(times, size, period), axis=-1)
    np.testing.assert_allclose(values[1], late, atol=1e-12)
    assert np.all(late < -0.01) and not dones.any()
    # default dt: the roach's 10 Hz control period
    values, _ = make_reward('figure8', layout, size=size, period_s=period)(
        on_track, np.zeros((2, 6, 2)), state0)
    assert np.all(values[0] < -0.01)


def test_figure8_options_are_validated():
    layout = StateLayout.for_robot(load_robot_spec('roach'), ['x', 'y', 'episode_time'])
    with pytest.raises(ValueError, match="no option.*\\['speed'\\].*accepted: size, period_s, dt"):
        make_reward('figure8', layout, speed=1.0)
    with pytest.raises(ValueError, match='size must be > 0'):
        make_reward('figure8', layout, size=0.0)
    with pytest.raises(ValueError, match='dt must be > 0'):
        make_reward('figure8', layout, dt=0.0)
    with pytest.raises(KeyError, match='task/episode_time'):
        make_reward('figure8', StateLayout(('task/x', 'task/y')))
