#!/usr/bin/env python3
"""
Hardware-driver loop rates over the emulated links (issue 5).

widowx: WidowXDriver (real dynamixel_sdk) against the Dynamixel bus emulator at 1 Mbps
(wire time emulated), run as a separate process like the real servos: each cycle is one
read() (sync read of present current/velocity/position of 9 servos, plus voltage,
temperature and error status every 10th cycle) and one write() (sync write of 9 goal
positions). Target: >= 100 Hz.

Prints a table (rate [Hz], p50/p99 cycle [ms]) and, as the last line, one JSON object.

    python bench/drivers.py                 # 5 s per link
    python bench/drivers.py --seconds 2 --in-process

Adding a link (e.g. the roach's XBee): write ``bench_<link>(seconds, in_process) -> dict``
returning at least ``cycles``, ``rate_hz``, ``p50_ms``, ``p99_ms`` and a ``what`` line,
and register it in ``BENCHES``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.emulators.dynamixel_bus import widowx_bus_emulator
from dexmpc_ros.robots.drivers.widowx import WidowXDriver, WidowXDriverConfig

REPO = Path(__file__).resolve().parents[1]
TARGET_HZ = 100.0


@contextmanager
def widowx_bus(in_process: bool):
    """Yield the port path of a running WidowX bus emulator (subprocess by default)."""
    if in_process:
        with widowx_bus_emulator() as emulator:
            yield emulator.path
        return
    port = os.path.join(tempfile.mkdtemp(prefix='dexmpc-bench-'), 'ttyDXL')
    proc = subprocess.Popen([sys.executable, '-m', 'dexmpc_ros.emulators.dynamixel_bus',
                             '--port', port, '--robot', 'widowx'], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = proc.stdout.readline()          # printed once the bus serves
        if 'Dynamixel bus on' not in ready:
            raise RuntimeError(f'bus emulator did not start: {ready}{proc.stdout.read()}')
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_widowx(seconds: float, in_process: bool) -> dict:
    """read() + write() cycles of the WidowX driver for ``seconds``."""
    spec = load_robot_spec('widowx')
    with widowx_bus(in_process) as port:
        with WidowXDriver(WidowXDriverConfig(port=port), spec) as arm:
            arm.enable()
            home = spec.default_command
            amplitude = np.array([0.3, 0.2, 0.2, 0.3, 0.3, 0.3, 0.005])
            cycles = []
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                t0 = time.perf_counter()
                arm.read()
                arm.write(home + amplitude * np.sin(2 * np.pi * 0.5 * (t0 - start)))
                cycles.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - start
            arm.disable()
    ms = np.asarray(cycles) * 1e3
    return {'what': 'WidowX read (sync read 9 servos) + write (sync write 9 goals), 1 Mbps',
            'cycles': len(cycles), 'rate_hz': round(len(cycles) / elapsed, 1),
            'p50_ms': round(float(np.percentile(ms, 50)), 3),
            'p99_ms': round(float(np.percentile(ms, 99)), 3),
            'max_ms': round(float(ms.max()), 3),
            'emulator': 'in-process thread' if in_process else 'separate process'}


# Register further links here (e.g. 'roach': bench_roach, over the XBee emulator).
BENCHES = {'widowx': bench_widowx}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=5.0, help='per link [s]')
    parser.add_argument('--links', nargs='+', default=list(BENCHES), choices=list(BENCHES))
    parser.add_argument('--in-process', action='store_true',
                        help='run the emulator as a thread of this process (shares the GIL)')
    args = parser.parse_args()
    results = {name: BENCHES[name](args.seconds, args.in_process) for name in args.links}
    print(f'{"link":8} {"cycles":>7} {"rate Hz":>8} {"p50 ms":>7} {"p99 ms":>7} '
          f'{"max ms":>7}  target')
    for name, r in results.items():
        verdict = 'ok' if r['rate_hz'] >= TARGET_HZ else 'BELOW'
        print(f'{name:8} {r["cycles"]:7d} {r["rate_hz"]:8.1f} {r["p50_ms"]:7.2f} '
              f'{r["p99_ms"]:7.2f} {r["max_ms"]:7.2f}  >= {TARGET_HZ:.0f} Hz {verdict}'
              f'   ({r["what"]}; emulator: {r["emulator"]})')
    print(json.dumps({'target_hz': TARGET_HZ, **results}))
    return 0 if all(r['rate_hz'] >= TARGET_HZ for r in results.values()) else 1


if __name__ == '__main__':
    raise SystemExit(main())
