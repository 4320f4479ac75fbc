#!/usr/bin/env python3
"""
PDDM valve on the hand twin, in one process: planners compared at equal model evaluations.

Runs the model-based loop (dexmpc_ros/runtime/sim_loop.py: random-walk exploration, then
train the 3 x (2 x 250) ensemble on all data -> MPC episodes -> aggregate -> retrain) once per
planner, with the same seed, exploration data and budget:

- ``mppi``: PDDM's filtered reward-weighted MPPI (default beta 0.7, kappa 0.5, sigma 0.9:
  PDDM's dclaw_turn; ``--beta``, ``--kappa``, ``--sigma``);
- ``mppi_unfiltered``: the same with beta = 1 (no filtering);
- ``random_shooting``: uniform random sequences, best one executed.

Actions are per-step changes in units of the supervisor's step bound (``--action-space
delta``) or PDDM's normalized joint targets (``absolute``, the shipped experiment's), which
the same bound then clamps. All use N sequences of H steps per control step on every member
(N·H·E evaluations), papers.md §7.5 target (2) and (3). Prints per-iteration success, final
success over the last ``--final`` MPC episodes, mean |Δa| between consecutive actions,
planning time; saves learning_curves.png in the output folder; the last line is one JSON
object.

    python bench/pddm_valve_planners.py                       # ≈ 25 min on 2 cores
    python bench/pddm_valve_planners.py --iterations 4 --planners mppi random_shooting
    python bench/pddm_valve_planners.py --planners mppi --samples 100 --action-noise 0.3 \
        --eval-every 2 --explore 100 --iterations 12 --per-iteration 20 --final 40
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from dexmpc_ros.control.planners.mppi import MPPIConfig, MPPIPlanner  # noqa: E402
from dexmpc_ros.control.planners.random_shooting import (RandomShootingConfig,  # noqa: E402
                                                         RandomShootingPlanner)
from dexmpc_ros.control.random_walk import RandomWalkConfig, RandomWalkController  # noqa: E402
from dexmpc_ros.control.task_rewards import make_reward, torch_reward  # noqa: E402
from dexmpc_ros.core.action_space import ACTION_SPACES  # noqa: E402
from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.learning.dynamics.config import DynamicsConfig  # noqa: E402
from dexmpc_ros.robots.registry import make_twin  # noqa: E402
from dexmpc_ros.runtime.sim_loop import LoopConfig, TwinEnv, run_loop  # noqa: E402

SUCCESS_RAD = 0.25
PLANNERS = ('mppi', 'mppi_unfiltered', 'random_shooting')


def make_planner(name: str, action_dim: int, args: argparse.Namespace):
    """The planner ``name`` at N = ``--samples``, H = ``--horizon`` (one pass per step)."""
    if name == 'random_shooting':
        return RandomShootingPlanner(action_dim, RandomShootingConfig(
            horizon=args.horizon, num_samples=args.samples, seed=args.seed))
    beta = 1.0 if name == 'mppi_unfiltered' else args.beta
    return MPPIPlanner(action_dim, MPPIConfig(horizon=args.horizon, num_samples=args.samples,
                                              kappa=args.kappa, sigma=args.sigma, beta=beta,
                                              seed=args.seed))


def run_planner(name: str, args: argparse.Namespace) -> list[dict]:
    """One full loop with planner ``name``; one dict per episode."""
    spec = load_robot_spec('hand24')
    twin = make_twin('hand24', task='valve', seed=args.seed)
    explorer = RandomWalkController(spec, RandomWalkConfig(
        vel_min=0.4, vel_max=0.5, hold_steps=3, seed=args.seed))  # PDDM dclaw_turn
    env = TwinEnv(twin, spec, explorer, action_space=args.action_space,
                  success=lambda names, values:
                  abs(values[names.index('angle_error')]) < SUCCESS_RAD)
    reward = torch_reward(make_reward('valve', env.layout))
    planner = make_planner(name, env.action_dim, args)
    loop = LoopConfig(explore_episodes=args.explore, iterations=args.iterations,
                      episodes_per_iteration=args.per_iteration, episode_steps=40,
                      seed=args.seed, threads=1, action_noise=args.action_noise,
                      eval_every=args.eval_every)
    model = DynamicsConfig(ensemble_size=3, hidden=(250, 250), epochs=40, threads=1,
                           seed=args.seed)
    start = time.perf_counter()

    def progress(record) -> None:
        if record.iteration >= 0 and (record.episode + 1 - args.explore) \
                % args.per_iteration == 0:
            print(f'  {name}: iteration {record.iteration}, {record.env_steps} steps, '
                  f'{time.perf_counter() - start:.0f} s', flush=True)

    try:
        result = run_loop(env, planner, reward, model, loop, on_episode=progress)
    finally:
        twin.close()
    return [{'iteration': r.iteration, 'env_steps': r.env_steps, 'success': r.success,
             'return': r.episode_return, 'plan_ms': r.plan_ms, 'evaluation': r.evaluation,
             'action_change': r.action_change} for r in result.records]


def summarize(name: str, episodes: list[dict], final: int) -> dict:
    """Final success: over the last ``final`` evaluation episodes if any, else MPC episodes."""
    mpc = [e for e in episodes if e['iteration'] >= 0]
    explore = [e for e in episodes if e['iteration'] < 0]
    evaluations = [e for e in mpc if e.get('evaluation')]
    last = (evaluations or mpc)[-final:]
    return {'planner': name, 'env_steps': episodes[-1]['env_steps'],
            'final_over': 'evaluation episodes' if evaluations else 'MPC episodes',
            'explore_success': float(np.mean([e['success'] for e in explore])),
            'final_success': float(np.mean([e['success'] for e in last])),
            'final_episodes': len(last),
            'final_mean_return': float(np.mean([e['return'] for e in last])),
            'action_change': float(np.mean([e['action_change'] for e in mpc])),
            'plan_ms': float(np.mean([e['plan_ms'] for e in mpc])),
            'per_iteration': [float(np.mean([e['success'] for e in mpc
                                             if e['iteration'] == i]))
                              for i in sorted({e['iteration'] for e in mpc})]}


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, episodes in results.items():
        mpc = [e for e in episodes if e['iteration'] >= 0]
        iterations = sorted({e['iteration'] for e in mpc})
        steps = [max(e['env_steps'] for e in mpc if e['iteration'] == i) for i in iterations]
        rate = [np.mean([e['success'] for e in mpc if e['iteration'] == i])
                for i in iterations]
        ax.plot(steps, rate, marker='o', label=name)
    ax.set_xlabel('environment steps (exploration included)')
    ax.set_ylabel('success per iteration')
    ax.set_ylim(-0.05, 1.05)
    ax.set_title('PDDM valve, hand twin: planners at equal model evaluations')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--planners', nargs='+', choices=PLANNERS, default=list(PLANNERS))
    parser.add_argument('--explore', type=int, default=200,
                        help='random-walk episodes before the first model')
    parser.add_argument('--iterations', type=int, default=10)
    parser.add_argument('--per-iteration', type=int, default=10,
                        help='MPC episodes per iteration')
    parser.add_argument('--samples', type=int, default=700, help='N')
    parser.add_argument('--horizon', type=int, default=7, help='H')
    parser.add_argument('--kappa', type=float, default=0.5,
                        help='MPPI reward-weighting temperature (PDDM dclaw_turn: 0.5)')
    parser.add_argument('--beta', type=float, default=0.7,
                        help='MPPI filter coefficient (PDDM dclaw_turn: 0.7)')
    parser.add_argument('--sigma', type=float, default=0.9, help='MPPI noise std')
    parser.add_argument('--final', type=int, default=20,
                        help='final success = over the last this many MPC episodes '
                             '(evaluation episodes with --eval-every)')
    parser.add_argument('--action-noise', type=float, default=0.0,
                        help='exploration noise std on executed actions, every planner '
                             '(hand_pddm_valve_sim uses 0.3)')
    parser.add_argument('--eval-every', type=int, default=0,
                        help='every k-th MPC episode of an iteration runs without the action '
                             'noise; final success then counts only those')
    parser.add_argument('--action-space', choices=ACTION_SPACES, default='absolute',
                        help='delta: per-step change in units of the supervisor step bound; '
                        'absolute (the shipped experiment\'s): normalized joint targets, '
                        'clamped to that bound (PDDM)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path('runs') / time.strftime('bench_pddm_planners_%Y%m%d_%H%M%S')
    out.mkdir(parents=True, exist_ok=True)

    results = {}
    for name in args.planners:
        print(f'running {name} ...', flush=True)
        results[name] = run_planner(name, args)
    summaries = [summarize(n, e, args.final) for n, e in results.items()]
    print()
    print(f'{"planner":>16}  {"env steps":>9}  {"explore succ":>12}  {"final succ":>10}  '
          f'{"final return":>12}  {"mean |da|":>9}  {"plan ms":>7}')
    for s in summaries:
        print(f'{s["planner"]:>16}  {s["env_steps"]:>9d}  {s["explore_success"]:>12.2f}  '
              f'{s["final_success"]:>10.2f}  {s["final_mean_return"]:>12.1f}  '
              f'{s["action_change"]:>9.3f}  {s["plan_ms"]:>7.1f}')
    print(f"final success over the last {summaries[0]['final_episodes']} "
          f"{summaries[0]['final_over']}")
    print('per-iteration success:')
    for s in summaries:
        print(f'{s["planner"]:>16}  ' + ' '.join(f'{v:.1f}' for v in s['per_iteration']))
    plot(results, out / 'learning_curves.png')
    (out / 'episodes.json').write_text(json.dumps(results))
    by_name = {s['planner']: s for s in summaries}
    figures = {'bench': 'pddm_valve_planners', 'out': str(out),
               'settings': {'samples': args.samples, 'horizon': args.horizon,
                            'kappa': args.kappa, 'beta': args.beta, 'sigma': args.sigma,
                            'explore': args.explore, 'iterations': args.iterations,
                            'per_iteration': args.per_iteration, 'seed': args.seed,
                            'action_noise': args.action_noise,
                            'eval_every': args.eval_every,
                            'action_space': args.action_space},
               'summaries': summaries}
    if 'mppi' in by_name and 'random_shooting' in by_name:
        figures['mppi_minus_random_shooting'] = (by_name['mppi']['final_success']
                                                 - by_name['random_shooting']['final_success'])
    if 'mppi' in by_name and 'mppi_unfiltered' in by_name:
        figures['unfiltered_over_filtered_action_change'] = (
            by_name['mppi_unfiltered']['action_change'] / by_name['mppi']['action_change'])
    print(json.dumps(figures))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
