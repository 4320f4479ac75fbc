"""
One chain per robot: robot YAML joints == URDF ``<ros2_control>`` joints == controllers YAML.

``config/controllers/<robot>_controllers.yaml`` (hardware.md §6.3) must command exactly
the spec's actuated joints, in command order, through the spec's command interface, and
every interface a controller claims must be declared for that joint in the URDF. Also the
udev rules give the ports the robot YAMLs name.
"""

from __future__ import annotations

import pytest
from conftest import REPO, ROBOTS, urdf_root

from dexmpc_ros.core.robot_spec import config_dir, load_robot_spec
from dexmpc_ros.core.yaml_io import load_yaml_mapping

BROADCASTER = 'joint_state_broadcaster/JointStateBroadcaster'
COMMAND_TYPES = ('forward_command_controller/ForwardCommandController',
                 'joint_trajectory_controller/JointTrajectoryController')


def controllers_of(robot: str) -> dict:
    return load_yaml_mapping(config_dir() / 'controllers' / f'{robot}_controllers.yaml')


def urdf_interfaces(robot: str) -> dict[str, tuple[set[str], set[str]]]:
    """URDF joint -> (command interfaces, state interfaces) of its <ros2_control> tag."""
    control = urdf_root(load_robot_spec(robot)).find('ros2_control')
    return {j.get('name'): ({c.get('name') for c in j.findall('command_interface')},
                            {s.get('name') for s in j.findall('state_interface')})
            for j in control.findall('joint')}


@pytest.mark.parametrize('robot', ROBOTS)
def test_urdf_ros2_control_joints_are_the_spec_joints(robot):
    spec = load_robot_spec(robot)
    interfaces = urdf_interfaces(robot)
    assert list(interfaces) == spec.joint_names
    commanded = [name for name, (commands, _) in interfaces.items() if commands]
    assert commanded == spec.command_names


@pytest.mark.parametrize('robot', ROBOTS)
def test_controller_manager_declares_every_controller(robot):
    spec = load_robot_spec(robot)
    data = controllers_of(robot)
    manager = data['controller_manager']['ros__parameters']
    assert isinstance(manager['update_rate'], int)
    assert manager['update_rate'] >= spec.control_rate_hz        # Hz
    declared = {k: v['type'] for k, v in manager.items() if isinstance(v, dict)}
    assert declared.get('joint_state_broadcaster') == BROADCASTER
    configured = set(data) - {'controller_manager'}
    command_controllers = {k for k, t in declared.items() if t != BROADCASTER}
    assert command_controllers and configured == command_controllers
    assert all(t in COMMAND_TYPES for t in declared.values() if t != BROADCASTER)


@pytest.mark.parametrize('robot', ROBOTS)
def test_command_controllers_match_spec_and_urdf(robot):
    spec = load_robot_spec(robot)
    interfaces = urdf_interfaces(robot)
    data = controllers_of(robot)
    manager = data['controller_manager']['ros__parameters']
    for name, params in ((k, v['ros__parameters']) for k, v in data.items()
                         if k != 'controller_manager'):
        assert params['joints'] == spec.command_names, name
        if manager[name]['type'].startswith('forward_command_controller'):
            claimed, states = [params['interface_name']], []
        else:
            claimed, states = params['command_interfaces'], params['state_interfaces']
            assert params['allow_partial_joints_goal'] is False, name
        assert claimed == [spec.command_interface], name
        for joint in params['joints']:
            commands, available = interfaces[joint]
            assert set(claimed) <= commands, (name, joint)
            assert set(states) <= available, (name, joint)


def test_controllers_exist_for_every_robot_and_nothing_else():
    files = sorted(p.name for p in (config_dir() / 'controllers').glob('*.yaml'))
    assert files == sorted(f'{robot}_controllers.yaml' for robot in ROBOTS)


def test_udev_rules_name_the_ports_and_set_the_latency_timer():
    rules = (REPO / 'config' / 'udev' / '99-dexmpc.rules').read_text()
    lines = [line for line in rules.splitlines() if line and not line.startswith('#')]
    port = load_robot_spec('widowx').driver['port']                 # /dev/ttyDXL
    u2d2 = [line for line in lines if '"0403"' in line and '"6014"' in line]
    assert any(f'SYMLINK+="{port.removeprefix("/dev/")}"' in line for line in u2d2)
    assert any('ATTR{latency_timer}="1"' in line and 'ftdi_sio' in line for line in u2d2)
    assert any('"8086"' in line and '"0b07"' in line for line in lines)     # D435
    assert any('SYMLINK+="ttyXBEE"' in line for line in lines)
