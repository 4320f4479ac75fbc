#!/usr/bin/env python3
"""
PDDM valve turning on the 24-DoF hand twin, unattended: learning curve from the run's bag.

Runs ``dexmpc up hand_pddm_valve_sim`` (explore -> learn -> plan -> retrain; every node its
own process) for ``--duration`` seconds, or analyses an existing run folder (``--run``),
then reads the bag with dexmpc_ros.runtime.report (the same episodes `dexmpc report`
shows): for every episode, the valve error at its last step, success (|error| < 0.25 rad,
papers.md §7.5), its return, its env steps, and whether the mpc node was still exploring
(random walk) or planning with a learned model. Prints a table per block of episodes and,
as the last line, one JSON object; saves learning_curve.png in the run folder.

    python bench/reproduce_pddm_valve.py --duration 900
    python bench/reproduce_pddm_valve.py --run runs/<run>        # analyse only
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

from dexmpc_ros.runtime.report import SUCCESS_RULES, run_episodes  # noqa: E402
from dexmpc_ros.runtime.ros_env import ros_environment  # noqa: E402

VALVE = SUCCESS_RULES['valve']
SUCCESS_RAD = VALVE.threshold
BLOCK = 5


def run(duration: float, out: Path, overrides: list[str]) -> None:
    """Run the experiment as `dexmpc up` would."""
    cmd = [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'up', 'hand_pddm_valve_sim',
           '--duration', str(duration), '--output', str(out), '--quiet']
    for item in overrides:
        cmd += ['--set', item]
    subprocess.run(cmd, env=ros_environment(), check=True)


def episodes(run_dir: Path) -> list[dict]:
    """One record per finished episode: final |error|, return, env steps, planned or explored."""
    return [{'episode': r.episode, 'final_error': r.final_error, 'success': r.success,
             'return': r.episode_return, 'steps': r.steps, 'planned': r.planned}
            for r in run_episodes(run_dir, VALVE)]


def plot(records: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    steps = np.cumsum([r['steps'] for r in records])
    errors = [r['final_error'] for r in records]
    colors = ['C1' if r['planned'] else 'C0' for r in records]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(steps, errors, c=colors, s=14)
    ax.axhline(SUCCESS_RAD, color='gray', ls='--', label='success threshold')
    ax.set_xlabel('environment steps')
    ax.set_ylabel('final |valve error| [rad]')
    ax.set_title('PDDM valve on the hand twin (blue: random walk, orange: learned MPC)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--duration', type=float, default=900.0, help='run length [s]')
    parser.add_argument('--run', type=Path, default=None, help='analyse this run folder only')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='NODE.PARAM=VALUE', help='experiment override (repeatable)')
    args = parser.parse_args()
    run_dir = args.run
    if run_dir is None:
        run_dir = Path('runs') / time.strftime('bench_pddm_valve_%Y%m%d_%H%M%S')
        run(args.duration, run_dir, args.overrides)
    records = episodes(run_dir)
    if not records:
        print('no finished episode in the bag', file=sys.stderr)
        return 1
    print(f'{"episodes":>10}  {"mode":>8}  {"env steps":>9}  {"success":>7}  '
          f'{"median |err|":>12}  {"mean return":>11}')
    steps = 0
    blocks = []
    for i in range(0, len(records), BLOCK):
        block = records[i:i + BLOCK]
        steps += sum(r['steps'] for r in block)
        mode = ('mpc' if all(r['planned'] for r in block) else
                'explore' if not any(r['planned'] for r in block) else 'mixed')
        row = {'first': block[0]['episode'], 'last': block[-1]['episode'], 'mode': mode,
               'env_steps': steps,
               'success': float(np.mean([r['success'] for r in block])),
               'median_error': float(np.median([r['final_error'] for r in block])),
               'mean_return': float(np.mean([r['return'] for r in block]))}
        blocks.append(row)
        print(f'{row["first"]:>4}-{row["last"]:<5}  {mode:>8}  {steps:>9}  '
              f'{row["success"]:>7.0%}  {row["median_error"]:>12.3f}  '
              f'{row["mean_return"]:>11.1f}')
    planned = [r for r in records if r['planned']]
    explored = [r for r in records if not r['planned']]
    last = planned[-20:]
    summary = {
        'bench': 'reproduce_pddm_valve', 'run': str(run_dir), 'episodes': len(records),
        'env_steps': int(sum(r['steps'] for r in records)),
        'explore_success': float(np.mean([r['success'] for r in explored])) if explored
        else None,
        'mpc_success': float(np.mean([r['success'] for r in planned])) if planned else None,
        'last20_mpc_success': float(np.mean([r['success'] for r in last])) if last else None,
        'target': '>= 80 % of evaluation episodes within 0.25 rad in <= 40k steps',
        'blocks': blocks}
    plot(records, run_dir / 'learning_curve.png')
    print(f'learning curve: {run_dir / "learning_curve.png"}')
    print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    sys.exit(main())
