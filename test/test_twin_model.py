"""Ground-truth planner model (control/twin_model.py): rollouts equal live stepping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexmpc_ros.control.twin_model import TwinModel
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.robots.registry import make_twin


@pytest.mark.parametrize('robot', ['widowx', 'hand24', 'roach'])
def test_rollout_matches_live_steps_and_leaves_the_twin_untouched(robot):
    spec = load_robot_spec(robot)
    twin = make_twin(robot)
    twin.reset(1)
    layout = StateLayout.for_robot(spec, twin.task_state()[0])
    model = TwinModel(twin, spec, layout)
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (3, 4, len(spec.command_names)))
    try:
        for _ in range(3):  # move off the start pose first
            twin.apply_command(model.command(rng.uniform(-1, 1, len(spec.command_names))))
            twin.step()
        state0 = model.capture()
        predicted = model.rollout(torch.from_numpy(state0), torch.from_numpy(actions))
        assert predicted.shape == (1, 3, 4, layout.dim) and predicted.dtype == torch.float32
        np.testing.assert_array_equal(model.state(), state0)  # restored after the rollout
        for k in range(4):  # live, the same actions of sample 2
            twin.apply_command(model.command(actions[2, k]))
            twin.step()
            np.testing.assert_allclose(predicted[0, 2, k].numpy(), model.state(), rtol=1e-5,
                                       atol=1e-5)
    finally:
        twin.close()


def test_supervised_commands_stay_within_one_step_of_the_measured_joints():
    spec = load_robot_spec('hand24')
    twin = make_twin('hand24')
    twin.reset(0)
    model = TwinModel(twin, spec, StateLayout.for_robot(spec, twin.task_state()[0]))
    q = twin.joints().position[spec.actuated_index]
    command = model.command(np.ones(len(spec.command_names)))
    assert np.all(np.abs(command - q) <= spec.limits_array('max_step') + 1e-12)
    assert np.all(command <= spec.limits_array('upper'))
    free = TwinModel(twin, spec, model.layout, supervised=False)
    np.testing.assert_allclose(free.command(np.ones(len(spec.command_names))),
                               spec.limits_array('upper'))
    twin.close()


def test_mppi_with_ground_truth_dynamics_turns_the_valve():
    """PDDM's sanity check (papers.md §7.6): the planner solves the task on the true dynamics."""
    from dexmpc_ros.control.planners.mppi import MPPIConfig, MPPIPlanner
    from dexmpc_ros.control.task_rewards import make_reward, torch_reward

    torch.set_num_threads(1)
    spec = load_robot_spec('hand24')
    twin = make_twin('hand24', task='valve')
    twin.reset(101)  # target +0.76 rad
    layout = StateLayout.for_robot(spec, twin.task_state()[0])
    model = TwinModel(twin, spec, layout)
    reward = torch_reward(make_reward('valve', layout))
    # PDDM dclaw_turn settings (kappa 0.5, beta 0.7, H 7) with 64 instead of 700 samples
    planner = MPPIPlanner(len(spec.command_names),
                          MPPIConfig(horizon=7, num_samples=64, kappa=0.5, beta=0.7, seed=1))
    start_error = abs(twin.task_state()[1][3])
    try:
        for _ in range(40):  # PDDM's 40-step valve episode
            action = planner.plan(torch.from_numpy(model.capture()).float(), model, reward)
            twin.apply_command(model.command(action))
            twin.step()
        final_error = abs(twin.task_state()[1][3])
    finally:
        twin.close()
    assert start_error > 0.5
    assert final_error < 0.25, final_error  # PDDM's success threshold
