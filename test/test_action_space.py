"""Action spaces (core/action_space.py): absolute targets and per-step deltas."""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.core.action_space import ActionScaler, DeltaActionScaler
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.safety.clamp_rules import clamp_step, clamp_velocity
from dexmpc_ros.safety.limits import CommandLimits, MeasuredState


@pytest.mark.parametrize('robot', ['widowx', 'hand24', 'roach'])
def test_delta_actions_within_one_are_exactly_what_the_supervisor_passes(robot):
    spec = load_robot_spec(robot)
    delta = DeltaActionScaler(spec)
    limits = CommandLimits.from_spec(spec)
    rng = np.random.default_rng(0)
    m = len(spec.command_names)
    for _ in range(200):
        if spec.command_interface == 'position':
            q = rng.uniform(spec.limits_array('lower'), spec.limits_array('upper'))
            state = MeasuredState(q, np.zeros(m), 0)
        else:
            q = rng.uniform(-40.0, 40.0, m)
            state = MeasuredState(np.zeros(m), q, 0)
        action = rng.uniform(-3.0, 3.0, m)
        command = delta.to_command(action, q)
        # what the supervisor's step and velocity rules would make of the raw target
        raw = q + action * delta.step
        clamped = clamp_velocity(clamp_step(raw, limits, state).values, limits, state).values
        np.testing.assert_allclose(command, np.clip(clamped, delta.low, delta.high),
                                   atol=1e-12)
        inside = np.clip(action, -1.0, 1.0)
        np.testing.assert_allclose(delta.to_action(delta.to_command(inside, q), q)[
            (command > delta.low) & (command < delta.high)],
            inside[(command > delta.low) & (command < delta.high)], atol=1e-9)


def test_absolute_scaler_unclipped_inverse():
    spec = load_robot_spec('hand24')
    scaler = ActionScaler(spec)
    action = np.linspace(-1.5, 1.5, len(spec.command_names))
    np.testing.assert_allclose(scaler.to_action(scaler.to_command_unclipped(action)), action)
    assert np.all(scaler.to_command(action) <= spec.limits_array('upper'))
