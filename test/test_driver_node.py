"""
Driver node over real DDS (the node its own process; this test is the lifecycle manager,
the safety supervisor and a diagnostics viewer), and the driver registry.

The node runs an in-memory FakeArmDriver (test/fake_arm_driver.py) loaded through the
registry's ``module:Class`` hook. That double is acceptable here only because the node is
generic over base.Driver and the real protocol drivers (WidowX, roach) are tested end to
end elsewhere against wire-protocol emulators on pseudo-terminals.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from sensor_msgs.msg import Imu, JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexmpc_ros.core.errors import ConfigError  # noqa: E402
from dexmpc_ros.core.message_fields import command_values  # noqa: E402
from dexmpc_ros.core.robot_spec import load_robot_spec, parse_robot_spec  # noqa: E402
from dexmpc_ros.robots.driver import PortMissingError  # noqa: E402
from dexmpc_ros.robots.driver_registry import make_driver  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from node_process import start_node as start_node_process, stop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEST_DIR = Path(__file__).resolve().parent
FAKE = 'fake_arm_driver:FakeArmDriver'
#: How long a wait for the node's next step may take on a loaded machine: a timeout for no
#: progress at all, not a bound (the node, the emulated bus and this probe share 2 cores).
WAIT_S = 60.0

ARM_YAML = """\
name: toyarm
command_interface: position
control_rate_hz: 20.0
default_pose: {shoulder: 0.0, finger: 0.02, elbow: 0.5}
joints:
  - {name: shoulder, lower: -1.0, upper: 1.0, velocity: 4.0, max_step: 0.1, effort: 5.0}
  - {name: finger, lower: 0.0, upper: 0.04, velocity: 1.0, max_step: 0.01,
     effort: 5.0, actuated: false}
  - {name: elbow, lower: -2.0, upper: 2.0, velocity: 1.0, max_step: 0.2, effort: 5.0}
driver:
  port: /dev/ttyFAKE
