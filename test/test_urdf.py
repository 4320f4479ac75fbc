"""
One contract over every robot: the URDF's ``<ros2_control>`` tag agrees with the robot YAML.

Joint names and order, state interfaces, initial values (the default pose) and the
command interface with its min/max (position limits for position robots, +-velocity
for velocity robots); passive joints are state-only. Robot-specific URDF details
(mimic joints, kinematics) are checked in each twin's own test.
"""

from __future__ import annotations

import pytest
from conftest import ROBOTS, urdf_root

from dexmpc_ros.core.robot_spec import load_robot_spec


def command_range(joint, interface):
    if interface == 'velocity':
        return {'min': -joint.velocity, 'max': joint.velocity}
    return {'min': joint.lower, 'max': joint.upper}


@pytest.mark.parametrize('robot', ROBOTS)
def test_ros2_control_tag_matches_spec(robot):
    spec = load_robot_spec(robot)
    root = urdf_root(spec)
    control = root.find('ros2_control')
    assert control.get('name') == robot and control.get('type') == 'system'
    assert control.find('hardware/plugin').text.strip() == 'mock_components/GenericSystem'
    listed = control.findall('joint')
    assert [j.get('name') for j in listed] == spec.joint_names
    assert set(spec.joint_names) <= {j.get('name') for j in root.findall('joint')}
    for joint, element, default in zip(spec.joints, listed, spec.default_pose):
        states = sorted(s.get('name') for s in element.findall('state_interface'))
        assert states == ['position', 'velocity'], joint.name
        initial = element.find("state_interface[@name='position']/param[@name='initial_value']")
        assert float(initial.text) == default, joint.name
        commands = element.findall('command_interface')
        if not joint.actuated:
            assert commands == [], joint.name
            continue
        assert [c.get('name') for c in commands] == [spec.command_interface], joint.name
        params = {p.get('name'): float(p.text) for p in commands[0].findall('param')}
        assert params == command_range(joint, spec.command_interface), joint.name
