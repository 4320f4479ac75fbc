"""
The driver node's fault path with the real WidowXDriver (dynamixel_sdk) on the emulated bus
(ISSUE13 §3b): the node its own process over real DDS, the bus in this process.

- after a fault every servo has had its torque-off attempt, and diagnostics name the
  servos that may still be powered;
- during the hold joint_states keep flowing for the servos that answer (NaN for the joints
  of the silent one, named in diagnostics), and a silent bus is told apart;
- bus I/O (here a ~/recover that waits for a deaf servo) does not stop the node's other
  callbacks: diagnostics keep coming.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.wire import dynamixel_protocol as dxl  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from test_driver_node import widowx_node_on_emulated_bus as widowx_node  # noqa: E402

SPEC = load_robot_spec('widowx')


def values(status: DiagnosticStatus) -> dict[str, str]:
    return convert.diagnostic_values(status)


def test_silent_servo_hold_publishes_the_others_and_torques_every_servo_off(
        tmp_path, ros_env, ros_domain):
    names = SPEC.joint_names
    elbow = names.index('elbow')
    with widowx_node(tmp_path, ros_env, ros_domain) as (bus, probe, alive):
        assert all(s.get('torque_enable') == 1 for s in bus.servos.values())
        bus.no_reply([4])                       # hears (obeys writes), cannot answer
        status = probe.wait_diag(lambda s: s.level == DiagnosticStatus.ERROR, 'fault diag')
        assert 'servo 4 (elbow) gave no valid reply' in status.message, status.message

        # every servo had its torque-off attempt; the mute one could not confirm it
        probe.spin_until(lambda: alive() or all(
            s.get('torque_enable') == 0 for s in bus.servos.values()), 10.0,
            'torque off on all nine servos')
        status = probe.wait_diag(lambda s: values(s).get('may_be_powered') == 'servo 4 (elbow)',
                                 'diagnostics naming the servo that may still be powered')
        assert values(status)['not_answering'] == 'servo 4 (elbow)'
        assert 'may still be powered: servo 4 (elbow)' in status.message, status.message

        # the hold keeps publishing what answers: every joint named, NaN for the elbow
        count = len(probe.received['joint_states'])
        probe.spin_until(lambda: alive() or len(probe.received['joint_states']) >= count + 5,
                         60.0, '5 joint_states during the hold')
        msg = probe.received['joint_states'][-1][1]
        assert list(msg.name) == names
        position = np.asarray(msg.position)
        assert np.isnan(position[elbow])
        assert np.all(np.isfinite(np.delete(position, elbow)))

        # the whole bus goes silent: said so, not blamed on one servo
        probe.received['diagnostics'].clear()
        bus.no_reply(bus.servos)
        status = probe.wait_diag(lambda s: values(s).get('not_answering') == 'all (bus silent)',
                                 'diagnostics: the bus is silent')
        assert [m.data for _, m in probe.received['safety/estop']] == [True]


def test_bus_io_does_not_stop_the_other_callbacks(tmp_path, ros_env, ros_domain):
    """A ~/recover that waits 5 s for a deaf servo: diagnostics keep coming meanwhile."""
    with widowx_node(tmp_path, ros_env, ros_domain, reboot_timeout_s=5.0) as (bus, probe, _):
        bus.set_hardware_error(2, dxl.HardwareError.OVERLOAD)
        probe.wait_diag(lambda s: s.level == DiagnosticStatus.ERROR, 'fault diag')
        bus.reboot_s = 600.0                    # the rebooted servo never comes back
        start_ns = probe.node.get_clock().now().nanoseconds
        answer = probe.recover()
        end_ns = probe.node.get_clock().now().nanoseconds
        assert not answer.success
        assert 'servo 2 (shoulder) did not answer within 5.0 s' in answer.message, answer.message
        during = [m for _, m in probe.received['diagnostics']
                  if start_ns < convert.time_to_ns(m.header.stamp) < end_ns]
        # the 1 Hz diagnostics timer fired while the bus was busy (5 s: about 5 times);
        # with bus I/O on the only executor thread none could
        assert len(during) >= 2, len(during)
