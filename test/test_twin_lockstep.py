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


#: Wall time the twin waits for an answer: far above any stall of this probe on a loaded
#: machine, so that an answered state never looks unanswered.
TIMEOUT_S = 2.0
WAIT_S = 60.0          # a wait for progress, not a bound


def twin_reports(probe: GraphProbe) -> list[tuple[float, int]]:
    """(sim_time_s, lockstep_timeouts) of every twin diagnostics received, in order."""
    return [(float(values['sim_time_s']), int(values['lockstep_timeouts']))
            for _, msg in probe.received['diagnostics'] for s in msg.status
            if s.name == 'twin' for values in [convert.diagnostic_values(s)]]


def test_lockstep_twin_waits_for_the_answer_to_each_state(tmp_path, ros_env):
    spec = load_robot_spec('widowx')
    proc, log = start_node('dexmpc_ros.ros.twin_node', tmp_path, ros_env, {
        'robot': 'widowx', 'task': 'reach', 'publish_clock': True, 'lockstep': True,
        'lockstep_timeout_s': TIMEOUT_S, 'real_time_factor': 0.0}, 'twin.log')
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

    def reports_after(count: int, what: str) -> list[tuple[float, int]]:
        probe.spin_until(lambda: len(twin_reports(probe)) > count, WAIT_S, what)
        return twin_reports(probe)

    probe.node.create_subscription(JointState, 'joint_states', answer, 100)
    try:
        probe.spin_until(lambda: len(probe.received['joint_states']) >= 1
                         and pub.get_subscription_count() > 0, WAIT_S, 'the twin')
        # Unanswered: every step waits for its timeout, though the twin may run flat out:
        # between two diagnostics, as many twin steps (sim time / period) as timeouts.
        probe.spin_until(lambda: twin_reports(probe) and twin_reports(probe)[-1][1] >= 1,
                         WAIT_S, 'a first lockstep timeout')
        (sim0, timeouts0), = twin_reports(probe)[-1:]
        probe.spin_until(lambda: twin_reports(probe)[-1][1] >= timeouts0 + 3, WAIT_S,
                         '3 more lockstep timeouts')
        sim1, timeouts1 = twin_reports(probe)[-1]
        steps = round((sim1 - sim0) / spec.period_s)
        assert timeouts1 - timeouts0 - 1 <= steps <= timeouts1 - timeouts0 + 1, \
            (steps, timeouts0, timeouts1)
        # Answered: as fast as the round trip allows, with no timeout. The state published
        # just before this was never answered: its timeout is in a diagnostics report at
        # most TIMEOUT_S later (one more report after that is read).
        answering = True
        started = len(twin_reports(probe))
        probe.spin_until(lambda: len(twin_reports(probe)) > started and
                         twin_reports(probe)[-1][0] > twin_reports(probe)[started][0] + 1.0,
                         WAIT_S, '1 s of answered sim time')
        reports = reports_after(len(twin_reports(probe)), 'the next twin diagnostics')
        timeouts = reports[-1][1]
        before = len(probe.received['joint_states'])
        probe.spin_until(lambda: len(probe.received['joint_states']) >= before + 40, WAIT_S,
                         '40 answered states')
        reports = reports_after(len(twin_reports(probe)), 'one more diagnostics period')
        assert reports[-1][1] == timeouts, reports[-3:]
        # Every step is exactly one control period of simulated time.
        stamps = np.array([convert.time_to_ns(m.header.stamp)
                           for _, m in probe.received['joint_states'][-20:]])
        assert np.allclose(np.diff(stamps), spec.period_s * 1e9, atol=1e3)
        assert proc.poll() is None, log.read_text()
    finally:
        probe.close()
        stop(proc)
