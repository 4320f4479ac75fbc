"""
Safety node over real DDS: the node runs as its own process, this test is the robot and
the controller (publishes joint_states, command_raw, safety/estop, controller/plan; reads
command, diagnostics, the latched safety/state; calls safety/reset and safety/arm).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from dexmpc_ros.runtime.ros_env import ros_environment  # noqa: E402
from node_process import stop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: A wait for the node's next output on a loaded machine: a timeout, not a bound [s].
WAIT_S = 30.0

ARM_YAML = """\
name: toyarm
command_interface: position
control_rate_hz: 20.0
joints:
  - {name: shoulder, lower: -1.0, upper: 1.0, velocity: 4.0, max_step: 0.1, effort: 5.0}
  - {name: finger_right, lower: 0.0, upper: 0.04, velocity: 1.0, max_step: 0.01,
     effort: 5.0, actuated: false}
  - {name: elbow, lower: -2.0, upper: 2.0, velocity: 1.0, max_step: 0.2, effort: 5.0}
"""
# Per-step bounds at 20 Hz: shoulder min(0.1, 4 * 0.05) = 0.1, elbow min(0.2, 1 * 0.05) = 0.05.
ARM_STEP = np.array([0.1, 0.05])
ARM_LOWER, ARM_UPPER = np.array([-1.0, -2.0]), np.array([1.0, 2.0])

WHEELS_YAML = """\
name: toywheels
command_interface: velocity
control_rate_hz: 20.0
joints:
  - {name: left, lower: -.inf, upper: .inf, velocity: 50.0, max_step: 20.0, effort: 0.1}
  - {name: right, lower: -.inf, upper: .inf, velocity: 50.0, max_step: 20.0, effort: 0.1}
