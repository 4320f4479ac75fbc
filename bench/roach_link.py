#!/usr/bin/env python3
"""
VelociRoACH radio link figures: RoachDriver against the emulator over a pty (real pyserial).

:func:`measure_roach_link` returns one dict:

- ``telemetry_rate_hz``: records received per second while streaming (emulator set to
  ``rate_hz``); ``telemetry_gap_p99_ms``: 99th percentile of the gaps between records;
- ``echo_rtt_ms_p50`` / ``_p99`` / ``_max``: ECHO command -> echoed reply, ``round_trips``
  times (host -> pty -> emulator -> pty -> host; no radio air time);
- ``loss_detect_s``: radio cut -> driver reports the link lost (budget ``link_timeout_s``);
  ``recovery_s``: radio back -> link reported ok again;
- ``rejected_frames``: checksum/length rejects while 10 corrupt then 10 truncated frames
  were injected (>= 20: all rejected), ``link_losses_from_corruption`` (must be 0).

    python bench/roach_link.py [--twin] [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from dexmpc_ros.robots.roach.firmware import EmulatorConfig, RoachFirmwareEmulator, TwinBody
from dexmpc_ros.robots.roach.driver import RoachDriver, RoachDriverConfig


def _wait(predicate, timeout: float) -> float:
    """Seconds until predicate() holds (polled every 1 ms); NaN on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.001)
    return float('nan')


def measure_roach_link(duration_s: float = 2.0, round_trips: int = 50, rate_hz: float = 50.0,
                       link_timeout_s: float = 0.3, twin: bool = False) -> dict:
    """Measure the roach link end to end; see the module docstring for the keys."""
    body = None
    if twin:
        from dexmpc_ros.robots.roach.twin import RoachTwin
        body = TwinBody(RoachTwin(task='straight', seed=0))
    config = EmulatorConfig(telemetry_rate_hz=rate_hz, command_timeout_s=0.0)
    with RoachFirmwareEmulator(body=body, config=config) as emu, \
            RoachDriver(RoachDriverConfig(port=emu.path, link_timeout_s=link_timeout_s)) as drv:
        drv.write([25.0, 25.0])
        stamps, start = [], time.monotonic()
        records0 = drv.stats.records
        while time.monotonic() - start < duration_s:
            stamp = drv.read().stamp
            if not stamps or stamp != stamps[-1]:
                stamps.append(stamp)
            time.sleep(0.001)
        rate = (drv.stats.records - records0) / (time.monotonic() - start)
        gaps = np.diff(stamps) * 1e3
        rtt = np.array([drv.round_trip() for _ in range(round_trips)]) * 1e3

        emu.lose_link(hears=True)
        detect = _wait(lambda: not drv.link_ok, 5 * link_timeout_s)
        emu.restore_link()
        recover = _wait(lambda: drv.link_ok, 5 * link_timeout_s)

        # Bursts of 10 bad frames (0.2 s at 50 Hz) stay inside the loss budget.
        before = drv.stats
        for inject in (emu.corrupt_next, emu.truncate_next):
            records = drv.stats.records
            inject(10)
            _wait(lambda: drv.stats.records > records + 20, 5.0)
        after = drv.stats
    return {
        'body': 'twin' if twin else 'kinematic',
        'telemetry_rate_hz': round(rate, 2), 'telemetry_rate_set_hz': rate_hz,
        'telemetry_gap_p99_ms': round(float(np.percentile(gaps, 99)), 2) if len(gaps) else None,
        'echo_rtt_ms_p50': round(float(np.percentile(rtt, 50)), 3),
        'echo_rtt_ms_p99': round(float(np.percentile(rtt, 99)), 3),
        'echo_rtt_ms_max': round(float(rtt.max()), 3),
        'link_timeout_s': link_timeout_s,
        'loss_detect_s': round(detect, 3), 'recovery_s': round(recover, 3),
        'rejected_frames': (after.checksum_errors + after.length_errors
                            - before.checksum_errors - before.length_errors),
        'link_losses_from_corruption': after.link_losses - before.link_losses,
    }


def main() -> None:
    """CLI: print the figures as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--twin', action='store_true', help='back the emulator with RoachTwin')
    parser.add_argument('--duration', type=float, default=2.0, help='streaming window [s]')
    args = parser.parse_args()
    print(json.dumps(measure_roach_link(duration_s=args.duration, twin=args.twin)))


if __name__ == '__main__':
    main()
