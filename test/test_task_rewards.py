"""Planner rewards (control/task_rewards.py) equal the twins' own rewards; StateLayout."""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.control.task_rewards import make_reward, torch_reward
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import Observation
from dexmpc_ros.robots.twins import make_twin


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
    with pytest.raises(ValueError, match='available: valve, reach, waypoints'):
        make_reward('baoding', StateLayout(('task/x',)))


def test_state_layout_columns_and_vector():
    spec = load_robot_spec('roach')
    layout = StateLayout.for_robot(spec, ['x', 'y', 'yaw'])
    # continuous crank angles are not model inputs; their speeds are
    assert layout.names == ('vel/left_legs', 'vel/right_legs', 'task/x', 'task/y', 'task/yaw')
    obs = Observation(0, np.array([100.0, -3.0]), np.array([5.0, 6.0]), ('yaw', 'x', 'y'),
                      np.array([0.3, 1.0, 2.0]))
    np.testing.assert_array_equal(layout.vector(obs, spec.joint_names), [5, 6, 1, 2, 0.3])
    np.testing.assert_array_equal(layout.columns(['task/yaw', 'vel/left_legs']), [4, 0])
    with pytest.raises(KeyError, match='task/z'):
        layout.columns(['task/z'])
    with pytest.raises(KeyError, match="observation lacks \\['task/yaw'\\]"):
        layout.vector(Observation(0, obs.position, obs.velocity, ('x', 'y'), obs.task[1:]),
                      spec.joint_names)
    with pytest.raises(ValueError, match='duplicate'):
        StateLayout(('task/x', 'task/x'))
    with pytest.raises(ValueError, match='must start with'):
        StateLayout(('x',))
    full = StateLayout.for_robot(spec, (), unbounded_positions=True)
    assert full.names[:2] == ('pos/left_legs', 'pos/right_legs')
