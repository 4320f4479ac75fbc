#!/usr/bin/env python3
"""
MBMF on gymnasium HalfCheetah-v5 (papers.md §1, target T1-MBMF): MB -> DAgger -> PPO.

1. Model-based stage with :func:`sim_loop.run_loop`: 10 random episodes of 1000 steps,
   then 4 iterations × 2 MPC episodes; Δs-MLP 2×500 ReLU (one member), 40 epochs first
   and 20 per later iteration, retrained in place (``warm_start``); random shooting
   N = 1000, H = 20 on the planner reward Δx/dt − 0.1‖a‖²; execution noise 0.005.
   T1 passes when the iteration-3 mean return is ≥ +50 (18k env steps) and the
   per-iteration means rise (at most one non-increase).
2. DAgger: the final MPC (model + planner, no execution noise) teaches a 2×64 tanh MLP
   policy that sees the state without the root's x position; it starts from the MPC's
   own episodes of the last iteration, then 3 rounds × 2 policy episodes relabeled by
   the MPC, 300 epochs per fit (MBMF cheetah). T1 wants ≥ 50 % of the teacher's return.
3. PPO fine-tuning of the distilled policy (mean net := distilled net, init std 0.2),
   ``--ppo-steps`` env steps (default 50k: the 3–5× gap of the paper needs ≳ 10⁶).
   ``--ppo-init-std`` sets the starting action std. MBMF's cheetah uses 0.5 (TRPO), but
   on this distilled gait PPO from 0.5 fell from 216 to 108 (mean action, 50k steps,
   seed 0): the sampling noise wipes out the gait first; from 0.2 it rose to 633 / 594
   (seeds 0, 1).

Prints a table per stage and, as the LAST line, one JSON object with all figures; saves
``learning_curve.png``, ``results.json`` and the checkpoints (``dynamics``,
``policy_dagger``, ``policy_ppo``, loadable by the ``mlp_policy`` controller for a robot
named ``HalfCheetah-v5``) into ``--out`` (default runs/bench_mbmf_<time>/).

    python bench/reproduce_mbmf.py              # ≈ 15 min MB + ≈ 12 min DAgger + PPO
    python bench/reproduce_mbmf.py --quick      # smoke run, ≈ 1-2 min
"""

from __future__ import annotations

import os

# Before torch starts its OpenMP runtime: sleeping, not spinning, idle threads (shared box).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dexmpc_ros.control.planners.random_shooting import (RandomShootingConfig,  # noqa: E402
                                                         RandomShootingPlanner)
from dexmpc_ros.learning.checkpoint import save_checkpoint  # noqa: E402
from dexmpc_ros.learning.policies.dagger import DaggerConfig, rollout, run_dagger  # noqa: E402
from dexmpc_ros.learning.dynamics.config import DynamicsConfig  # noqa: E402
from dexmpc_ros.learning.policies.mlp import MLPPolicy, PolicyConfig, save_policy  # noqa: E402
from dexmpc_ros.learning.policies.ppo import PPO, PPOConfig  # noqa: E402
from dexmpc_ros.runtime.gym_env import GymEnv  # noqa: E402
from dexmpc_ros.runtime.sim_loop import LoopConfig, run_loop  # noqa: E402

ENV_ID = 'HalfCheetah-v5'
TARGET_RETURN = 50.0

#: name -> (default, quick preset)
PRESETS: dict[str, tuple[Any, Any]] = {
    'samples': (1000, 500), 'horizon': (20, 15), 'episode_steps': (1000, 200),
    'explore_episodes': (10, 4), 'iterations': (4, 2), 'episodes_per_iteration': (2, 1),
    'first_epochs': (40, 10), 'epochs': (20, 5), 'dagger_iterations': (3, 1),
    'dagger_rollouts': (2, 1), 'dagger_epochs': (300, 50), 'ppo_steps': (50_000, 4096),
    'ppo_batch': (2048, 1024), 'ppo_warmup': (2, 1),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--quick', action='store_true', help='smoke preset (N=500, H=15, '
                        'short episodes, few iterations)')
    for name, (default, quick) in PRESETS.items():
        parser.add_argument('--' + name.replace('_', '-'), type=type(default), default=None,
                            help=f'default {default} (--quick: {quick})')
    parser.add_argument('--dagger-stride', type=int, default=1,
                        help='relabel every k-th visited state (1: all, MBMF)')
    parser.add_argument('--model-noise', type=float, default=0.01,
                        help='training noise-to-signal of the dynamics model (MBMF: 0.01)')
    parser.add_argument('--action-noise', type=float, default=0.005,
                        help='std of the execution noise on MPC actions (MBMF: 0.005)')
    parser.add_argument('--ppo-lr', type=float, default=3e-4, help='PPO learning rate')
    parser.add_argument('--ppo-init-std', type=float, default=0.2,
                        help='action std the PPO stage starts from (MBMF cheetah TRPO: 0.5)')
    parser.add_argument('--eval-episodes', type=int, default=5,
                        help='episodes of each deterministic policy evaluation')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1, help='torch threads')
    parser.add_argument('--out', type=Path, default=None, help='output folder')
    args = parser.parse_args()
    for name, (default, quick) in PRESETS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    return args


