"""Robot specs: every shipped YAML loads and is consistent; bad YAML names file and key."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ROBOTS

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import JointLimit, available_robots, load_robot_spec

GOOD = """
name: r
command_interface: position
control_rate_hz: 10
joints:
  - {name: j1, lower: -1, upper: 1, velocity: 1, max_step: 0.1, effort: 1}
  - {name: j2, lower: 0, upper: 2, velocity: 1, max_step: 0.1, effort: 1, actuated: false}
default_pose: {j1: 0.5}
"""


def test_shipped_robots_are_the_three():
    assert set(ROBOTS) <= set(available_robots())


@pytest.mark.parametrize('robot', ROBOTS)
def test_shipped_spec_is_consistent(robot):
    spec = load_robot_spec(robot)
    assert spec.name == robot
    assert len(spec.default_pose) == len(spec.joints)
    for joint, q in zip(spec.joints, spec.default_pose):
        assert joint.lower <= q <= joint.upper, joint.name
    assert spec.default_command.shape == (len(spec.actuated_joints),)


def test_parse_good_yaml_and_derived_views(tmp_path):
    path = tmp_path / 'r.yaml'
    path.write_text(GOOD)
    spec = load_robot_spec(path)
    assert spec.joint_names == ['j1', 'j2']
    assert spec.command_names == ['j1']
    assert spec.default_pose == (0.5, 1.0)      # j2 missing -> mid-range
    assert spec.period_s == pytest.approx(0.1)
    np.testing.assert_array_equal(spec.actuated_index, [0])
    np.testing.assert_array_equal(spec.default_command, [0.5])
    np.testing.assert_array_equal(spec.limits_array('upper', actuated_only=False), [1, 2])


@pytest.mark.parametrize('mutation, key', [
    (('control_rate_hz: 10', 'control_rate_hz: fast'), 'control_rate_hz'),
    (('control_rate_hz: 10', ''), 'control_rate_hz'),
    (('lower: -1, ', ''), 'joints[0].lower'),
    (('velocity: 1, max_step: 0.1, effort: 1}', 'velocity: -1, max_step: 0.1, effort: 1}'),
     'joints[0]'),
    (('command_interface: position', 'command_interface: torque'), 'command_interface'),
    (('{j1: 0.5}', '{j1: 5.0}'), 'default_pose.j1'),
    (('{j1: 0.5}', '{j9: 0.0}'), 'default_pose'),
    (('- {name: j1', '- {name: j1, lower: 0'), "duplicate key 'lower'"),
    (('joints:', 'joints: ['), 'invalid YAML at line'),
])
def test_malformed_yaml_names_file_and_key(tmp_path, mutation, key):
    path = tmp_path / 'bad.yaml'
    path.write_text(GOOD.replace(*mutation, 1))
    with pytest.raises(ConfigError) as info:
        load_robot_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_unknown_robot_lists_available():
    with pytest.raises(ConfigError) as info:
        load_robot_spec('r2d2')
    assert 'r2d2' in str(info.value)
    for robot in ROBOTS:
        assert robot in str(info.value)


def test_joint_limit_validation():
    with pytest.raises(ValueError, match='lower'):
        JointLimit('x', 1.0, 1.0, 1.0, 0.1, 1.0)
    with pytest.raises(ValueError, match='max_step'):
        JointLimit('x', 0.0, 1.0, 1.0, math.inf, 1.0)
