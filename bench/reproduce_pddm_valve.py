#!/usr/bin/env python3
"""
PDDM valve turning on the 24-DoF hand twin, unattended: learning curve from the run's bag.

Runs ``dexmpc up hand_pddm_valve_sim`` (explore -> learn -> plan -> retrain; every node its
own process) for ``--duration`` seconds, or analyses an existing run folder (``--run``),
then reads the bag with dexmpc_ros.runtime.run_bag (the same episodes `dexmpc report`
shows): for every episode, the valve error at its last step, success (|error| < 0.25 rad,
papers.md §7.5), its return, its env steps, and whether the mpc node was still exploring
(random walk) or planning with a learned model, and whether it was an evaluation episode
(the mpc node's ``eval_every``: planned without the exploration noise). Prints success per
4k env steps, the figures at 40k steps (the target's budget) and, as the last line, one
JSON object; saves learning_curve.png in the run folder.

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

from dexmpc_ros.runtime.run_bag import run_episodes  # noqa: E402
from dexmpc_ros.runtime.run_records import SUCCESS_RULES  # noqa: E402
from dexmpc_ros.runtime.ros_env import ros_environment  # noqa: E402

VALVE = SUCCESS_RULES['valve']
SUCCESS_RAD = VALVE.threshold
BLOCK_STEPS = 4000
TARGET_STEPS = 40000  # papers.md §7.5: >= 80 % success within 40k env steps


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
             'return': r.episode_return, 'steps': r.steps, 'planned': r.planned,
             'evaluation': r.evaluation, 'env_steps': r.env_steps}
            for r in run_episodes(run_dir, VALVE) if not r.partial]


def success(records: list[dict]) -> float | None:
    return float(np.mean([r['success'] for r in records])) if records else None


def pct(value: float | None) -> str:
    return '-' if value is None else f'{value:.0%}'


def blocks(records: list[dict], size: int) -> list[dict]:
    """Success per block of ``size`` env steps (by each episode's end)."""
    rows = []
    end = max(r['env_steps'] for r in records)
    for lo in range(0, end, size):
        inside = [r for r in records if lo < r['env_steps'] <= lo + size]
        planned = [r for r in inside if r['planned']]
        rows.append({'env_steps': f'{lo // 1000}k-{(lo + size) // 1000}k',
                     'explored': len(inside) - len(planned), 'planned': len(planned),
                     'explore_success': success([r for r in inside if not r['planned']]),
                     'planned_success': success(planned),
                     'evaluation': len([r for r in planned if r['evaluation']]),
                     'evaluation_success': success([r for r in planned if r['evaluation']]),
                     'median_error': float(np.median([r['final_error'] for r in inside]))
                     if inside else None})
    return rows


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
    table = blocks(records, BLOCK_STEPS)
    print(f'{"env steps":>10}  {"explored":>8}  {"planned":>7}  {"explore ok":>10}  '
          f'{"planned ok":>10}  {"eval eps":>8}  {"eval ok":>7}  {"median |err|":>12}')
    for row in table:
        median = '-' if row['median_error'] is None else f'{row["median_error"]:.3f}'
        print(f'{row["env_steps"]:>10}  {row["explored"]:>8}  {row["planned"]:>7}  '
              f'{pct(row["explore_success"]):>10}  {pct(row["planned_success"]):>10}  '
              f'{row["evaluation"]:>8}  {pct(row["evaluation_success"]):>7}  {median:>12}')
    planned = [r for r in records if r['planned']]
    explored = [r for r in records if not r['planned']]
    within = [r for r in planned if r['env_steps'] <= TARGET_STEPS]
    evaluation = [r for r in within if r['evaluation']]
    summary = {
        'bench': 'reproduce_pddm_valve', 'run': str(run_dir), 'episodes': len(records),
        'env_steps': int(max(r['env_steps'] for r in records)),
        'explore_success': success(explored), 'mpc_success': success(planned),
        'last20_mpc_success': success(planned[-20:]),
        f'last50_planned_success_by_{TARGET_STEPS}': success(within[-50:]),
        f'last20_planned_success_by_{TARGET_STEPS}': success(within[-20:]),
        f'evaluation_episodes_by_{TARGET_STEPS}': len(evaluation),
        f'last20_evaluation_success_by_{TARGET_STEPS}': success(evaluation[-20:]),
        'target': '>= 80 % of evaluation episodes within 0.25 rad in <= 40k steps',
        'blocks': table}
    print(f'\nby {TARGET_STEPS} env steps: last 50 planned episodes '
          f'{pct(summary[f"last50_planned_success_by_{TARGET_STEPS}"])}, last 20 '
          f'{pct(summary[f"last20_planned_success_by_{TARGET_STEPS}"])}; evaluation episodes '
          f'(no action noise): {len(evaluation)}, last 20 '
          f'{pct(summary[f"last20_evaluation_success_by_{TARGET_STEPS}"])}')
    plot(records, run_dir / 'learning_curve.png')
    print(f'learning curve: {run_dir / "learning_curve.png"}')
    print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    sys.exit(main())