def model_based(args: argparse.Namespace, env: GymEnv) -> dict[str, Any]:
    """Stage 1 (run_loop); prints one line per episode, then the per-iteration table."""
    planner = RandomShootingPlanner(env.action_dim, RandomShootingConfig(
        horizon=args.horizon, num_samples=args.samples, seed=args.seed))
    reward = env.planner_reward()
    model_config = DynamicsConfig(ensemble_size=1, hidden=(500, 500),
                                  noise_to_signal=args.model_noise, seed=args.seed,
                                  threads=args.threads)
    loop = LoopConfig(explore_episodes=args.explore_episodes, iterations=args.iterations,
                      episodes_per_iteration=args.episodes_per_iteration,
                      episode_steps=args.episode_steps, first_epochs=args.first_epochs,
                      epochs=args.epochs, warm_start=True, action_noise=args.action_noise,
                      seed=args.seed, threads=args.threads)
    start = time.perf_counter()

    def progress(record: Any) -> None:
        kind = 'random' if record.iteration < 0 else f'mpc it {record.iteration}'
        plan = '' if record.iteration < 0 else f', {record.plan_ms:.0f} ms/plan'
        print(f'  episode {record.episode:>2} ({kind}): return {record.episode_return:8.1f}, '
              f'{record.env_steps} env steps{plan}, {time.perf_counter() - start:.0f} s',
              flush=True)

    result = run_loop(env, planner, reward, model_config, loop, on_episode=progress)
    wall = time.perf_counter() - start
    records = result.records
    random_returns = [r.episode_return for r in records if r.iteration < 0]
    rows = []
    print(f'\n{"iteration":>9}  {"data (steps)":>12}  {"env steps":>9}  {"ms/plan":>7}  '
          f'{"mean return":>11}  returns')
    for it in range(args.iterations):
        eps = [r for r in records if r.iteration == it]
        before = eps[0].env_steps - eps[0].steps
        row = {'iteration': it, 'data_steps': before, 'env_steps': eps[-1].env_steps,
               'returns': [r.episode_return for r in eps],
               'mean': float(np.mean([r.episode_return for r in eps])),
               'plan_ms': float(np.mean([r.plan_ms for r in eps]))}
        rows.append(row)
        print(f'{it:>9}  {before:>12}  {row["env_steps"]:>9}  {row["plan_ms"]:>7.0f}  '
              f'{row["mean"]:>11.1f}  {", ".join(f"{x:.1f}" for x in row["returns"])}')
    means = [r['mean'] for r in rows]
    drops = int(sum(b <= a for a, b in zip(means, means[1:])))
    print(f'random policy: {np.mean(random_returns):.1f}; non-increases: {drops}; '
          f'{wall:.0f} s')
    return {'result': result, 'planner': planner, 'reward': reward, 'rows': rows,
            'random_returns': random_returns, 'non_increases': drops, 'wall_s': wall,
            'records': records}


