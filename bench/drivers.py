#!/usr/bin/env python3
"""
Hardware-driver figures over the emulated links (issue 5): WidowX bus and roach radio.

widowx: WidowXDriver (real dynamixel_sdk) against the Dynamixel bus emulator at 1 Mbps
(wire time emulated), run as a separate process like the real servos: each cycle is one
read() (sync read of present current/velocity/position of 9 servos, plus voltage,
temperature and error status every 10th cycle) and one write() (sync write of 9 goal
positions). Target: >= 100 Hz.

roach: RoachDriver (real pyserial) against the VelociRoACH firmware emulator on a pty
(``bench/roach_link.py``; the emulator runs as a thread of this process, since the bench
cuts its radio): telemetry rate (target: >= 95 % of the 50 Hz the firmware streams), ECHO
round trip (no serial/radio wire time is emulated; target: p99 within one 10 Hz control
period), radio cut -> link loss reported (target: within link_timeout_s + one control
period) and radio back -> link ok.

Prints one table (link, figure, measured, target, verdict) and, as the last line of
stdout, one JSON object with every figure. Exit status 1 if a target is missed.

    python bench/drivers.py                          # 5 s per link
    python bench/drivers.py --seconds 2 --links roach

Adding a link: write ``bench_<link>(seconds, in_process) -> dict`` (its figures) and
``rows_<link>(figures) -> list[Row]`` (what the table shows, with targets), and register
both in ``BENCHES``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots.widowx.emulator import widowx_bus_emulator
from dexmpc_ros.robots.widowx.driver import WidowXDriver, WidowXDriverConfig

REPO = Path(__file__).resolve().parents[1]
TARGET_HZ = 100.0                 # WidowX control loop
ROACH_PERIOD_S = 0.1              # roach control period (config/robots/roach.yaml: 10 Hz)


def _load_roach_link():
    """bench/roach_link.py by file path: bench/ is not a package (works as a script too)."""
    spec = importlib.util.spec_from_file_location('dexmpc_bench_roach_link',
                                                  Path(__file__).with_name('roach_link.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Row:
    """One table line: a figure of a link, as measured, against its target."""

    link: str
    figure: str
    measured: str
    target: str
    ok: bool


@contextmanager
def widowx_bus(in_process: bool):
    """Yield the port path of a running WidowX bus emulator (subprocess by default)."""
    if in_process:
        with widowx_bus_emulator() as emulator:
            yield emulator.path
        return
    port = os.path.join(tempfile.mkdtemp(prefix='dexmpc-bench-'), 'ttyDXL')
    proc = subprocess.Popen([sys.executable, '-m', 'dexmpc_ros.robots.widowx.emulator',
                             '--port', port], cwd=REPO,
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


def rows_widowx(r: dict) -> list[Row]:
    """The WidowX loop rate against 100 Hz."""
    return [Row('widowx', 'read + write cycle',
                f'{r["rate_hz"]:.1f} Hz (cycle p50 {r["p50_ms"]:.2f} / p99 {r["p99_ms"]:.2f} / '
                f'max {r["max_ms"]:.2f} ms, {r["cycles"]} cycles)',
                f'>= {TARGET_HZ:.0f} Hz', r['rate_hz'] >= TARGET_HZ)]


def bench_roach(seconds: float, in_process: bool) -> dict:
    """Roach link figures (``measure_roach_link``), streaming for ``seconds``."""
    del in_process                   # the bench injects radio loss: always in-process
    figures = _load_roach_link().measure_roach_link(duration_s=seconds, round_trips=100)
    return {'what': 'RoachDriver over XBee API frames, 57600 baud port (no wire time)',
            'emulator': 'in-process thread', **figures}


def rows_roach(r: dict) -> list[Row]:
    """Telemetry rate, echo round trip, loss detection and recovery against their targets."""
    rate_min = 0.95 * r['telemetry_rate_set_hz']
    loss_max = r['link_timeout_s'] + ROACH_PERIOD_S
    return [
        Row('roach', 'telemetry rate',
            f'{r["telemetry_rate_hz"]:.1f} Hz (gap p99 {r["telemetry_gap_p99_ms"]:.1f} ms)',
            f'>= {rate_min:.1f} Hz', r['telemetry_rate_hz'] >= rate_min),
        Row('roach', 'echo round trip',
            f'p50 {r["echo_rtt_ms_p50"]:.2f} / p99 {r["echo_rtt_ms_p99"]:.2f} / '
            f'max {r["echo_rtt_ms_max"]:.2f} ms',
            f'p99 <= {ROACH_PERIOD_S * 1e3:.0f} ms', r['echo_rtt_ms_p99'] <= ROACH_PERIOD_S * 1e3),
        Row('roach', 'radio cut -> link lost',
            f'{r["loss_detect_s"]:.3f} s (link_timeout_s {r["link_timeout_s"]} s)',
            f'<= {loss_max:.2f} s', r['loss_detect_s'] <= loss_max),
        Row('roach', 'radio back -> link ok', f'{r["recovery_s"]:.3f} s',
            f'<= {ROACH_PERIOD_S:.2f} s', r['recovery_s'] <= ROACH_PERIOD_S),
        Row('roach', 'bad frames rejected',
            f'{r["rejected_frames"]} rejected (20 bad injected), '
            f'{r["link_losses_from_corruption"]} link losses',
            '>= 20, 0 losses',
            r['rejected_frames'] >= 20 and r['link_losses_from_corruption'] == 0),
    ]


BENCHES = {'widowx': (bench_widowx, rows_widowx), 'roach': (bench_roach, rows_roach)}


def print_table(rows: list[Row]) -> None:
    """Aligned columns: link, figure, measured, target, verdict."""
    header = Row('link', 'figure', 'measured', 'target', True)
    widths = [max(len(getattr(r, f)) for r in [header, *rows])
              for f in ('link', 'figure', 'measured', 'target')]
    for r in [header, *rows]:
        verdict = 'verdict' if r is header else ('ok' if r.ok else 'MISSED')
        cells = (r.link, r.figure, r.measured, r.target)
        print('  '.join(c.ljust(w) for c, w in zip(cells, widths)) + '  ' + verdict)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=5.0, help='per link [s]')
    parser.add_argument('--links', nargs='+', default=list(BENCHES), choices=list(BENCHES))
    parser.add_argument('--in-process', action='store_true',
                        help='run the WidowX emulator as a thread of this process (shares '
                             'the GIL)')
    parser.add_argument('--verbose', action='store_true',
                        help='show driver warnings (the injected faults log some)')
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format='%(levelname)s %(name)s: %(message)s')
    results, rows = {}, []
    for name in args.links:
        bench, to_rows = BENCHES[name]
        results[name] = bench(args.seconds, args.in_process)
        rows += to_rows(results[name])
    print_table(rows)
    for name, r in results.items():
        print(f'  {name}: {r["what"]}; emulator: {r["emulator"]}')
    print(json.dumps({'target_hz': TARGET_HZ, 'roach_period_s': ROACH_PERIOD_S, **results}))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == '__main__':
    raise SystemExit(main())
