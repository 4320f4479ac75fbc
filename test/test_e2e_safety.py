"""
End to end, safety: an outside rclpy node attacks `command_raw` and pulls the e-stop
while `dexmpc up` runs the WidowX twin; assertions on `command` and on the twin's
measured joints.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.data.bag_reader import read_bag  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402

pytestmark = pytest.mark.e2e


class Probe:
    """A test-side node: records `command` and `joint_states`, publishes attacks."""

    def __init__(self, domain_id):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('probe', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.commands: list[tuple[float, JointTrajectory]] = []
        self.joints: list[tuple[float, JointState]] = []
        self.node.create_subscription(JointTrajectory, 'command',
                                      lambda m: self.commands.append((time.monotonic(), m)), 50)
        self.node.create_subscription(JointState, 'joint_states',
                                      lambda m: self.joints.append((time.monotonic(), m)), 50)
        self.raw = self.node.create_publisher(JointTrajectory, 'command_raw', 10)
        self.estop = self.node.create_publisher(Bool, 'safety/estop', 10)

    def spin_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def now_ns(self):
        return self.node.get_clock().now().nanoseconds

    def close(self):
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def attacks(spec, now_ns):
    """Hostile commands: NaN, inf, huge, wrong length, unknown names."""
    names = spec.command_names
    m = len(names)
    nan = np.zeros(m)
    nan[1] = np.nan
    inf = np.zeros(m)
    inf[0] = np.inf
    yield convert.command_msg(now_ns, names, nan, 'position')
    yield convert.command_msg(now_ns, names, inf, 'position')
    yield convert.command_msg(now_ns, names, np.full(m, 1e6), 'position')
    yield convert.command_msg(now_ns, names, -np.full(m, 1e6), 'position')
    yield convert.command_msg(now_ns, names[:-1], np.zeros(m - 1), 'position')
    yield convert.command_msg(now_ns, names[:-1] + ['laser_cannon'], np.zeros(m), 'position')


def test_attacks_never_reach_robot_and_estop_stops_joints(tmp_path, ros_env, ros_domain):
    spec = load_robot_spec('widowx')
    low, high = spec.limits_array('lower'), spec.limits_array('upper')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'up', 'widowx_scripted_sim',
         '--duration', '30', '--output', str(tmp_path / 'run'), '--quiet'],
        env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    probe = Probe(ros_domain)
    try:
        deadline = time.monotonic() + 40
        while len(probe.commands) < 20 and time.monotonic() < deadline:
            probe.spin_for(0.2)
        assert len(probe.commands) >= 20, 'the graph never produced commands'

        for _ in range(20):                                   # 2 s of attacks at 10 Hz
            for msg in attacks(spec, probe.now_ns()):
                probe.raw.publish(msg)
            probe.spin_for(0.1)
        probe.spin_for(0.5)
        for _, msg in probe.commands:
            values = np.asarray(msg.points[0].positions)
            assert list(msg.joint_names) == spec.command_names
            assert np.all(np.isfinite(values))
            assert np.all(values >= low - 1e-9) and np.all(values <= high + 1e-9)

        probe.estop.publish(Bool(data=True))
        t_estop = time.monotonic()
        t_estop_ns = time.time_ns()
        probe.spin_for(3.0)
        # commands after the e-stop are holds: all identical
        held = [np.asarray(m.points[0].positions) for t, m in probe.commands
                if t > t_estop + 0.3]
        assert held and all(np.allclose(h, held[0]) for h in held)
    finally:
        probe.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, out + err
    # The twin's measured joints, from the bag (receive times on the wall clock).
    joints = read_bag(tmp_path / 'run' / 'bag', ['/joint_states'])['/joint_states']
    settled = [convert.joint_state_to_arrays(m, spec.joint_names)[0]
               for t, m in joints if t_estop_ns + 500_000_000 < t < t_estop_ns + 3_000_000_000]
    assert len(settled) > 20
    motion = np.ptp(np.stack(settled), axis=0)
    assert np.all(motion[:6] < 0.01), f'arm joints still moving after e-stop: {motion}'