def distill(args: argparse.Namespace, env: GymEnv, mb: dict[str, Any]) -> dict[str, Any]:
    """Stage 2: DAgger from the last iteration's MPC episodes, MPC relabels."""
    result, planner, reward = mb['result'], mb['planner'], mb['reward']
    model = result.model
    x = env.x_column()
    keep = [i for i in range(env.state_dim) if i != x]

    def observe(states: np.ndarray) -> np.ndarray:
        return np.asarray(states)[..., keep]

    def teacher(state: np.ndarray) -> np.ndarray:
        return planner.plan(torch.from_numpy(state).float(), model, reward)

    last = [i for i, r in enumerate(mb['records']) if r.iteration == args.iterations - 1]
    states = np.concatenate([result.data.states[i] for i in last])
    actions = np.concatenate([result.data.actions[i] for i in last])
    teacher_returns = [mb['records'][i].episode_return for i in last]
    policy = MLPPolicy(len(keep), env.action_dim, PolicyConfig(
        epochs=args.dagger_epochs, seed=args.seed, threads=args.threads))
    config = DaggerConfig(iterations=args.dagger_iterations,
                          rollouts_per_iteration=args.dagger_rollouts,
                          episode_steps=args.episode_steps, relabel_stride=args.dagger_stride,
                          eval_episodes=args.eval_episodes, seed=args.seed + 1)
    start = time.perf_counter()
    print(f'\nDAgger: {len(states)} teacher pairs, {config.iterations} rounds × '
          f'{config.rollouts_per_iteration} episodes; teacher return '
          f'{np.mean(teacher_returns):.1f}')
    print(f'{"round":>5}  {"policy returns (before refit)":>30}  {"labeled":>7}  '
          f'{"dataset":>7}  {"loss":>8}  {"ms/label":>8}')

    def show(it: Any) -> None:
        print(f'{it.iteration:>5}  {", ".join(f"{r:.1f}" for r in it.returns):>30}  '
              f'{it.labeled:>7}  {it.dataset_size:>7}  {it.final_loss:>8.4f}  '
              f'{it.teacher_ms:>8.0f}   ({time.perf_counter() - start:.0f} s)', flush=True)

    dagger = run_dagger(env, teacher, policy, states, actions, config, observe=observe,
                        on_iteration=show)
    wall = time.perf_counter() - start
    final = float(np.mean(dagger.eval_returns))
    teacher_mean = float(np.mean(teacher_returns))
    ratio = final / teacher_mean if teacher_mean > 0 else float('nan')
    print(f'final policy: {", ".join(f"{r:.1f}" for r in dagger.eval_returns)} (mean '
          f'{final:.1f}) = {ratio:.0%} of the teacher ({teacher_mean:.1f}); {wall:.0f} s')
    return {'dagger': dagger, 'observe': observe, 'keep': keep, 'teacher_returns':
            teacher_returns, 'teacher_mean': teacher_mean, 'final': final, 'ratio': ratio,
            'wall_s': wall}


def finetune(args: argparse.Namespace, env: GymEnv, dg: dict[str, Any]) -> dict[str, Any]:
    """Stage 3: PPO from (a copy of) the distilled policy."""
    policy = copy.deepcopy(dg['dagger'].policy)
    with torch.no_grad():
        policy.log_std.fill_(float(np.log(args.ppo_init_std)))
    config = PPOConfig(steps_per_batch=args.ppo_batch, episode_steps=args.episode_steps,
                       lr=args.ppo_lr, value_warmup_batches=args.ppo_warmup, seed=args.seed,
                       threads=args.threads)
    ppo = PPO(policy, config, observe=dg['observe'])
    start = time.perf_counter()
    print(f'\nPPO: {args.ppo_steps} env steps, batches of {config.steps_per_batch}, '
          f'{config.value_warmup_batches} value warm-up batch(es)')
    print(f'{"batch":>5}  {"env steps":>9}  {"train return":>12}  {"std":>5}  '
          f'{"approx kl":>9}  {"clip frac":>9}')

    def show(b: Any) -> None:
        print(f'{b.index:>5}  {b.env_steps:>9}  {b.mean_return:>12.1f}  {b.std:>5.3f}  '
              f'{b.approx_kl:>9.4f}  {b.clip_fraction:>9.3f}'
              f'{"" if b.policy_updated else "  (value warm-up)"}', flush=True)

    batches = ppo.train(env, args.ppo_steps, on_batch=show)
    wall = time.perf_counter() - start
    seeds = [args.seed * 100000 + 90000 + k for k in range(args.eval_episodes)]

    def evaluate(p: MLPPolicy) -> list[float]:
        return [rollout(env, lambda s: p.act(dg['observe'](s)), args.episode_steps, s)[1]
                for s in seeds]

    before, after = evaluate(dg['dagger'].policy), evaluate(policy)
    print(f'deterministic return ({len(seeds)} episodes): distilled {np.mean(before):.1f} -> PPO '
          f'{np.mean(after):.1f}; {wall:.0f} s')
    return {'policy': policy, 'batches': batches, 'eval_before': before, 'eval_after': after,
            'wall_s': wall}


