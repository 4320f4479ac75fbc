"""
The in-process bench/ scripts still run end to end, at toy sizes (their figures are not judged).

Each script is run as a user runs it, in a subprocess, with settings small enough for a few
seconds. The checks are on the contract every bench script keeps (a readable table, then
one JSON object as the last line, files saved where ``--out`` says) and on figures that
follow from the settings alone: numbers of steps, episodes and planners, the FLOP count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str, timeout: float = 240.0) -> tuple[str, dict[str, Any]]:
    """Run ``bench/<script> args``; return its stdout and the JSON object on its last line."""
    # The environment is conftest's (MUJOCO_GL set for the twins).
    result = subprocess.run([sys.executable, str(ROOT / 'bench' / script), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) > 1, 'a table is printed before the JSON line'
    return result.stdout, json.loads(lines[-1])


def test_planner_bench_reports_every_method_and_the_flop_budget(tmp_path):
    out, figures = run_bench('planner.py', '--steps', '3', '--warmup', '1',
                             '--out', str(tmp_path))
    # 2 E N H (72·250 + 250·250 + 250·52) at E 3, N 700, H 7.
    assert abs(figures['gflop_per_step'] - 2 * 3 * 700 * 7 * 93_500 / 1e9) < 1e-9
    ours = figures['results']['ours']
    assert ours['status'] == 'ok' and ours['steps'] == 3 and ours['p50_ms'] > 0
    for name in ('ours: rollout only', 'ours: layer matmuls only (chunked)'):
        assert figures['results'][name]['status'] == 'ok'
    assert figures['results']['mbrl CEM']['status'].startswith('not installed')
    budget = figures['budget_at_80_percent']
    assert abs(budget['left_ms'] - (budget['step_ms'] - budget['matmul_ms'])) < 1e-9
    assert set(figures['acceptance']) == {'peak_fraction_ge_0.8', 'p99_le_1.5_p50',
                                          'speedup_ge_1.2_vs_each_installed_peer'}
    assert 'fp32 matmul peak' in out and '80 % of peak means' in out
    assert (tmp_path / 'latency.png').stat().st_size > 0
    assert json.loads((tmp_path / 'results.json').read_text()) == figures


def test_valve_planner_bench_runs_each_planner_on_the_same_budget(tmp_path):
    _, figures = run_bench('pddm_valve_planners.py', '--planners', 'mppi', 'random_shooting',
                           '--explore', '2', '--iterations', '1', '--per-iteration', '2',
                           '--final', '2', '--samples', '30', '--action-space', 'absolute',
                           '--out', str(tmp_path))
    assert figures['settings']['action_space'] == 'absolute'
    summaries = {s['planner']: s for s in figures['summaries']}
    assert set(summaries) == {'mppi', 'random_shooting'}
    for summary in summaries.values():
        assert summary['env_steps'] == (2 + 2) * 40     # 40-step episodes
        assert summary['final_episodes'] == 2
        assert 0.0 <= summary['final_success'] <= 1.0
        assert len(summary['per_iteration']) == 1
    episodes = json.loads((tmp_path / 'episodes.json').read_text())
    assert {name: len(e) for name, e in episodes.items()} == {'mppi': 4, 'random_shooting': 4}
    assert (tmp_path / 'learning_curves.png').stat().st_size > 0


def test_mbmf_bench_runs_all_three_stages(tmp_path):
    _, figures = run_bench(
        'reproduce_mbmf.py', '--quick', '--explore-episodes', '1', '--iterations', '1',
        '--episodes-per-iteration', '1', '--episode-steps', '20', '--dagger-iterations', '1',
        '--dagger-rollouts', '1', '--ppo-steps', '64', '--ppo-batch', '32',
        '--eval-episodes', '1', '--samples', '20', '--horizon', '3', '--first-epochs', '1',
        '--epochs', '1', '--dagger-epochs', '1', '--ppo-warmup', '0', '--out', str(tmp_path))
    assert figures['env'] == 'HalfCheetah-v5'
    assert [it['env_steps'] for it in figures['mb_iterations']] == [40]   # 1 walk + 1 MPC
    assert len(figures['dagger_rounds']) == 1
    assert figures['ppo_curve'][-1]['env_steps'] == 64
    for stage in ('dynamics', 'policy_dagger', 'policy_ppo'):
        assert (tmp_path / stage).is_dir()
    assert (tmp_path / 'learning_curve.png').stat().st_size > 0
