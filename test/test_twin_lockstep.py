"""
Twin node in lockstep (simulated time): it steps only once the command answering its last
state is in, or after ``lockstep_timeout_s`` without one. Real DDS, the twin its own process;
this test plays the controller.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from node_process import start_node, stop  # noqa: E402


def lockstep_timeouts(probe: GraphProbe) -> int:
    values = [int(v.value) for _, msg in probe.received['diagnostics'] for s in msg.status
              if s.name == 'twin' for v in s.values if v.key == 'lockstep_timeouts']
    return values[-1] if values else -1


def test_lockstep_twin_waits_for_the_answer_to_each_state(tmp_path, ros_env):
    spec = load_robot_spec('widowx')
    proc, log = start_node('dexmpc_ros.ros.twin_node', tmp_path, ros_env, {
        'robot': 'widowx', 'task': 'reach', 'publish_clock': True, 'lockstep': True,
        'lockstep_timeout_s': 0.5, 'real_time_factor': 0.0}, 'twin.log')
    probe = GraphProbe(int(ros_env['ROS_DOMAIN_ID']),
                       {'joint_states': JointState, 'diagnostics': DiagnosticArray},
                       name='lockstep_probe')
    pub = probe.node.create_publisher(JointTrajectory, 'command', 10)
    answering = False

    def answer(msg: JointState) -> None:
        if answering:   # hold where we are, stamped with the state we answer
            position = np.array(msg.position)[spec.actuated_index]
            pub.publish(convert.command_msg(convert.time_to_ns(msg.header.stamp),
                                            spec.command_names, position, 'position'))

    probe.node.create_subscription(JointState, 'joint_states', answer, 100)
    try:
        probe.spin_until(lambda: len(probe.received['joint_states']) >= 1
                         and pub.get_subscription_count() > 0, 30.0, 'the twin')
        # Unanswered: one step per timeout (0.5 s: a probe stalled by a busy CI machine must
        # not look unanswered below), though the twin may run flat out.
        probe.spin_for(0.6)
        before = len(probe.received['joint_states'])
        probe.spin_for(2.0)
        unanswered = len(probe.received['joint_states']) - before
        assert 2 <= unanswered <= 6, unanswered
        # Answered: as fast as the round trip allows, with no timeout.
        answering = True
        # the state published just before this was never answered: its timeout (<= 0.5 s)
        # must be in the diagnostics (1 Hz) read below
        probe.spin_for(2.2)
        probe.spin_until(lambda: lockstep_timeouts(probe) >= 0, 5.0, 'twin diagnostics')
        timeouts = lockstep_timeouts(probe)
        before = len(probe.received['joint_states'])
        probe.spin_for(2.5)
        answered = len(probe.received['joint_states']) - before
        probe.spin_for(1.2)  # one more diagnostics period
        assert answered >= 40, answered
        assert lockstep_timeouts(probe) == timeouts
        # Every step is exactly one control period of simulated time.
        stamps = np.array([convert.time_to_ns(m.header.stamp)
                           for _, m in probe.received['joint_states'][-20:]])
        assert np.allclose(np.diff(stamps), spec.period_s * 1e9, atol=1e3)
        assert proc.poll() is None, log.read_text()
    finally:
        probe.close()
        stop(proc)