def plot(path: Path, mb: dict[str, Any], dg: dict[str, Any], ft: dict[str, Any]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    recs = mb['records']
    ax.scatter([r.env_steps for r in recs], [r.episode_return for r in recs], s=16,
               c=['gray' if r.iteration < 0 else 'C0' for r in recs])
    ax.plot([r['env_steps'] for r in mb['rows']], [r['mean'] for r in mb['rows']], 'C0-o',
            label='MPC iteration mean')
    ax.axhline(TARGET_RETURN, color='C3', ls='--', label=f'T1 target {TARGET_RETURN:+.0f}')
    ax.set(xlabel='env steps', ylabel='episode return', title='model-based (gray: random)')
    ax.legend()
    ax = axes[1]
    rounds = dg['dagger'].iterations
    ax.plot(range(len(rounds)), [np.mean(r.returns) for r in rounds], 'C1-o',
            label='policy rollouts (relabeled)')
    ax.plot([len(rounds)], [dg['final']], 'C1*', ms=12, label='final policy')
    ax.axhline(dg['teacher_mean'], color='C0', ls='--', label='MPC teacher')
    ax.axhline(0.5 * dg['teacher_mean'], color='C3', ls=':', label='50 % of teacher')
    ax.set(xlabel='DAgger round', ylabel='return', title='DAgger distillation (2×64 tanh)')
    ax.legend()
    ax = axes[2]
    batches = ft['batches']
    ax.plot([b.env_steps for b in batches], [b.mean_return for b in batches], 'C2-o',
            ms=3, label='training return (sampled actions)')
    ax.axhline(np.mean(ft['eval_before']), color='C1', ls='--', label='distilled (mean action)')
    ax.axhline(np.mean(ft['eval_after']), color='C2', ls='--', label='PPO (mean action)')
    ax.set(xlabel='PPO env steps', ylabel='return', title='PPO fine-tuning')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_models(out: Path, env: GymEnv, mb: dict[str, Any], dg: dict[str, Any],
                ft: dict[str, Any]) -> None:
    policy_names = [env.state_names[i] for i in dg['keep']]
    save_checkpoint(out / 'dynamics', mb['result'].model, {
        'state_names': env.state_names, 'action_names': env.action_names, 'robot': ENV_ID,
        'extra': {'action_space': 'absolute'}})
    for name, policy, value in (('policy_dagger', dg['dagger'].policy, dg['final']),
                                ('policy_ppo', ft['policy'], float(np.mean(ft['eval_after'])))):
        save_policy(out / name, policy, {
            'state_names': policy_names, 'action_names': env.action_names, 'robot': ENV_ID,
            'metrics': {'return': value}, 'extra': {'action_space': 'absolute'}})


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or Path('runs') / time.strftime('bench_mbmf_%Y%m%d_%H%M%S')
    out.mkdir(parents=True, exist_ok=True)
    env = GymEnv(ENV_ID)
    print(f'MBMF on {ENV_ID}: N={args.samples} H={args.horizon}, {args.explore_episodes} '
          f'random + {args.iterations}×{args.episodes_per_iteration} MPC episodes of '
          f'{args.episode_steps} steps; output {out}', flush=True)
    total = time.perf_counter()
    mb = model_based(args, env)
    dg = distill(args, env, mb)
    ft = finetune(args, env, dg)
    plot(out / 'learning_curve.png', mb, dg, ft)
    save_models(out, env, mb, dg, ft)
    env.close()
    final_mean = mb['rows'][-1]['mean']
    summary = {
        'bench': 'reproduce_mbmf', 'env': ENV_ID, 'out': str(out), 'quick': args.quick,
        'settings': {k: getattr(args, k) for k in (*PRESETS, 'dagger_stride', 'model_noise',
                                                   'action_noise', 'ppo_lr', 'ppo_init_std',
                                                   'eval_episodes', 'seed', 'threads')},
        'random_return': float(np.mean(mb['random_returns'])),
        'mb_iterations': mb['rows'],
        'mb_env_steps': mb['rows'][-1]['env_steps'],
        'mb_final_mean': final_mean,
        'mb_non_increases': mb['non_increases'],
        't1_mb_pass': bool(final_mean >= TARGET_RETURN and mb['non_increases'] <= 1),
        'dagger_rounds': [{'returns': r.returns, 'labeled': r.labeled,
                           'dataset': r.dataset_size, 'loss': r.final_loss,
                           'teacher_ms': r.teacher_ms} for r in dg['dagger'].iterations],
        'dagger_eval_returns': dg['dagger'].eval_returns,
        'teacher_mean': dg['teacher_mean'], 'dagger_final_mean': dg['final'],
        'dagger_ratio': dg['ratio'],
        't1_dagger_pass': bool(dg['ratio'] >= 0.5),
        'ppo_curve': [{'env_steps': b.env_steps, 'mean_return': b.mean_return,
                       'std': b.std, 'approx_kl': b.approx_kl} for b in ft['batches']],
        'ppo_eval_before': ft['eval_before'], 'ppo_eval_after': ft['eval_after'],
        'wall_s': {'mb': mb['wall_s'], 'dagger': dg['wall_s'], 'ppo': ft['wall_s'],
                   'total': time.perf_counter() - total},
    }
    text = json.dumps(summary, default=float)
    (out / 'results.json').write_text(text + '\n')
    print(f'\nlearning curve: {out / "learning_curve.png"}')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
