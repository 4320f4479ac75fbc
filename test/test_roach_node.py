"""
The roach's driver node over real DDS: the real RoachDriver (pyserial, XBee frames) in the
node's process, the VelociRoACH firmware emulator in this one, in both telemetry modes.

A lost radio link holds the node (diagnostics ERROR, one e-stop request, no imu, commands
held), ``~/recover`` answers with what to check, and the node resumes by itself once
telemetry is back (the supervisor's e-stop stays latched until safety/reset). In reply
mode (one record per command) a pause in commands is not a link loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from dexmpc_ros.core.message_fields import stamp_to_ns  # noqa: E402
from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.wire.pty_link import PtyLink  # noqa: E402
from dexmpc_ros.robots.roach.firmware import EmulatorConfig, RoachFirmwareEmulator  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from test_driver_node import WAIT_S, Manager, driver_node_running  # noqa: E402

SPEC = load_robot_spec('roach')
OK, ERROR = DiagnosticStatus.OK, DiagnosticStatus.ERROR


class RoachProbe:
    """The manager probe plus the emulated robot: command the legs, read what happened."""

    def __init__(self, probe: Manager, emu: RoachFirmwareEmulator, alive) -> None:
        self.probe, self.emu, self.alive = probe, emu, alive

    def legs_above(self, speed: float) -> bool:
        """Send one 25 rad/s command; True once the emulated legs turn faster than speed."""
        self.alive()
        self.probe.pub_command.publish(convert.command_msg(
            self.probe.node.get_clock().now().nanoseconds, SPEC.command_names,
            np.array([25.0, 25.0]), 'velocity'))
        self.probe.spin_for(0.05)
        return self.emu.sensors().leg_speeds.min() > speed

    def obey(self, what: str) -> None:
        self.probe.spin_until(lambda: self.legs_above(20.0), WAIT_S, what)

    def levels_since(self, mark: int) -> list[int]:
        return [s.level for s in self.probe.statuses()[mark:]]

    def wait_level(self, level: int, mark: int, what: str) -> DiagnosticStatus:
        self.probe.spin_until(lambda: level in self.levels_since(mark), WAIT_S, what)
        return next(s for s in self.probe.statuses()[mark:] if s.level == level)


@contextmanager
def roach_node(tmp_path, ros_env, ros_domain, telemetry: str) -> Iterator[RoachProbe]:
    """The driver node on an emulated roach whose firmware has ``telemetry`` mode."""
    link = PtyLink(str(tmp_path / 'ttyROACH'), drop_when_full=True)
    config = EmulatorConfig(command_timeout_s=0.0, telemetry=telemetry)
    with RoachFirmwareEmulator(link, config=config) as emu:
        options = {'port': emu.path, 'link_timeout_s': 0.3, 'telemetry': telemetry}
        with driver_node_running(tmp_path, ros_env, ros_domain, 'roach',
                                 options) as (probe, alive):
            yield RoachProbe(probe, emu, alive)


def lose_and_regain_the_radio(roach: RoachProbe) -> None:
    """Radio down: hold, ~/recover says what to check; radio back: resumes by itself."""
    probe, emu = roach.probe, roach.emu
    mark = len(probe.statuses())
    emu.lose_link(hears=True)                          # robot -> host packets lost
    status = roach.wait_level(ERROR, mark, 'link loss')
    assert 'link lost' in status.message and 'until it clears' in status.message
    # a faulted reading (the last gyro, not a measurement) publishes no imu: readings
    # stamped after the fault's report, counted (not a wall-clock window)
    fault_ns = min(stamp_to_ns(m.header.stamp) for _, m in probe.received['diagnostics']
                   if any(st.name == 'driver' and st.level == ERROR for st in m.status))

    def after_fault(topic: str) -> list:
        return [m for _, m in probe.received[topic] if stamp_to_ns(m.header.stamp) > fault_ns]
    probe.spin_until(lambda: len(after_fault('joint_states')) >= 5, WAIT_S,
                     '5 readings with the link lost')
    assert not after_fault('imu')
    probe.spin_until(lambda: probe.received['safety/estop'], WAIT_S, 'safety/estop')
    answer = probe.recover()                           # the next step, not a bare failure
    assert not answer.success
    assert 'link lost' in answer.message and 'check the robot is powered' in answer.message
    assert 'by themselves' in answer.message, answer.message
    assert not roach.legs_above(1.0)                   # held: zero thrust, commands held
    mark = len(probe.statuses())
    emu.restore_link()                                 # no ~/recover from here on
    roach.wait_level(OK, mark, 'the node resuming by itself')
    roach.obey('legs obeying again')
    assert [m.data for _, m in probe.received['safety/estop']] == [True]
    assert probe.recover().message.startswith('no fault')


def test_stream_firmware_link_loss_holds_then_resumes_by_itself(tmp_path, ros_env,
                                                                ros_domain):
    with roach_node(tmp_path, ros_env, ros_domain, 'stream') as roach:
        roach.obey('legs at 25 rad/s')
        assert roach.probe.received['imu'], 'no imu from a healthy roach'
        lose_and_regain_the_radio(roach)


def test_reply_firmware_pause_is_no_link_loss_then_loss_resumes(tmp_path, ros_env, ros_domain):
    with roach_node(tmp_path, ros_env, ros_domain, 'reply') as roach:
        probe = roach.probe
        roach.obey('legs at 25 rad/s')
        mark, joints = len(probe.statuses()), len(probe.received['joint_states'])
        # the controller pauses while the driver polls 5 readings (0.5 s at 10 Hz)
        probe.spin_until(lambda: len(probe.received['joint_states']) >= joints + 5, WAIT_S,
                         '5 readings polled during the pause')

        def reads_the_legs() -> bool:                  # commands again: fresh readings
            roach.legs_above(0.0)
            velocity = probe.received['joint_states'][-1][1].velocity
            return min(velocity) > 15.0 and len(roach.levels_since(mark)) >= 2
        probe.spin_until(reads_the_legs, WAIT_S, 'the driver reading the legs again')
        assert set(roach.levels_since(mark)) == {OK}   # no link loss, no hold
        lose_and_regain_the_radio(roach)