"""
JOINTS, COMMANDED = ['shoulder', 'finger', 'elbow'], ['shoulder', 'elbow']


def start_node(tmp_path: Path, ros_env: dict, **params) -> tuple[subprocess.Popen, Path]:
    robot = tmp_path / 'robot.yaml'
    robot.write_text(ARM_YAML)
    params = {'robot': str(robot), 'driver': FAKE, **params}
    return start_node_process('dexmpc_ros.ros.driver_node', tmp_path, ros_env, params,
                              'driver.log', extra_paths=[str(TEST_DIR)])


class Manager(GraphProbe):
    """Lifecycle manager + supervisor: change_state, ~/recover, command; records outputs."""

    def __init__(self, domain: int) -> None:
        super().__init__(domain, {'joint_states': JointState, 'diagnostics': DiagnosticArray,
                                  'safety/estop': Bool, 'imu': Imu}, name='driver_test')
        self.pub_command = self.node.create_publisher(JointTrajectory, 'command', 10)
        self.change = self.node.create_client(ChangeState, '/driver/change_state')
        self.get_state = self.node.create_client(GetState, '/driver/get_state')
        self.recover_client = self.node.create_client(Trigger, '/driver/recover')

    def _call(self, client, request, what: str):
        self.spin_until(client.service_is_ready, WAIT_S, what)
        future = client.call_async(request)
        self.spin_until(future.done, WAIT_S, f'{what} response')
        return future.result()

    def transition(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(
            transition=Transition(id=transition_id)), 'change_state').success

    def state(self) -> str:
        return self._call(self.get_state, GetState.Request(), 'get_state').current_state.label

    def recover(self) -> Trigger.Response:
        return self._call(self.recover_client, Trigger.Request(), '~/recover')

    def send(self, values, names=COMMANDED, age_s: float = 0.0) -> None:
        stamp = self.node.get_clock().now().nanoseconds - int(age_s * 1e9)
        self.pub_command.publish(convert.command_msg(stamp, names, np.asarray(values),
                                                     'position'))

    def latest_position(self) -> np.ndarray | None:
        if not self.received['joint_states']:
            return None
        msg = self.received['joint_states'][-1][1]
        assert list(msg.name) == JOINTS
        return np.asarray(msg.position)

    def wait_position(self, expected, what: str) -> None:
        def reached() -> bool:
            position = self.latest_position()
            return position is not None and np.allclose(position, expected)
        self.spin_until(reached, WAIT_S, what)

    def statuses(self) -> list[DiagnosticStatus]:
        return [s for _, m in self.received['diagnostics'] for s in m.status
                if s.name == 'driver']

    def wait_diag(self, check, what: str) -> DiagnosticStatus:
        def found() -> bool:
            return any(check(s) for s in self.statuses())
        self.spin_until(found, WAIT_S, what)
        return next(s for s in self.statuses() if check(s))


def events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_lifecycle_commands_fault_hold_and_recover(tmp_path, ros_env, ros_domain):
    events_file, fault_file = tmp_path / 'events.txt', tmp_path / 'fault.txt'
    options = yaml.safe_dump({'events_file': str(events_file), 'fault_file': str(fault_file)},
                             default_flow_style=True)
    proc, log = start_node(tmp_path, ros_env, autostart=False, driver_options=options)
    probe = Manager(ros_domain)
    try:
        probe.spin_until(lambda: proc.poll() is not None or probe.get_state.service_is_ready(),
                         WAIT_S, 'the driver node')
        assert proc.poll() is None, log.read_text()
        # Unconfigured: nothing opened, nothing published.
        assert probe.state() == 'unconfigured', log.read_text()
        assert events(events_file) == []
        assert probe.transition(Transition.TRANSITION_CONFIGURE)
        assert probe.state() == 'inactive' and events(events_file) == ['connect']
        # Inactive: a command is ignored (counted), no state is published.
        probe.spin_until(lambda: probe.pub_command.get_subscription_count() > 0, WAIT_S,
                         'command subscription')
        probe.send([0.9, 0.9])
        probe.wait_diag(lambda s: convert.diagnostic_values(s)['commands_inactive'] == '1',
                        'commands_inactive counted')
        assert probe.received['joint_states'] == []

        assert probe.transition(Transition.TRANSITION_ACTIVATE)
        assert events(events_file) == ['connect', 'enable']
        probe.wait_position([0.0, 0.02, 0.5], 'joint_states at the default pose')
        status = probe.wait_diag(lambda s: s.level == DiagnosticStatus.OK, 'diagnostics OK')
        values = convert.diagnostic_values(status)
        assert values['temperature_shoulder_degC'] == '36.5'

        probe.send([0.3, -0.4])
        probe.wait_position([0.3, 0.02, -0.4], 'the command applied')
        # Malformed (a joint the arm lacks) and stale (2 s old) commands change nothing;
        # counted. (Another order of the right joints is well-formed: safety's names rule.)
        probe.send([0.7, 0.7], names=['shoulder', 'wrist'])
        probe.send([0.7, 0.7], age_s=2.0)
        probe.wait_diag(lambda s: convert.diagnostic_values(s)['commands_malformed'] == '1'
                        and convert.diagnostic_values(s)['commands_stale'] == '1',
                        'malformed and stale commands counted')
        assert np.allclose(probe.latest_position(), [0.3, 0.02, -0.4])
        assert events(events_file)[2:] == ['write 0.300 -0.400']

        # A hardware fault: ERROR naming it, one e-stop request, then commands are held.
        # whole at once (temp file + rename): the node reads it from another process
        staged = tmp_path / 'fault.tmp'
        staged.write_text('servo 2 (shoulder): Overheating error')
        staged.rename(fault_file)
        status = probe.wait_diag(lambda s: s.level == DiagnosticStatus.ERROR, 'fault diag')
        assert 'Overheating' in status.message
        probe.spin_until(lambda: probe.received['safety/estop'], WAIT_S, 'safety/estop')
        probe.send([0.1, 0.1])
        probe.wait_diag(lambda s: convert.diagnostic_values(s)['commands_held'] == '1',
                        'held command counted')
        assert [m.data for _, m in probe.received['safety/estop']] == [True]
        assert not any(e.startswith('write 0.100') for e in events(events_file))
        refused = probe.recover()
        assert not refused.success and 'Overheating' in refused.message

        fault_file.unlink()
        answer = probe.recover()
        assert answer.success, answer.message
        probe.send([0.1, 0.1])
        probe.wait_position([0.1, 0.02, 0.1], 'commands obeyed after ~/recover')
        assert [m.data for _, m in probe.received['safety/estop']] == [True]

        assert probe.transition(Transition.TRANSITION_DEACTIVATE)
        assert probe.transition(Transition.TRANSITION_CLEANUP)
        assert events(events_file)[-2:] == ['disable', 'disconnect']
        assert probe.state() == 'unconfigured'
    finally:
        probe.close()
        code = stop(proc)
    assert code == 0, log.read_text()


def test_autostart_with_absent_device_exits_with_the_hint(tmp_path, ros_env):
    proc, log = start_node(tmp_path, ros_env, driver_options='{present: false}')
    try:
        code = proc.wait(timeout=20)
    finally:
        stop(proc)
    output = log.read_text()
    assert code != 0, output
    last = output.strip().splitlines()[-1]
    assert 'no Dynamixel bus on /dev/ttyFAKE' in last, output
    assert 'check the U2D2 cable and permissions (dialout group)' in last, output


def test_bad_driver_option_is_a_configuration_error(tmp_path, ros_env):
    proc, log = start_node(tmp_path, ros_env, driver_options='{prot: /dev/x}')
    try:
        code = proc.wait(timeout=20)
    finally:
        stop(proc)
    assert code == 2 and "unknown key 'prot'" in log.read_text(), log.read_text()


# Registry (no ROS) ------------------------------------------------------------------------
def toy_spec():
    return parse_robot_spec(yaml.safe_load(ARM_YAML), 'toy.yaml')


def test_registry_maps_options_onto_the_config_by_field_name():
    sys.path.insert(0, str(TEST_DIR))
    try:
        driver = make_driver(FAKE, toy_spec(), {'port': '/dev/ttyX', 'present': False})
        assert driver.config.port == '/dev/ttyX' and not driver.config.present
        with pytest.raises(ConfigError, match="unknown key 'colour'.*present"):
            make_driver(FAKE, toy_spec(), {'colour': 'red'})
    finally:
        sys.path.remove(str(TEST_DIR))
    with pytest.raises(ConfigError, match="unknown driver 'ur5'.*roach, widowx"):
        make_driver('ur5', toy_spec())


def test_registry_takes_the_robot_yaml_driver_section_as_options(tmp_path):
    spec = load_robot_spec('widowx')
    port = tmp_path / 'ttyDXL'
    options = dict(spec.driver, port=str(port), baud=57600)
    arm = make_driver('widowx', spec, options)
    assert (arm.config.port, arm.config.baudrate) == (str(port), 57600)
    with pytest.raises(ConfigError, match='servo_ids.*edit the robot YAML'):
        make_driver('widowx', spec, dict(spec.driver, servo_ids={'waist': 7}))
    with pytest.raises(ConfigError, match='baudrate'):
        make_driver('widowx', spec, {'baud': 12345})
    with pytest.raises(PortMissingError, match=f'no Dynamixel bus on {port}.*U2D2 cable'):
        arm.connect()
    roach = make_driver('roach', load_robot_spec('roach'), {'port': '/dev/ttyR', 'retries': 0})
    assert roach.config.port == '/dev/ttyR' and roach.config.retries == 0


@contextmanager
def driver_node_running(tmp_path, ros_env, ros_domain, robot: str,
                        driver_options: dict) -> Iterator[tuple]:
    """
    ``robot``'s driver node with ``driver_options``, once it streams and listens.

    Yields (manager probe, alive) once joint_states stream and the node subscribes to
    commands; ``alive()`` asserts the node process is still running (its log otherwise).
    """
    proc = probe = None
    try:
        proc, log = start_node(tmp_path, ros_env, robot=robot, driver=robot,
                               driver_options=yaml.safe_dump(driver_options,
                                                             default_flow_style=True))
        probe = Manager(ros_domain)

        def alive() -> None:
            assert proc.poll() is None, log.read_text()

        def streaming() -> bool:
            alive()
            return bool(probe.received['joint_states']) and \
                probe.pub_command.get_subscription_count() > 0
        probe.spin_until(streaming, WAIT_S, f'{robot} joint_states')
        yield probe, alive
    finally:
        if probe is not None:
            probe.close()
        if proc is not None:
            stop(proc)


@contextmanager
def widowx_node_on_emulated_bus(tmp_path, ros_env, ros_domain, **options) -> Iterator[tuple]:
    """
    The real WidowXDriver (dynamixel_sdk) in a driver node, the emulated bus in this process;
    ``options`` are added to its driver_options.

    Yields (bus, manager probe, alive) as :func:`driver_node_running`.
    """
    from dexmpc_ros.robots.widowx.emulator import widowx_bus_emulator

    bus = widowx_bus_emulator().start()
    try:
        with driver_node_running(tmp_path, ros_env, ros_domain, 'widowx',
                                 {'port': bus.path, **options}) as (probe, alive):
            yield bus, probe, alive
    finally:
        bus.stop()


def test_widowx_driver_through_the_node_on_the_emulated_bus(tmp_path, ros_env, ros_domain):
    """The real WidowXDriver (dynamixel_sdk) in the node, the emulated bus in this process."""
    from dexmpc_ros.wire import dynamixel_protocol as dxl

    spec = load_robot_spec('widowx')
    with widowx_node_on_emulated_bus(tmp_path, ros_env, ros_domain) as (bus, probe, _):
        first = probe.received['joint_states'][-1][1]
        assert list(first.name) == spec.joint_names
        start = np.asarray(first.position)[spec.actuated_index]
        goal = start + np.array([0.05, 0, 0, 0, 0, 0, 0])      # waist +0.05 rad
        index = {n: i for i, n in enumerate(spec.joint_names)}

        def reached() -> bool:
            probe.pub_command.publish(convert.command_msg(
                probe.node.get_clock().now().nanoseconds, spec.command_names, goal,
                'position'))
            probe.spin_for(0.02)       # one command per 20 ms, not one per callback
            position = np.asarray(probe.received['joint_states'][-1][1].position)
            return abs(position[index['waist']] - goal[0]) < 5e-3
        probe.spin_until(reached, WAIT_S, 'the waist at its goal')
        status = probe.wait_diag(lambda s: 'temperature_shoulder' in
                                 convert.diagnostic_values(s), 'servo temperatures')
        assert status.level == DiagnosticStatus.OK, status.message

        bus.set_hardware_error(2, dxl.HardwareError.OVERLOAD)
        status = probe.wait_diag(lambda s: s.level == DiagnosticStatus.ERROR, 'fault diag')
        assert 'servo 2 (shoulder): overload' in status.message
        probe.spin_until(lambda: probe.received['safety/estop'], WAIT_S, 'safety/estop')
        assert [m.data for _, m in probe.received['safety/estop']] == [True]


def test_widowx_node_unplug_and_silent_servo_hold_then_recover(tmp_path, ros_env, ros_domain):
    """Issue 5 through the node: cable pulled, then a servo gone quiet; each held and recovered."""
    spec = load_robot_spec('widowx')
    waist = spec.joint_names.index('waist')
    with widowx_node_on_emulated_bus(tmp_path, ros_env, ros_domain) as (bus, probe, alive):
        start = np.asarray(probe.received['joint_states'][-1][1].position)[spec.actuated_index]

        def command_waist(offset: float) -> bool:
            """Send the start pose with the waist moved by ``offset``; True once it is there."""
            alive()
            goal = start + np.array([offset, 0, 0, 0, 0, 0, 0])
            probe.pub_command.publish(convert.command_msg(
                probe.node.get_clock().now().nanoseconds, spec.command_names, goal,
                'position'))
            probe.spin_for(0.02)
            position = np.asarray(probe.received['joint_states'][-1][1].position)
            return abs(position[waist] - goal[0]) < 5e-3

        def recovered_and_moving(offset: float) -> None:
            """After ~/recover: joint_states flow, diagnostics OK, the waist obeys again."""
            count = len(probe.received['joint_states'])
            probe.received['diagnostics'].clear()
            probe.wait_diag(lambda s: s.level == DiagnosticStatus.OK, 'diagnostics OK again')
            assert len(probe.received['joint_states']) > count
            probe.spin_until(lambda: command_waist(offset), WAIT_S, f'the waist at +{offset}')

        probe.spin_until(lambda: command_waist(0.05), WAIT_S, 'the waist at +0.05')

        # 1. The U2D2 cable pulled while active.
        bus.unplug()
        status = probe.wait_diag(lambda s: s.level == DiagnosticStatus.ERROR, 'unplug diag')
        assert f'lost the Dynamixel bus on {bus.path}' in status.message, status.message
        probe.spin_until(lambda: probe.received['safety/estop'], WAIT_S, 'safety/estop')
        for _ in range(5):                        # commands meanwhile: held, not written
            command_waist(0.1)
        probe.wait_diag(lambda s: int(convert.diagnostic_values(s)['commands_held']) >= 5,
                        'commands held while unplugged')
        alive()
        assert [m.data for _, m in probe.received['safety/estop']] == [True]
        refused = probe.recover()
        assert not refused.success and bus.path in refused.message, refused.message
        bus.replug()
        answer = probe.recover()
        assert answer.success and 'lost the Dynamixel bus' in answer.message, answer.message
        recovered_and_moving(0.1)

        # 2. The elbow servo stops answering (cable to it broken); the bus stays up.
        bus.no_reply([4])
        probe.received['diagnostics'].clear()
        status = probe.wait_diag(lambda s: s.level == DiagnosticStatus.ERROR, 'no-reply diag')
        assert 'servo 4 (elbow) gave no valid reply' in status.message, status.message
        probe.spin_until(lambda: len(probe.received['safety/estop']) == 2, WAIT_S,
                         '2nd e-stop')
        refused = probe.recover()
        assert not refused.success and 'servo 4 (elbow)' in refused.message, refused.message
        bus.no_reply()
        answer = probe.recover()
        assert answer.success and 'servo 4 (elbow)' in answer.message, answer.message
        recovered_and_moving(0.15)
        assert [m.data for _, m in probe.received['safety/estop']] == [True, True]


def start_safety(tmp_path: Path, ros_env: dict, **params) -> tuple[subprocess.Popen, Path]:
    """The safety node (its own process) with ``params``."""
    params_file = tmp_path / 'safety_params.yaml'
    params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}))
    log = tmp_path / 'safety.log'
    proc = subprocess.Popen([sys.executable, '-m', 'dexmpc_ros.ros.safety_node', '--ros-args',
                             '--params-file', str(params_file)], env=ros_env, cwd=REPO,
                            stdout=log.open('w'), stderr=subprocess.STDOUT)
    return proc, log


def test_roach_imu_gives_the_supervisor_its_body_rate(tmp_path, ros_env, ros_domain):
    """backend hardware: driver imu at the control rate -> the supervisor passes commands."""
    from dexmpc_ros.wire.pty_link import PtyLink
    from dexmpc_ros.robots.roach.firmware import RoachFirmwareEmulator
    from dexmpc_ros.ros.probe import GraphProbe

    spec = load_robot_spec('roach')
    link = PtyLink(str(tmp_path / 'ttyROACH'), drop_when_full=True)
    procs = []
    probe = None
    with RoachFirmwareEmulator(link) as emu:
        try:
            procs.append(start_node(tmp_path, ros_env, robot='roach', driver='roach',
                                    driver_options=f'{{port: {emu.path}}}'))
            procs.append(start_safety(tmp_path, ros_env, robot='roach', auto_arm=True))
            probe = GraphProbe(ros_domain, {'joint_states': JointState, 'imu': Imu,
                                            'command': JointTrajectory}, name='imu_test')

            def alive() -> None:
                for proc, log in procs:
                    assert proc.poll() is None, log.read_text()
            probe.spin_until(lambda: alive() or len(probe.received['imu']) >= 21, WAIT_S,
                             '21 imu messages')
            imu = [m for _, m in probe.received['imu']]
            joint_stamps = {convert.time_to_ns(m.header.stamp)
                            for _, m in probe.received['joint_states']}
            # at the control rate = one imu per reading (per joint_states stamp), counted;
            # the wall-clock rate is bench/driver_node_rate.py's
            imu_stamps = sorted(convert.time_to_ns(m.header.stamp) for m in imu)
            assert {s for s in joint_stamps if imu_stamps[0] <= s <= imu_stamps[-1]} == \
                set(imu_stamps)
            for msg in imu:
                angular, stamp_ns = convert.imu_angular_velocity(msg)
                assert np.isfinite(angular).all() and stamp_ns in joint_stamps
                assert msg.header.frame_id == 'base_link'
                assert msg.orientation_covariance[0] == -1.0
            assert imu[-1].linear_acceleration.z == pytest.approx(9.81, abs=0.05)  # at rest

            # Commands through the supervisor reach the legs: not held for a stale body rate.
            def legs_above(speed: float) -> bool:
                alive()
                if probe.received['joint_states']:
                    stamp = probe.received['joint_states'][-1][1].header.stamp
                    probe.pub_raw.publish(convert.command_msg(
                        convert.time_to_ns(stamp), spec.command_names,
                        np.array([25.0, 25.0]), 'velocity'))
                probe.spin_for(0.05)
                return emu.sensors().leg_speeds.min() > speed

            def passed() -> list[float]:
                return [command_values(m, 'velocity')[0] for _, m in probe.received['command']]

            # The supervisor ramps the speed up (step bound): wait for the full command too,
            # the legs can pass 20 rad/s on the ramp.
            probe.spin_until(lambda: legs_above(20.0) and max(passed(), default=0.0) >= 24.9,
                             WAIT_S, 'legs at 25 rad/s via safety')
            assert max(passed()) == pytest.approx(25.0), passed()
        finally:
            if probe is not None:
                probe.close()
            codes = [stop(proc) for proc, _ in procs]
    assert codes == [0, 0], [log.read_text() for _, log in procs]


@pytest.mark.e2e
def test_dexmpc_up_on_hardware_without_the_arm_says_what_to_check(tmp_path, ros_domain):
    port = tmp_path / 'ttyDXL'                      # no such device: the real WidowX driver
    spec = tmp_path / 'widowx_hw.yaml'
    spec.write_text(yaml.safe_dump({
        'description': 'WidowX on hardware, no arm plugged in', 'robot': 'widowx',
        'backend': 'hardware', 'duration_s': 10,
        'nodes': {'robot': {'kind': 'robot'}, 'safety': {'kind': 'safety'}}}))
    result = subprocess.run(
        [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'up', str(spec), '--quiet',
         '--output', str(tmp_path / 'run'), '--domain-id', str(ros_domain),
         '--set', f'robot.driver_options="{{port: {port}}}"'],   # a YAML string
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "node 'robot' died" in result.stderr, result.stderr
    assert f'no Dynamixel bus on {port}: check the U2D2 cable' in result.stderr, result.stderr
