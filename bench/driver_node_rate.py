#!/usr/bin/env python3
"""
Driver node publish rates over DDS: the roach driver node (real RoachDriver, pyserial)
against the firmware emulator on a pty, as in test_driver_node.py.

The tests check one ``imu`` per ``joint_states`` reading (a count per stamp); the rate on
the wall clock, which load lowers, is measured here: ``joint_states`` and ``imu`` received
per second at an outside node, and the p99 gap between them, against the robot's control
rate.

Prints one table and, as the last line, one JSON object with the figures.

    python bench/driver_node_rate.py              # 10 s
    python bench/driver_node_rate.py --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

from sensor_msgs.msg import Imu, JointState  # noqa: E402

from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.wire.pty_link import PtyLink  # noqa: E402
from dexmpc_ros.robots.roach.firmware import RoachFirmwareEmulator  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from dexmpc_ros.runtime.domains import reserve_free_domain  # noqa: E402
from dexmpc_ros.runtime.ros_env import ros_environment  # noqa: E402


def rate_figures(received: list, seconds: float) -> dict[str, float]:
    """Messages per second and p99 gap [ms] of ``[(receive ns, msg)]``."""
    t_ns = np.array([t for t, _ in received], dtype=np.int64)
    gaps_ms = np.diff(t_ns) * 1e-6 if len(t_ns) > 1 else np.array([float('nan')])
    return {'rate_hz': len(t_ns) / seconds, 'gap_p99_ms': float(np.percentile(gaps_ms, 99))}


def measure(seconds: float, domain: int, work: Path) -> dict:
    """Start emulator + driver node, record ``seconds`` of joint_states and imu."""
    spec = load_robot_spec('roach')
    with RoachFirmwareEmulator(PtyLink(str(work / 'ttyROACH'), drop_when_full=True)) as emu:
        params = work / 'params.yaml'
        params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
            'robot': 'roach', 'driver': 'roach', 'driver_options': f'{{port: {emu.path}}}'}}}))
        log = (work / 'driver.log').open('w')
        proc = subprocess.Popen([sys.executable, '-m', 'dexmpc_ros.ros.driver_node',
                                 '--ros-args', '--params-file', str(params)],
                                env=ros_environment(domain_id=domain), stdout=log,
                                stderr=subprocess.STDOUT)
        probe = GraphProbe(domain, {'joint_states': JointState, 'imu': Imu}, name='rate_bench')
        try:
            probe.spin_until(lambda: len(probe.received['imu']) >= 5, 60.0, 'imu messages')
            for topic in probe.received.values():
                topic.clear()
            start = time.monotonic()
            probe.spin_for(seconds)
            elapsed = time.monotonic() - start
        finally:
            probe.close()
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
    return {'control_rate_hz': spec.control_rate_hz, 'seconds': elapsed,
            **{f'{topic}_{k}': v for topic in ('joint_states', 'imu')
               for k, v in rate_figures(probe.received[topic], elapsed).items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--seconds', type=float, default=10.0)
    args = parser.parse_args()
    with reserve_free_domain(range(101, 0, -1), 'bench/driver_node_rate.py') as claim, \
            tempfile.TemporaryDirectory() as tmp:
        figures = measure(args.seconds, claim.domain_id, Path(tmp))
    print(f'roach driver node, {figures["seconds"]:.1f} s, control rate '
          f'{figures["control_rate_hz"]:g} Hz')
    print(f'{"topic":>12}  {"rate Hz":>8}  {"gap p99 ms":>10}')
    for topic in ('joint_states', 'imu'):
        print(f'{topic:>12}  {figures[f"{topic}_rate_hz"]:8.2f}  '
              f'{figures[f"{topic}_gap_p99_ms"]:10.1f}')
    print(json.dumps({'bench': 'driver_node_rate', **figures}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
