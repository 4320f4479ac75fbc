"""
Recorder node over real DDS: the recorder runs as its own process; this test is the rest
of the graph (JointState at 50 Hz, the latched episode topic, best-effort images) and
reads the bag afterwards — after a clean SIGINT, and after a SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('rclpy')

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Int32  # noqa: E402

from dexmpc_ros.data.bag_reader import episodes, joint_state_series, read_bag  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.runtime.ros_env import ros_environment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FLUSH_PERIOD_S = 0.5


def start_recorder(tmp_path: Path, domain: int) -> tuple[subprocess.Popen, Path]:
    env = ros_environment(domain_id=domain)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    bag = tmp_path / 'bag'
    log = tmp_path / 'recorder.log'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'dexmpc_ros.ros.recorder_node', '--ros-args',
         '-p', f'output_dir:={bag}', '-p', f'flush_period_s:={FLUSH_PERIOD_S}',
         '-p', 'discovery_period_s:=0.2'],
        env=env, cwd=REPO, stdout=log.open('w'), stderr=subprocess.STDOUT)
    return proc, bag


class Graph:
    """The experiment as the recorder sees it: three publishers, and its diagnostics."""

    def __init__(self, domain: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node('recorder_probe', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.pub_joints = self.node.create_publisher(JointState, 'joint_states', 10)
        self.pub_episode = self.node.create_publisher(
            Int32, 'episode', QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL))
        self.pub_image = self.node.create_publisher(Image, 'camera/color/image_raw',
                                                    qos_profile_sensor_data)
        self.recorder: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, 'diagnostics', self._on_diag, 10)
        self.joints_sent = 0
        self.images_sent = 0

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == 'recorder':
                self.recorder = convert.diagnostic_values(status)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def wait_until_recorded(self, timeout: float = 20.0) -> None:
        """Block until the recorder's subscription matches every publisher."""
        pubs = (self.pub_joints, self.pub_episode, self.pub_image)
        end = time.monotonic() + timeout
        while not all(p.get_subscription_count() for p in pubs):
            assert time.monotonic() < end, 'the recorder never subscribed to every topic'
            self.spin_for(0.05)

    def publish(self, seconds: float, episode_at: float | None = None) -> None:
        """JointState k (position k) every 20 ms, an image every 100 ms, for ``seconds``."""
        start = next_tick = time.monotonic()
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            if now >= next_tick:
                k = self.joints_sent
                stamp = self.node.get_clock().now().nanoseconds
                self.pub_joints.publish(convert.joint_state_msg(stamp, ['a', 'b'], [k, -k]))
                self.joints_sent += 1
                if k % 5 == 0:
                    rgb = np.full((4, 6, 3), k % 256, np.uint8)
                    self.pub_image.publish(convert.image_msg(stamp, rgb))
                    self.images_sent += 1
                if episode_at is not None and now - start >= episode_at:
                    self.pub_episode.publish(Int32(data=1))
                    episode_at = None
                next_tick += 0.02
            self.executor.spin_once(timeout_sec=max(0.0, min(0.005, next_tick - now)))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def graph(ros_domain):
    g = Graph(ros_domain)
    yield g
    g.close()


def stop(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_sigint_closes_a_complete_bag(tmp_path, ros_domain, graph):
    graph.pub_episode.publish(Int32(data=0))  # latched: recorded when the recorder joins
    proc, bag = start_recorder(tmp_path, ros_domain)
    try:
        graph.wait_until_recorded()
        graph.publish(3.0, episode_at=1.5)
        graph.spin_for(1.2)  # a diagnostics period
    finally:
        code = stop(proc, signal.SIGINT)
    log = (tmp_path / 'recorder.log').read_text()
    assert code == 0, log
    assert 145 <= graph.joints_sent <= 151
    assert float(graph.recorder['rate_hz']) > 0 and graph.recorder['dropped'] == '0'

    loaded = read_bag(bag)
    assert {'/joint_states', '/episode', '/camera/color/image_raw'} <= set(loaded)
    assert '/rosout' not in loaded and '/parameter_events' not in loaded
    # Reliable topic: every message, in order, bytes untouched.
    joints = joint_state_series(loaded['/joint_states'])
    np.testing.assert_array_equal(joints.position[:, 0], np.arange(graph.joints_sent))
    # Best effort over loopback: a few may go missing.
    images = loaded['/camera/color/image_raw']
    assert 0.8 * graph.images_sent <= len(images) <= graph.images_sent
    assert images[0][1].encoding == 'rgb8'
    eps = episodes(loaded)
    assert [e.index for e in eps] == [0, 1]
    in_first = len(joints.between(eps[0].start_ns, eps[0].end_ns))
    assert abs(in_first - 75) <= 10  # episode 1 starts 1.5 s into the 50 Hz stream
    assert not (bag / '.partial').exists()


def test_sigkill_keeps_everything_flushed(tmp_path, ros_domain, graph):
    proc, bag = start_recorder(tmp_path, ros_domain)
    try:
        graph.wait_until_recorded()
        graph.publish(3.0)
        flushed_reported = int(graph.recorder.get('flushed', '0'))
    finally:
        stop(proc, signal.SIGKILL)
    loaded = read_bag(bag)
    recorded = sum(len(v) for v in loaded.values())
    assert recorded >= flushed_reported > 0
    joints = joint_state_series(loaded['/joint_states'])
    # A contiguous prefix of what was sent, missing at most the open segment.
    np.testing.assert_array_equal(joints.position[:, 0], np.arange(len(joints)))
    lost_max = (FLUSH_PERIOD_S + 1.0) * 50
    assert graph.joints_sent - lost_max <= len(joints) <= graph.joints_sent
