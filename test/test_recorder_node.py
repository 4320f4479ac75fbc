"""
Recorder node over real DDS: the recorder runs as its own process; this test is the rest
of the graph (JointState every 20 ms, the latched episode topic, best-effort images) and
reads the bag afterwards — after a clean SIGINT, and after a SIGKILL.

Nothing is bounded in wall-clock time: the graph publishes counts of messages and waits
for the recorder's diagnostics to report them received or flushed (generous timeouts).
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
WAIT_S = 60.0          # a wait for the recorder's report, not a bound
TOPICS = ('/joint_states', '/episode', '/camera/color/image_raw')


def start_recorder(tmp_path: Path, domain: int, topics: tuple[str, ...] = ()
                   ) -> tuple[subprocess.Popen, Path]:
    """The recorder node; ``topics`` empty: every topic."""
    env = ros_environment(domain_id=domain)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    bag = tmp_path / 'bag'
    log = tmp_path / 'recorder.log'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'dexmpc_ros.ros.recorder_node', '--ros-args',
         '-p', f'output_dir:={bag}', '-p', f'flush_period_s:={FLUSH_PERIOD_S}',
         '-p', 'discovery_period_s:=0.2']
        + (['-p', 'topics:=[' + ','.join(f"'{t}'" for t in topics) + ']'] if topics else []),
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
        self.reports: list[dict[str, str]] = []
        self.node.create_subscription(DiagnosticArray, 'diagnostics', self._on_diag, 10)
        self.joints_sent = 0
        self.images_sent = 0

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == 'recorder':
                self.reports.append(convert.diagnostic_values(status))

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

    def publish(self, count: int, images: bool = False) -> None:
        """
        ``count`` JointStates k (position k), one per 20 ms; with ``images`` a best-effort
        image for every 5th (its stamp is that state's).
        """
        next_tick = time.monotonic()
        for _ in range(count):
            while time.monotonic() < next_tick:
                self.executor.spin_once(timeout_sec=max(0.0, next_tick - time.monotonic()))
            k = self.joints_sent
            stamp = self.node.get_clock().now().nanoseconds
            self.pub_joints.publish(convert.joint_state_msg(stamp, ['a', 'b'], [k, -k]))
            self.joints_sent += 1
            if images and k % 5 == 0:
                self.publish_image(stamp)
            next_tick += 0.02

    def publish_image(self, stamp: int) -> None:
        rgb = np.full((4, 6, 3), self.images_sent % 256, np.uint8)
        self.pub_image.publish(convert.image_msg(stamp, rgb))
        self.images_sent += 1

    def wait_report(self, check, what: str) -> dict[str, str]:
        """The first recorder report from now on for which ``check(report)`` holds."""
        seen = len(self.reports)
        end = time.monotonic() + WAIT_S
        while not any(check(r) for r in self.reports[seen:]):
            assert time.monotonic() < end, f'no recorder report of {what} in {WAIT_S} s: ' \
                f'{self.reports[-1:]}'
            self.executor.spin_once(timeout_sec=0.05)
        return next(r for r in self.reports[seen:] if check(r))

    def wait_recorded(self, messages: int) -> dict[str, str]:
        """Until the recorder reports ``messages`` received and written (none pending)."""
        return self.wait_report(lambda r: int(r['messages']) >= messages and
                                r['pending'] == '0', f'{messages} messages written')

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
    proc, bag = start_recorder(tmp_path, ros_domain, TOPICS)
    try:
        graph.wait_until_recorded()
        graph.wait_recorded(1)                            # episode 0 first
        # Episode 1 starts after 75 states: each step waits until the recorder reports
        # everything sent before it written, so bag time orders them whatever the load
        # (only these topics are recorded: the count is exact). Then best-effort images:
        # once one is in, as many as arrive.
        graph.publish(75)
        graph.wait_recorded(75 + 1)
        graph.pub_episode.publish(Int32(data=1))
        graph.wait_recorded(75 + 2)
        graph.publish(75)
        graph.wait_recorded(150 + 2)
        for _ in range(10):
            graph.publish_image(graph.node.get_clock().now().nanoseconds)
            graph.spin_for(0.1)
        graph.wait_recorded(150 + 2 + 1)
    finally:
        code = stop(proc, signal.SIGINT)
    log = (tmp_path / 'recorder.log').read_text()
    assert code == 0, log
    assert any(float(r['rate_hz']) > 0 for r in graph.reports), graph.reports
    assert graph.reports[-1]['dropped'] == '0', graph.reports[-1]

    loaded = read_bag(bag)
    assert set(loaded) == set(TOPICS)
    # Reliable topic: every message, in order, bytes untouched.
    joints = joint_state_series(loaded['/joint_states'])
    np.testing.assert_array_equal(joints.position[:, 0], np.arange(graph.joints_sent))
    # Best effort: some may go missing (a busy machine drops more).
    images = loaded['/camera/color/image_raw']
    assert 1 <= len(images) <= graph.images_sent == 10
    assert images[0][1].encoding == 'rgb8'
    eps = episodes(loaded)
    assert [e.index for e in eps] == [0, 1]
    assert len(joints.between(eps[0].start_ns, eps[0].end_ns)) == 75
    assert not (bag / '.partial').exists()


def test_sigkill_keeps_everything_flushed(tmp_path, ros_domain, graph):
    proc, bag = start_recorder(tmp_path, ros_domain)          # every topic
    try:
        graph.wait_until_recorded()
        graph.publish(150, images=True)
        # a report once most of the stream is in closed segments: what must survive
        report = graph.wait_report(lambda r: int(r['flushed']) >= 100, '100 flushed')
        flushed_reported = int(report['flushed'])
    finally:
        stop(proc, signal.SIGKILL)
    loaded = read_bag(bag)
    assert '/rosout' not in loaded and '/parameter_events' not in loaded
    recorded = sum(len(v) for v in loaded.values())
    assert recorded >= flushed_reported >= 100
    joints = joint_state_series(loaded['/joint_states'])
    # A contiguous prefix of what was sent, missing at most the open segment.
    np.testing.assert_array_equal(joints.position[:, 0], np.arange(len(joints)))
    assert len(joints) <= graph.joints_sent
