"""Robot specs: every shipped YAML loads and is consistent; bad YAML names file and key."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import ROBOTS

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import (
    BodyRateLimit,
    JointLimit,
    WorkspaceBox,
    available_robots,
    load_robot_spec,
)
from dexmpc_ros.safety.limits import CommandLimits

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


# The safety: section -----------------------------------------------------------------------
SAFE = GOOD.replace('actuated: false}', 'actuated: true}') + """\
safety:
  workspace: {kinematics: wx250s, lower: [-0.5, -0.5, 0.0], upper: [0.5, 0.5, 1]}
  body_rate: {roll_pitch: 6, yaw: 3.0, left: j1, right: j2}
"""


def test_shipped_safety_sections():
    widowx = load_robot_spec('widowx')
    assert widowx.workspace == WorkspaceBox('wx250s', (-0.25, -0.65, 0.01), (0.75, 0.65, 0.80),
                                            margin=0.0, brake_time=0.1)
    assert widowx.body_rate is None
    roach = load_robot_spec('roach')
    assert roach.body_rate == BodyRateLimit(6.0, 3.0, 'left_legs', 'right_legs')
    assert roach.workspace is None
    hand = load_robot_spec('hand24')
    assert hand.workspace is None and hand.body_rate is None


def test_parse_safety_section(tmp_path):
    path = tmp_path / 'r.yaml'
    path.write_text(SAFE)
    spec = load_robot_spec(path)
    assert spec.workspace == WorkspaceBox('wx250s', (-0.5, -0.5, 0.0), (0.5, 0.5, 1.0))
    assert spec.body_rate == BodyRateLimit(6.0, 3.0, 'j1', 'j2')
    assert isinstance(spec.body_rate.roll_pitch, float)
    path.write_text(GOOD)
    spec = load_robot_spec(path)
    assert spec.workspace is None and spec.body_rate is None


@pytest.mark.parametrize('mutation, key', [
    (('safety:\n', 'safety:\n  speed: {max: 1}\n'), "safety: unknown keys ['speed']"),
    (('kinematics: wx250s', 'kinematic: wx250s'),
     "safety.workspace: unknown keys ['kinematic'] (known: kinematics, lower, upper, margin, "
     "brake_time)"),
    (('upper: [0.5, 0.5, 1]', 'upper: [0.5, 0.5, 1], margin: 0.6'), 'workspace margin must be'),
    (('upper: [0.5, 0.5, 1]', 'upper: [0.5, 0.5, 1], brake_time: -1'),
     'workspace brake_time must be finite and >= 0'),
    (('yaw: 3.0', 'yaw: 3.0, margin: 1'), "safety.body_rate: unknown keys ['margin']"),
    (('lower: [-0.5, -0.5, 0.0]', 'lower: [-0.5, a, 0.0]'), 'safety.workspace.lower[1]: expected'),
    (('lower: [-0.5, -0.5, 0.0]', 'lower: [-0.5, true, 0.0]'),
     'safety.workspace.lower[1]: expected float, got a boolean'),
    (('right: j2', 'right: j1'), "safety.body_rate: left and right are both 'j1'"),
    (('workspace: {', 'workspace: 3\n#'), 'safety.workspace: expected dict'),
    (('upper: [0.5, 0.5, 1]', 'upper: [0.5, 0.5]'), 'workspace lower/upper need 3 values'),
    (('lower: [-0.5, -0.5, 0.0]', 'lower: [-0.5, -0.5, 1.0]'), 'workspace needs finite lower'),
    (('lower: [-0.5, -0.5, 0.0]', 'lower: [-0.5, 0.6, 0.0]'), 'workspace needs finite lower'),
    (('upper: [0.5, 0.5, 1]', 'upper: 1.0'), 'safety.workspace.upper: expected list'),
    (('roll_pitch: 6', 'roll_pitch: 0'), 'body_rate.roll_pitch must be finite and > 0'),
    (('yaw: 3.0', 'yaw: -3.0'), 'body_rate.yaw must be finite and > 0'),
    (('yaw: 3.0', 'yaw: .inf'), 'body_rate.yaw must be finite and > 0'),
    (('yaw: 3.0, ', ''), 'safety.body_rate.yaw: missing required key'),
    (('right: j2', 'right: j9'), "body_rate joint 'j9' is not an actuated joint"),
])
def test_malformed_safety_section_names_file_and_key(tmp_path, mutation, key):
    path = tmp_path / 'bad.yaml'
    assert mutation[0] in SAFE
    path.write_text(SAFE.replace(*mutation, 1))
    with pytest.raises(ConfigError) as info:
        load_robot_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_unknown_workspace_kinematics_names_file_and_key(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text(SAFE.replace('kinematics: wx250s', 'kinematics: ur5e'))
    spec = load_robot_spec(path)  # names are checked where the kinematics are looked up
    with pytest.raises(ConfigError) as info:
        CommandLimits.from_spec(spec)
    assert f"{path}: safety.workspace.kinematics: 'ur5e' unknown; available: wx250s" in \
        str(info.value)


def test_safety_section_must_be_a_mapping(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text(GOOD + 'safety: [workspace]\n')
    with pytest.raises(ConfigError) as info:
        load_robot_spec(path)
    assert f'{path}: safety: expected dict' in str(info.value)


def test_body_rate_joint_must_be_actuated(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text(SAFE.replace('actuated: true}', 'actuated: false}'))  # j2 passive
    with pytest.raises(ConfigError) as info:
        load_robot_spec(path)
    assert str(path) in str(info.value)
    assert "body_rate joint 'j2' is not an actuated joint" in str(info.value)