"""


def start_safety(tmp_path: Path, yaml_text: str, domain: int, *params: str
                 ) -> tuple[subprocess.Popen, Path]:
    robot = tmp_path / 'robot.yaml'
    robot.write_text(yaml_text)
    env = ros_environment(domain_id=domain)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    log = tmp_path / 'safety.log'
    args = ['-p', f'robot:={robot}']
    for param in params:
        args += ['-p', param]
    proc = subprocess.Popen([sys.executable, '-m', 'dexmpc_ros.ros.safety_node', '--ros-args',
                             *args], env=env, cwd=REPO, stdout=log.open('w'),
                            stderr=subprocess.STDOUT)
    return proc, log


class Probe(GraphProbe):
    """The rest of the graph: a fake robot publishing joint_states and a fake controller."""

    def __init__(self, domain: int, joint_names: list[str], command_names: list[str],
                 interface: str) -> None:
        super().__init__(domain, {}, name='safety_probe')
        self.joint_names, self.command_names = joint_names, command_names
        self.interface = interface
        self.position = np.zeros(len(joint_names))
        self.velocity = np.zeros(len(joint_names))
        self.publish_state = True
        self.commands: list[tuple[int, list[str], np.ndarray]] = []
        self.statuses: list[DiagnosticStatus] = []
        node = self.node
        self.pub_state = node.create_publisher(JointState, 'joint_states', 10)
        self.pub_plan = node.create_publisher(JointTrajectory, 'controller/plan', 10)
        node.create_subscription(JointTrajectory, 'command', self._on_command, 100)
        node.create_subscription(DiagnosticArray, 'diagnostics', self._on_diag, 10)
        node.create_timer(0.02, self._publish_state)

    @property
    def states(self) -> list[str]:
        """safety/state messages, in order of arrival."""
        return [data for _, data in self.safety_states]

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _publish_state(self) -> None:
        if self.publish_state:
            self.pub_state.publish(convert.joint_state_msg(
                self.now_ns(), self.joint_names, self.position, self.velocity))

    def _on_command(self, msg: JointTrajectory) -> None:
        names, values, stamp = convert.command_to_arrays(msg, self.interface)
        self.commands.append((stamp, names, values))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        self.statuses += [s for s in msg.status if s.name == 'safety']

    def connect(self, proc: subprocess.Popen, log: Path) -> None:
        """Wait until the safety node hears us and publishes (its start-up hold)."""
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return (self.pub_raw.get_subscription_count() > 0
                    and self.pub_estop.get_subscription_count() > 0
                    and self.clients['reset'].service_is_ready() and bool(self.commands))
        self.spin_until(ready, WAIT_S, 'the safety node')

    def send(self, values, stamp_ns: int | None = None, names: list[str] | None = None) -> int:
        stamp_ns = self.now_ns() if stamp_ns is None else stamp_ns
        self.pub_raw.publish(convert.command_msg(
            stamp_ns, names or self.command_names, np.asarray(values, dtype=np.float64),
            self.interface))
        return stamp_ns

    def send_plan(self, stamp_ns: int, positions) -> None:
        """Publish a controller/plan over the command joints, then let it arrive first."""
        self.pub_plan.publish(convert.plan_msg(stamp_ns, self.command_names,
                                               np.asarray(positions, dtype=np.float64), 0.05))
        # plan and command_raw are different topics, so DDS does not order them
        self.spin_for(0.05)

    def wait_state(self, count: int, what: str) -> list[str]:
        """Wait until ``count`` safety/state messages arrived; return them."""
        self.spin_until(lambda: len(self.states) >= count, WAIT_S, what)
        return self.states

    def output_for(self, stamp_ns: int, timeout_s: float = WAIT_S) -> np.ndarray:
        def found() -> bool:
            return any(s == stamp_ns for s, _, _ in self.commands)
        self.spin_until(found, timeout_s, f'command stamped {stamp_ns}')
        return next(v for s, _, v in self.commands if s == stamp_ns)

    def status_where(self, check: Callable[[DiagnosticStatus], bool], what: str
                     ) -> DiagnosticStatus:
        def found() -> bool:
            return any(check(s) for s in self.statuses)
        self.spin_until(found, WAIT_S, what)
        return next(s for s in self.statuses if check(s))


def diag(status: DiagnosticStatus) -> dict[str, str]:
    return convert.diagnostic_values(status)


@pytest.fixture
def arm_graph(tmp_path, ros_domain):
    # the tests send bursts faster than the default rate limit (3 x 20 Hz, burst 3)
    proc, log = start_safety(tmp_path, ARM_YAML, ros_domain,
                             'auto_arm:=true', 'auto_arm_after_s:=0.0',
                             'max_command_rate_hz:=1000.0')
    probe = Probe(ros_domain, ['shoulder', 'finger_right', 'elbow'],
                  ['shoulder', 'elbow'], 'position')
    probe.position = np.array([0.5, 0.02, -0.5])
    # no joint_states until the latched DISARMED arrived, so auto-arm cannot overtake it
    probe.publish_state = False
    try:
        assert probe.wait_state(1, 'the latched start-up state') == ['DISARMED']
        probe.publish_state = True
        probe.connect(proc, log)
        yield probe
    finally:
        probe.close()
        stop(proc)
    assert proc.returncode == 0, log.read_text()


def test_position_robot_nothing_unsafe_reaches_command(arm_graph):
    probe = arm_graph
    measured = np.array([0.5, -0.5])
    assert probe.wait_state(2, 'auto-arm') == ['DISARMED', 'ARMED']
    _, names, hold = probe.commands[0]  # start-up: no controller yet -> hold where it is
    assert names == ['shoulder', 'elbow']
    np.testing.assert_array_equal(hold, measured)

    good = probe.send([0.55, -0.48])
    np.testing.assert_array_equal(probe.output_for(good), [0.55, -0.48])
    reordered = probe.send([-0.47, 0.45], names=['elbow', 'shoulder'])
    np.testing.assert_array_equal(probe.output_for(reordered), [0.45, -0.47])

    probe.spin_for(0.01)  # the token bucket refills (10 ms at 1000/s > burst 3)
    nan = probe.send([np.nan, -0.5])
    inf = probe.send([0.5, -np.inf])
    huge = probe.send([5.0, -1e300])
    np.testing.assert_allclose(probe.output_for(huge), measured + [0.1, -0.05], atol=1e-12)
    unknown = probe.send([0.5, -0.5, 0.0], names=['shoulder', 'elbow', 'finger_right'])
    late = probe.send([0.5, -0.5], stamp_ns=probe.now_ns() - 400_000_000)
    probe.spin_for(0.3)
    stamps = {s for s, _, _ in probe.commands}
    assert not stamps & {nan, inf, unknown, late}
    for _, names, values in probe.commands:
        assert names == ['shoulder', 'elbow'] and np.isfinite(values).all()
        assert np.all((values >= ARM_LOWER) & (values <= ARM_UPPER))
        assert np.all(np.abs(values - measured) <= ARM_STEP + 1e-12)

    # the diagnostics name the rules that fired and warn about them
    warn = probe.status_where(lambda s: s.level == DiagnosticStatus.WARN
                              and int(diag(s)['rule/age']) >= 1, 'WARN after the late command')
    assert 'rules fired:' in warn.message and 'age' in warn.message
    values = diag(warn)
    for rule in ('finite', 'names', 'age', 'step'):  # step already lands inside the box
        assert int(values[f'rule/{rule}']) >= 1, values
    assert float(values['rate_hz']) > 0 and 'latency_us' not in values
    assert 0 < float(values['latency_us_p50']) <= float(values['latency_us_p99'])
    assert int(values['passed']) == 2 and int(values['clamped']) == 1
    assert int(values['blocked']) == 4 and values['state'] == 'ARMED'

    # e-stop: holds only, whatever the controller sends, until reset
    probe.pub_estop.publish(Bool(data=True))
    probe.spin_until(lambda: any(diag(s)['state'] == 'ESTOPPED' for s in probe.statuses),
                     WAIT_S, 'ESTOPPED in diagnostics')
    error = next(s for s in probe.statuses if diag(s)['state'] == 'ESTOPPED')
    assert error.level == DiagnosticStatus.ERROR
    assert probe.wait_state(3, 'ESTOPPED on safety/state')[2] == \
        'ESTOPPED: estop: e-stop received'
    first_after_estop = len(probe.commands)
    sent = {probe.send([0.52, -0.49]) for _ in range(3)}
    probe.pub_estop.publish(Bool(data=False))  # releasing does not re-arm
    probe.spin_for(0.3)
    sent |= {probe.send([0.52, -0.49]) for _ in range(3)}
    # 8 holds (at the control rate: 0.4 s at least) while those commands came in
    probe.spin_until(lambda: len(probe.commands) >= first_after_estop + 8, WAIT_S, '8 holds')
    after = probe.commands[first_after_estop:]
    assert not {s for s, _, _ in after} & sent
    for _, _, values in after:
        np.testing.assert_array_equal(values, measured)

    assert len(probe.states) == 3  # releasing the e-stop changed nothing
    response = probe.call('reset')
    assert response.success, response.message
    assert probe.wait_state(4, 'ARMED after reset')[3] == 'ARMED'
    good = probe.send([0.53, -0.52])
    np.testing.assert_array_equal(probe.output_for(good), [0.53, -0.52])
    armed = probe.status_where(lambda s: diag(s)['state'] == 'ARMED'
                               and int(diag(s)['rule/estop']) >= 6, 'ARMED after reset')
    assert int(diag(armed)['estops']) == 1 and int(diag(armed)['held']) >= 8


def test_velocity_robot_arm_clamp_and_state_lost_estop(tmp_path, ros_domain):
    proc, log = start_safety(tmp_path, WHEELS_YAML, ros_domain, 'state_timeout_s:=0.15')
    probe = Probe(ros_domain, ['left', 'right'], ['left', 'right'], 'velocity')
    probe.velocity = np.array([30.0, -5.0])
    try:
        probe.connect(proc, log)
        np.testing.assert_array_equal(probe.commands[0][2], [0.0, 0.0])  # disarmed: zeros
        assert probe.wait_state(1, 'the latched start-up state') == ['DISARMED']
        disarmed = probe.send([35.0, -5.0])
        probe.spin_for(0.2)
        assert disarmed not in {s for s, _, _ in probe.commands}
        assert probe.states == ['DISARMED']  # fresh joint_states alone do not arm

        response = probe.call('arm')
        assert response.success, response.message
        assert probe.wait_state(2, 'ARMED')[1] == 'ARMED'
        fast = probe.send([90.0, -90.0])
        np.testing.assert_array_equal(probe.output_for(fast), [50.0, -25.0])

        probe.publish_state = False  # silent > heartbeat_timeout_s (0.5 s): e-stop
        lost = probe.wait_state(3, 'ESTOPPED after heartbeat_timeout_s')[2]
        assert lost.startswith('ESTOPPED: state_lost: joint_states silent for '), lost
        status = probe.status_where(lambda s: diag(s)['state'] == 'ESTOPPED',
                                    'ESTOPPED in diagnostics')
        values = diag(status)
        assert status.level == DiagnosticStatus.ERROR and 'state_lost' in status.message
        assert int(values['rule/state_lost']) == 1 and int(values['estops']) == 1
        assert int(values['rule/disarmed']) == 1 and int(values['rule/step']) == 1

        first_after_estop = len(probe.commands)
        blocked = probe.send([31.0, -5.0])
        probe.spin_until(lambda: len(probe.commands) >= first_after_estop + 3, WAIT_S,
                         'three holds')  # 100 ms of holds: a forwarded command would be in
        after = probe.commands[first_after_estop:]
        assert blocked not in {s for s, _, _ in after}
        for _, _, values_out in after:
            np.testing.assert_array_equal(values_out, [0.0, 0.0])
        status = probe.status_where(lambda s: int(diag(s)['rule/estop']) >= 1,
                                    'the blocked command counted')
        assert diag(status)['state'] == 'ESTOPPED'

        response = probe.call('reset')
        assert not response.success and 'old' in response.message
        probe.publish_state = True  # the driver is back: still latched until reset
        probe.spin_for(0.2)
        assert len(probe.states) == 3
        response = probe.call('reset')
        assert response.success, response.message
        assert probe.wait_state(4, 'ARMED after reset')[3] == 'ARMED'
        resumed = probe.send([31.0, -5.0])
        np.testing.assert_array_equal(probe.output_for(resumed), [31.0, -5.0])
    finally:
        probe.close()
        stop(proc)
    assert proc.returncode == 0, log.read_text()


def test_plan_leaving_the_limits_blocks_its_command_and_holds(tmp_path, ros_domain):
    # a watchdog far longer than the test, so a hold within it can only be the one the
    # plan forced, however slowly a loaded machine runs the test
    proc, log = start_safety(tmp_path, ARM_YAML, ros_domain,
                             'auto_arm:=true', 'auto_arm_after_s:=0.0',
                             'check_plan:=true', f'watchdog_timeout_s:={WAIT_S}')
    probe = Probe(ros_domain, ['shoulder', 'finger_right', 'elbow'],
                  ['shoulder', 'elbow'], 'position')
    probe.position = np.array([0.5, 0.02, -0.5])
    measured = np.array([0.5, -0.5])
    try:
        probe.connect(proc, log)
        good_stamp = probe.now_ns()
        probe.send_plan(good_stamp, [[0.55, -0.5], [0.6, -0.5]])
        good = probe.send([0.55, -0.5], stamp_ns=good_stamp)
        np.testing.assert_array_equal(probe.output_for(good), [0.55, -0.5])

        # more than two periods later, so even a late plan leaves this command without one
        probe.spin_for(0.15)
        bad_stamp = probe.now_ns()
        probe.send_plan(bad_stamp, [[0.6, -0.5], [1.2, -0.5]])
        first_after = len(probe.commands)
        bad = probe.send([0.6, -0.5], stamp_ns=bad_stamp)
        probe.spin_until(lambda: len(probe.commands) > first_after, WAIT_S, 'the forced hold')
        hold_stamp, _, hold = probe.commands[first_after]
        assert hold_stamp != bad and hold_stamp < good_stamp + WAIT_S * 1e9
        np.testing.assert_array_equal(hold, measured)
        probe.spin_for(0.2)
        assert bad not in {s for s, _, _ in probe.commands}
        status = probe.status_where(lambda s: int(diag(s)['rule/plan']) >= 1, 'rule/plan')
        assert 'plan: step 1: shoulder=1.2 outside [-1, 1]' in diag(status)['last_reason']

        fixed_stamp = probe.now_ns()
        probe.send_plan(fixed_stamp, [[0.55, -0.5]])
        fixed = probe.send([0.55, -0.5], stamp_ns=fixed_stamp)
        np.testing.assert_array_equal(probe.output_for(fixed), [0.55, -0.5])
    finally:
        probe.close()
        stop(proc)
    assert proc.returncode == 0, log.read_text()
