#!/usr/bin/env python3
"""
Safety supervisor benchmark (issue 3): latency, e-stop, watchdog, heartbeat, fuzzing.

Every node runs as its own process over real DDS (loopback only), as under `dexmpc up`:

1. latency: supervisor-added latency vs one bare rclpy hop in the same run
   (dexmpc_ros/ros/latency.py): p50/p99 [us]; the supervisor's own filter time from its
   diagnostics.
2. e-stop during motion (each robot's scripted/random-walk sim): e-stop -> hold on the
   wire, -> stopped (< 5 % of the velocity limit), -> settled (< 1 %), repeated.
3. controller SIGKILL mid-motion (fresh run per trial): kill -> first hold, -> stopped.
4. frozen twin (SIGSTOP): freeze -> supervisor ESTOPPED (state_lost), drift after thaw.
5. fuzzing: the `*_fuzz_sim` experiments (1 kHz hostile commands) per robot, audited on
   the twin's measured joints from the bag; plus the same fuzzer in process on a simulated
   clock (supervisor + twin, no DDS), many more commands.

Prints one table per section and, as the last line, one JSON object with every figure.
Plots (latency.png: latency histograms; stop_times.png: per-trial hold and stop times) go
to --out.

    python bench/safety.py            # full: >= 100k fuzzed commands over DDS, ~7 min
    python bench/safety.py --quick    # smaller, ~3 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('MUJOCO_GL', 'egl')

from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Int32  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexmpc_ros.core.message_fields import command_values  # noqa: E402
from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.data.bag_reader import read_bag  # noqa: E402
from dexmpc_ros.ros import fault_trials, latency  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from dexmpc_ros.runtime.domains import reserve_free_domain  # noqa: E402
from dexmpc_ros.runtime.experiment import load_experiment  # noqa: E402
from dexmpc_ros.runtime.ros_env import ros_environment  # noqa: E402
from dexmpc_ros.runtime.runner import started  # noqa: E402
from dexmpc_ros.safety.audit import audit, fuzz_in_process  # noqa: E402

#: robot -> experiment with a moving controller (camera off: it only costs CPU here)
MOTION = {'widowx': ('widowx_scripted_sim', []),
          'hand24': ('hand_random_walk_sim', ['twin.camera=false']),
          'roach': ('roach_scripted_sim', [])}
FUZZ = {'widowx': 'widowx_fuzz_sim', 'hand24': 'hand_fuzz_sim', 'roach': 'roach_fuzz_sim'}
PROBE_TOPICS = {'command': JointTrajectory, 'joint_states': JointState, 'episode': Int32}


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """Print a fixed-width table."""
    cells = [[f'{c:.3g}' if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f'\n{title}')
    print('  '.join(h.rjust(w) for h, w in zip(header, widths)))
    for row in cells:
        print('  '.join(c.rjust(w) for c, w in zip(row, widths)))


def stats(values: list[float]) -> dict[str, float]:
    """Median, max and count of the finite values."""
    arr = np.array([v for v in values if np.isfinite(v)])
    if not arr.size:
        return {'median': float('nan'), 'max': float('nan'), 'n': 0}
    return {'median': float(np.median(arr)), 'max': float(arr.max()), 'n': int(arr.size)}


def run_latency(domain: int, seconds: float, out: Path) -> dict:
    result = latency.measure(domain, 'widowx', seconds=seconds, log_dir=out / 'latency')
    figures = result.percentiles()
    figures['samples'] = len(result.added_us)
    figures['added_over_bare_p99'] = figures['added_p99_us'] / figures['bare_p99_us']
    figures['added_over_bare_p50'] = figures['added_p50_us'] / figures['bare_p50_us']
    table('1. latency, widowx commands at 100 Hz [us]', ['series', 'p50', 'p99'],
          [[name, figures[f'{name}_p50_us'], figures[f'{name}_p99_us']]
           for name in ('bare', 'path', 'added')])
    print(f'added / bare hop: p50 {figures["added_over_bare_p50"]:.2f}x, '
          f'p99 {figures["added_over_bare_p99"]:.2f}x (acceptance: p99 <= 2x), '
          f'{figures["samples"]} ticks')
    _plot_latency(result, out / 'latency.png')
    return figures


def _plot_latency(result: latency.LatencyResult, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    top = np.percentile(result.path_us, 99.5)
    bins = np.linspace(0, top, 80)
    for name in ('bare', 'path', 'added'):
        ax.hist(getattr(result, f'{name}_us'), bins=bins, histtype='step', label=name)
    ax.set_xlabel('latency [us]')
    ax.set_ylabel('messages')
    ax.set_title('command latency: bare rclpy hop vs through the safety supervisor')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_trials(times: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    kinds = list(next(iter(times.values())))
    for r, (robot, series) in enumerate(times.items()):
        for k, kind in enumerate(kinds):
            x = np.full(len(series[kind]), k + 0.15 * (r - 1))
            ax.scatter(x, series[kind], s=18, label=robot if k == 0 else None,
                       color=f'C{r}')
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylabel('time after the event [ms]')
    ax.set_title('e-stop and controller kill: hold on the wire, joints stopped (per trial)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_estop_and_freeze(domain: int, robot: str, trials: int, out: Path) -> dict:
    name, overrides = MOTION[robot]
    spec = load_robot_spec(robot)
    estops, freeze = [], {}
    experiment = load_experiment(name, overrides)
    episode_s = fault_trials.episode_seconds(experiment, spec)
    with started(experiment, out / f'estop_{robot}', domain) as runner:
        probe = GraphProbe(domain, PROBE_TOPICS)
        try:
            fault_trials.ensure_armed(probe)
            for _ in range(trials):
                probe.spin_for(2.0)
                estops.append(fault_trials.estop_trial(probe, spec, episode_s=episode_s))
            probe.spin_for(1.5)
            freeze = fault_trials.freeze_trial(probe, runner, spec)
        finally:
            probe.close()
    return {'estop': estops, 'freeze': freeze}


def run_kill(domain: int, robot: str, trials: int, out: Path) -> list[dict]:
    name, overrides = MOTION[robot]
    spec = load_robot_spec(robot)
    results = []
    experiment = load_experiment(name, overrides)
    episode_s = fault_trials.episode_seconds(experiment, spec)
    for k in range(trials):
        with started(experiment, out / f'kill_{robot}_{k}', domain) as runner:
            probe = GraphProbe(domain, PROBE_TOPICS)
            try:
                fault_trials.ensure_armed(probe)
                probe.spin_for(2.0 + 0.37 * k)  # kill at different phases of the motion
                results.append(fault_trials.kill_trial(probe, runner, spec, episode_s=episode_s))
            finally:
                probe.close()
    return results


def run_fuzz_dds(domain: int, robot: str, seconds: float, out: Path) -> dict:
    run_dir = out / f'fuzz_{robot}'
    env = ros_environment(domain_id=domain)
    result = subprocess.run(
        [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'up', FUZZ[robot], '--duration',
         str(seconds), '--output', str(run_dir), '--quiet'],
        env=env, capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise RuntimeError(f"{FUZZ[robot]} failed:\n"
                           f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    spec = load_robot_spec(robot)
    bag = read_bag(run_dir / 'bag', ['/joint_states', '/command', '/command_raw'])
    _, pos, vel = fault_trials.joint_arrays(bag['/joint_states'], spec)
    commands = np.array([command_values(m, spec.command_interface)
                         for _, m in bag['/command']])
    found = audit(spec, pos, vel, commands)
    status = json.loads((run_dir / 'status.jsonl').read_text().splitlines()[-1])
    safety = status['nodes']['safety']
    return {'fuzzed': len(bag['/command_raw']), 'violations': found.total,
            'position': found.position, 'workspace': found.workspace, 'command': found.command,
            'overspeed': found.overspeed, 'samples': found.samples,
            'forwarded': int(safety['passed']) + int(safety['clamped']),
            'worst_position': found.worst.get('position', 0.0),
            'worst_workspace': found.worst.get('workspace', 0.0),
            'filter_p99_us': float(safety.get('latency_us_p99', 'nan'))}


class SectionDomains:
    """
    A fresh reserved ROS domain for each section (no stale participants from the last one).

    Uses the project's picker (runtime/domains.py): domains a ``dexmpc up`` holds or a test
    session reserved are skipped, and the reservation is kept until the next section.
    """

    def __init__(self, start: int | None) -> None:
        self._order = list(range(start, 102)) if start is not None else list(range(101, 0, -1))
        self._used: set[int] = set()
        self._claim = None

    def fresh(self) -> int:
        if self._claim is not None:
            self._claim.release()
        candidates = [d for d in self._order if d not in self._used]
        self._claim = reserve_free_domain(candidates, 'bench/safety.py')
        self._used.add(self._claim.domain_id)
        return self._claim.domain_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--quick', action='store_true', help='fewer trials, shorter fuzzing')
    parser.add_argument('--out', type=Path, default=None, help='folder for plots and runs')
    parser.add_argument('--domain', type=int, default=None, help='ROS domain id')
    args = parser.parse_args()
    out = args.out or Path('runs') / time.strftime('bench_safety_%Y%m%d_%H%M%S')
    out.mkdir(parents=True, exist_ok=True)
    domains = SectionDomains(args.domain)
    domain = domains.fresh()
    quick = args.quick
    started_at = time.monotonic()
    report: dict = {'bench': 'safety', 'quick': quick}

    report['latency'] = run_latency(domain, 8.0 if quick else 20.0, out)
    domain = domains.fresh()

    estop_rows, kill_rows, freeze_rows = [], [], []
    trial_times: dict[str, dict[str, list[float]]] = {}
    report['estop'], report['kill'], report['freeze'] = {}, {}, {}
    for robot in MOTION:
        spec = load_robot_spec(robot)
        period_ms = spec.period_s * 1e3
        trials = 3 if quick else (8 if robot == 'widowx' else 4)
        res = run_estop_and_freeze(domain, robot, trials, out)
        domain = domains.fresh()
        kills = run_kill(domain, robot, 1 if quick else (4 if robot == 'widowx' else 2), out)
        domain = domains.fresh()
        trial_times[robot] = {
            'e-stop: hold sent': [t['hold_ms'] for t in res['estop']],
            'e-stop: stopped': [t['stop_ms'] for t in res['estop']],
            'kill: hold sent': [t['hold_ms'] for t in kills],
            'kill: stopped': [t['stop_ms'] for t in kills]}
        figures = {key: stats([t.get(key, float('nan')) for t in res['estop']])
                   for key in ('hold_ms', 'stop_ms', 'arm_stop_ms', 'settle_ms',
                               'drift_after_stop')}
        figures['latched_and_reset'] = all(t['latched'] == 1 and t['reset_ok'] == 1
                                           for t in res['estop'])
        figures['period_ms'] = period_ms
        report['estop'][robot] = figures
        estop_rows.append([robot, period_ms, figures['hold_ms']['median'],
                           figures['hold_ms']['max'], figures['stop_ms']['median'],
                           figures['stop_ms']['max'], figures['arm_stop_ms']['median'],
                           figures['arm_stop_ms']['max'], figures['settle_ms']['median'],
                           figures['drift_after_stop']['max'], figures['hold_ms']['n']])
        kfig = {key: stats([t.get(key, float('nan')) for t in kills])
                for key in ('hold_ms', 'stop_ms', 'arm_stop_ms', 'drift_after_stop')}
        kfig['all_constant_and_armed'] = all(t['constant'] == 1 and t['armed'] == 1
                                             for t in kills)
        kfig['bound_ms'] = max(100.0, 1.5 * period_ms) + period_ms
        report['kill'][robot] = kfig
        kill_rows.append([robot, kfig['bound_ms'], kfig['hold_ms']['median'],
                          kfig['hold_ms']['max'], kfig['stop_ms']['median'],
                          kfig['stop_ms']['max'], kfig['hold_ms']['n']])
        report['freeze'][robot] = res['freeze']
        freeze_rows.append([robot, res['freeze']['estop_ms'], res['freeze']['state_lost'],
                            res['freeze']['still_estopped'], res['freeze']['travel_on_thaw'],
                            res['freeze']['drift_after_thaw']])
    _plot_trials(trial_times, out / 'stop_times.png')
    table('2. e-stop during motion [ms] (stopped: every actuated joint < 5 % of its velocity '
          'limit; arm: the WidowX without its gripper)',
          ['robot', 'period', 'hold p50', 'hold max', 'stop p50', 'stop max', 'arm p50',
           'arm max', 'settle p50', 'drift max', 'trials'], estop_rows)
    table('3. controller SIGKILL -> hold [ms] (bound: watchdog + one period)',
          ['robot', 'bound', 'hold p50', 'hold max', 'stop p50', 'stop max', 'trials'],
          kill_rows)
    table('4. twin frozen (SIGSTOP) -> ESTOPPED [ms] (heartbeat timeout 500 ms)',
          ['robot', 'estop', 'state_lost', 'latched', 'travel on thaw', 'drift after'],
          freeze_rows)

    seconds = 8.0 if quick else 36.0
    fuzz_rows = []
    report['fuzz_dds'] = {}
    for robot in FUZZ:
        f = run_fuzz_dds(domain, robot, seconds, out)
        domain = domains.fresh()
        report['fuzz_dds'][robot] = f
        f['fuzzed_per_s'] = f['fuzzed'] / seconds
        fuzz_rows.append([robot, f['fuzzed'], f['fuzzed_per_s'], f['forwarded'], f['samples'],
                          f['violations'],
                          f['worst_position'], f['worst_workspace'], f['overspeed'],
                          f['filter_p99_us']])
    total = sum(f['fuzzed'] for f in report['fuzz_dds'].values())
    violations = sum(f['violations'] for f in report['fuzz_dds'].values())
    report['fuzz_dds_total'] = {'fuzzed': total, 'violations': violations}
    table(f'5a. fuzzing over DDS, 1 kHz hostile commands, {seconds:g} s per robot',
          ['robot', 'fuzzed', 'per wall s', 'forwarded', 'states', 'violations', 'worst pos',
           'worst box',
           'overspeed', 'filter p99 us'], fuzz_rows)
    print(f'total: {total} fuzzed commands, {violations} limit violations in the measured '
          f'twin states')

    per_robot = 30_000 if quick else 300_000
    rows = []
    report['fuzz_in_process'] = {}
    for robot in FUZZ:
        t0 = time.perf_counter()
        found, sup = fuzz_in_process(robot, per_robot, seed=1)
        rows.append([robot, per_robot, found.samples, found.total, found.position,
                     found.workspace, found.command, found.overspeed,
                     time.perf_counter() - t0])
        report['fuzz_in_process'][robot] = {
            'fuzzed': per_robot, 'violations': found.total, 'overspeed': found.overspeed,
            'rules': {k[5:]: v for k, v in sup.items() if k.startswith('rule/') and v}}
    table('5b. fuzzing in process (supervisor + twin, simulated clock)',
          ['robot', 'fuzzed', 'states', 'violations', 'position', 'workspace', 'command',
           'overspeed', 'wall s'], rows)

    report['wall_s'] = time.monotonic() - started_at
    report['out'] = str(out)
    print(f'\nplots and runs in {out}; {report["wall_s"]:.0f} s')
    print(json.dumps(report, default=float))
    return 0


if __name__ == '__main__':
    sys.exit(main())
