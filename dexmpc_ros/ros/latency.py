"""
What the safety supervisor adds to a command's trip, against one bare rclpy hop.

Three processes on one machine, all stamping and timing with the wall clock
(``time.time_ns()``, the clock ROS node time uses):

- the **sender** (``python -m dexmpc_ros.ros.latency``) publishes ``joint_states`` at the
  control rate (so the supervisor is armed and its state fresh) and, every tick, the same
  in-limits command twice, each stamped just before its publish: on ``bench/bare`` straight
  to the receiver, and on ``command_raw`` to the safety node; the tick number modulo
  :data:`TICK_MODULUS` rides in each stamp's nanoseconds below the microsecond, so the
  receiver pairs a tick's two messages however far apart load pushed their publishes;
- the **safety node** (the real one, auto-armed) filters ``command_raw`` into ``command``;
- the **receiver** (:func:`measure`, in the caller's process) timestamps both on arrival.

bare hop = receive - stamp on ``bench/bare``; path = receive - stamp on ``command``;
added = path - bare of the same tick: one more hop plus the supervisor's own work.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.probe import GraphProbe
from dexmpc_ros.runtime.ros_env import ros_environment

BARE_TOPIC = 'bench/bare'
#: Stamps carry ``tick % TICK_MODULUS`` in their sub-microsecond nanoseconds.
TICK_MODULUS = 1000


def tick_stamp_ns(now_ns: int, tick: int) -> int:
    """``now_ns`` truncated to the microsecond, plus the tick number modulo 1000 [ns]."""
    return now_ns // TICK_MODULUS * TICK_MODULUS + tick % TICK_MODULUS


@dataclass(frozen=True)
class LatencyResult:
    """Latencies [us] per tick: bare (k,), path (k,), added = path - bare (k,)."""

    bare_us: np.ndarray
    path_us: np.ndarray
    added_us: np.ndarray

    def percentiles(self) -> dict[str, float]:
        """p50/p99 of each series [us]."""
        out = {}
        for name in ('bare', 'path', 'added'):
            values = getattr(self, f'{name}_us')
            out[f'{name}_p50_us'] = float(np.percentile(values, 50))
            out[f'{name}_p99_us'] = float(np.percentile(values, 99))
        return out


class LatencySender(Node):
    """Publishes joint_states at the control rate and each command on both paths."""

    def __init__(self, robot: str, rate_hz: float) -> None:
        super().__init__('latency_sender')
        self.spec = load_robot_spec(robot)
        self.pub_state = self.create_publisher(JointState, 'joint_states', 10)
        self.pub_raw = self.create_publisher(JointTrajectory, 'command_raw', 10)
        self.pub_bare = self.create_publisher(JointTrajectory, BARE_TOPIC, 10)
        self.tick = 0
        self.create_timer(self.spec.period_s, self._publish_state)
        self.create_timer(1.0 / rate_hz, self._publish_commands)

    def _publish_state(self) -> None:
        n = len(self.spec.joints)
        self.pub_state.publish(convert.joint_state_msg(
            time.time_ns(), self.spec.joint_names, self.spec.default_pose, np.zeros(n),
            np.zeros(n)))

    def _publish_commands(self) -> None:
        pubs = [self.pub_bare, self.pub_raw]
        if self.tick % 2:
            pubs.reverse()  # neither path always goes first
        for pub in pubs:
            pub.publish(convert.command_msg(tick_stamp_ns(time.time_ns(), self.tick),
                                            self.spec.command_names,
                                            self.spec.default_command,
                                            self.spec.command_interface))
        self.tick += 1


def measure(domain_id: int, robot: str = 'widowx', seconds: float = 10.0,
            rate_hz: float = 100.0, warmup_s: float = 2.0, log_dir: Path | None = None,
            min_ticks: int = 0) -> LatencyResult:
    """
    Run sender + safety node as processes, receive here, return per-tick latencies.

    Args:
        domain_id: ROS domain to run in (nothing else should use it).
        robot: robot spec for the safety node and the commands.
        seconds: measuring time after warm-up [s].
        rate_hz: command ticks per second (each tick: one bare, one filtered command).
        warmup_s: time discarded after the safety node armed [s].
        log_dir: where the two processes' logs go (default: discarded).
        min_ticks: after ``seconds``, keep measuring until this many filtered commands
            are in (a count, so a loaded machine measures as many ticks, only slower;
            AssertionError if they do not come within a minute).
    """
    env = ros_environment(domain_id=domain_id)
    logs = [subprocess.DEVNULL, subprocess.DEVNULL]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logs = [open(log_dir / f'{name}.log', 'wb')  # noqa: SIM115
                for name in ('safety', 'sender')]
    safety = subprocess.Popen(
        [sys.executable, '-m', 'dexmpc_ros.ros.safety_node', '--ros-args', '-p',
         f'robot:={robot}', '-p', 'auto_arm:=true', '-p',
         f'max_command_rate_hz:={4.0 * rate_hz}'],
        env=env, stdout=logs[0], stderr=subprocess.STDOUT)
    sender = subprocess.Popen(
        [sys.executable, '-m', 'dexmpc_ros.ros.latency', '--robot', robot, '--rate-hz',
         str(rate_hz), '--ros-args'], env=env, stdout=logs[1], stderr=subprocess.STDOUT)
    probe = GraphProbe(domain_id, {'command': JointTrajectory, BARE_TOPIC: JointTrajectory},
                       name='latency_receiver')
    try:
        probe.wait_for_state('ARMED', 60.0)
        probe.spin_for(warmup_s)
        start = time.time_ns()
        probe.spin_for(seconds)
        filtered = probe.received['command']
        probe.spin_until(
            lambda: sum(convert.time_to_ns(m.header.stamp) >= start for _, m in filtered)
            >= min_ticks, 60.0, f'{min_ticks} filtered commands')
    finally:
        probe.close()
        for proc in (sender, safety):
            proc.terminate()
            proc.wait(timeout=10)
        for log in logs:
            if hasattr(log, 'close'):
                log.close()
    return _pair(probe.received[BARE_TOPIC], probe.received['command'], start)


def _pair(bare: list, path: list, start_ns: int) -> LatencyResult:
    """Match each tick's bare and filtered message: same tick number, nearest stamp."""
    def series(received):
        stamps = np.array([convert.time_to_ns(m.header.stamp) for _, m in received])
        arrival = np.array([t for t, _ in received])
        keep = stamps >= start_ns
        return stamps[keep], arrival[keep]

    b_stamp, b_arrival = series(bare)
    p_stamp, p_arrival = series(path)
    if not len(b_stamp) or not len(p_stamp):
        raise RuntimeError(f'no messages measured (bare {len(b_stamp)}, path {len(p_stamp)})')
    by_tick: dict[int, list[int]] = {}
    for i, stamp in enumerate(b_stamp):
        by_tick.setdefault(int(stamp) % TICK_MODULUS, []).append(i)
    match = np.zeros(len(p_stamp), dtype=np.int64)
    for k, stamp in enumerate(p_stamp):
        candidates = by_tick.get(int(stamp) % TICK_MODULUS, [0])
        match[k] = min(candidates, key=lambda i: abs(int(b_stamp[i]) - int(stamp)))
    # a tick number repeats every TICK_MODULUS ticks (10 s at 100 Hz): within 1 s it is ours
    same_tick = ((b_stamp[match] % TICK_MODULUS == p_stamp % TICK_MODULUS)
                 & (np.abs(b_stamp[match] - p_stamp) < 1_000_000_000))
    bare_us = (b_arrival - b_stamp) * 1e-3
    path_us = (p_arrival - p_stamp) * 1e-3
    added_us = path_us[same_tick] - bare_us[match[same_tick]]
    return LatencyResult(bare_us, path_us, added_us)


def main(argv: list[str] | None = None) -> int:
    """Run the sender (``--robot``, ``--rate-hz``; then ``--ros-args ...``)."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index('--ros-args') if '--ros-args' in argv else len(argv)
    parser = argparse.ArgumentParser(description='latency sender (see dexmpc_ros.ros.latency)')
    parser.add_argument('--robot', default='widowx')
    parser.add_argument('--rate-hz', type=float, default=100.0)
    args = parser.parse_args(argv[:split])
    ros_args = [sys.argv[0], *argv[split:]] if split < len(argv) else [sys.argv[0]]
    return run_node(lambda: LatencySender(args.robot, args.rate_hz), ros_args)


if __name__ == '__main__':
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    sys.exit(main())
