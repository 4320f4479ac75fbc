#!/usr/bin/env python3
"""
PDDM planning-step benchmark (issue 4): our filtered MPPI vs PyPI peers, same model sizes.

Settings (papers.md §7.3): ensemble E = 3, N = 700 samples, horizon H = 7, members
2x250 ReLU MLPs, hand dimensions nx = 52, nu = 20. One planning step costs
``2 E N H (72·250 + 250·250 + 250·52)`` ≈ 2.75 GFLOP (2 FLOP per multiply-add of the MLP
layers; everything else is not counted). Achieved FLOP/s is that over the p50 latency and is
reported as a fraction of THIS machine's dense fp32 matmul peak, measured first in the
same run (best of several ``torch.mm`` of large square matrices, same thread count).

Methods (all on one :class:`DeltaDynamics` with random weights and normalizers fitted on
random data, a quadratic reward ``-|s - goal|²`` per step, mean over members):

- ``ours``: :class:`MPPIPlanner.plan` end to end (shift, sampling, filtering, rollout,
  scoring, weighting), the fast rollout.
- ``ours (reference rollout)``: the same planner with the model's straightforward
  per-step rollout (the code before issue 4's optimization), for the before/after.
- ``ours: rollout only``: the fast rollout of N sequences, without the planner around it.
- ``ours: layer matmuls only``: nothing but the rollout's layer matmuls, at its shapes,
  (a) in its chunks, one thread each, and (b) as one 2-thread ``bmm`` over all N. No
  activation, normalization, sampling or scoring: the most any implementation of this
  network at these shapes reaches here, so the ceiling for "% of peak".
- ``pytorch-mppi``: ``pytorch_mppi.MPPI.command`` with ``rollout_samples = E`` (its
  ensemble path: each of the E copies of every sample is stepped by its own member) and a
  dynamics function doing one normalized Δ-step of the same ensemble per call.
- ``torchrl MPPI``: ``torchrl.modules.MPPIPlanner`` (1 optimization step, N candidates,
  top_k = N) over a ``ModelBasedEnvBase`` whose world model steps the same ensemble,
  the state per candidate being the E member states (E, nx).
- ``mbrl CEM``: reported as not installed (see ``PEER_NOTES``).

Peers that are not importable are printed as ``not installed: <reason>``.

Prints a table and, as the LAST line, one JSON object with all figures; saves
``latency.png`` (latency histograms) into ``--out`` (default runs/bench_planner_<time>/).

    python bench/planner.py               # 200 timed steps per method
    python bench/planner.py --steps 50    # quicker
"""

from __future__ import annotations

import os

# Before torch starts its OpenMP runtime: sleeping, not spinning, idle threads.
os.environ['OMP_WAIT_POLICY'] = 'PASSIVE'

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dexmpc_ros.control.planners.mppi import MPPIConfig, MPPIPlanner  # noqa: E402
from dexmpc_ros.learning.dynamics.model import DeltaDynamics  # noqa: E402
from dexmpc_ros.learning.dynamics.config import DynamicsConfig  # noqa: E402
from dexmpc_ros.learning.dynamics.fast_rollout import folded_layers  # noqa: E402

E, N, H, NX, NU, HIDDEN = 3, 700, 7, 52, 20, (250, 250)
KAPPA, SIGMA, BETA = 20.0, 0.9, 0.6
THREADS = 2

#: Why a peer is not part of the comparison although it is on PyPI (pip install --dry-run
#: in the project's venv, torch 2.13.0 and numpy 2.4.6 pinned).
PEER_NOTES = {
    'mbrl CEM': ('mbrl 0.1.5 pins gym==0.17.2, which needs cloudpickle<1.4: installing it '
                 'would downgrade the pinned cloudpickle 3.1.3 -> 1.3.0 (and pull ~90 more '
                 'packages: hydra-core 1.0.3, jupyter, tensorboard, ...)'),
}


def mlp_flops() -> float:
    """FLOP of one planning step: 2 per multiply-add of every member's layers."""
    sizes = (NX + NU, *HIDDEN, NX)
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 2.0 * E * N * H * macs


def matmul_peak(sizes: tuple[int, ...] = (2048, 4096), repeats: int = 8) -> dict[str, Any]:
    """Best dense fp32 ``torch.mm`` rate [GFLOP/s] over square sizes and repeats."""
    best = {}
    for n in sizes:
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(a, b, out=c)
        fastest = min(_timed(lambda: torch.mm(a, b, out=c)) for _ in range(repeats))
        best[n] = 2.0 * n ** 3 / fastest / 1e9
    return {'gflops': max(best.values()), 'by_size': best}


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_model(seed: int = 0) -> DeltaDynamics:
    """Random-weight hand-sized model with normalizers fitted on random data."""
    model = DeltaDynamics(NX, NU, DynamicsConfig(ensemble_size=E, hidden=HIDDEN, seed=seed))
    rng = np.random.default_rng(seed)
    states = rng.normal(0.3, 1.5, (4000, NX))
    actions = rng.uniform(-1.0, 1.0, (4000, NU))
    next_states = states + rng.normal(0.01, 0.05, (4000, NX))
    model.fit(states, actions, next_states, epochs=0)
    return model


def quadratic_reward(goal: torch.Tensor) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``-|s - goal|²`` per member, sample and step; never done (planning.RewardFn)."""
    def reward_fn(states, actions, state0):
        rewards = -(states - goal).square().sum(-1)
        return rewards, torch.zeros_like(rewards, dtype=torch.bool)
    return reward_fn


class ReferenceRollout:
    """The model with its straightforward per-step rollout (the pre-issue-4 path)."""

    def __init__(self, model: DeltaDynamics) -> None:
        self.model = model
        self.ensemble_size = model.ensemble_size

    def rollout(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        out = torch.empty(self.ensemble_size, actions.shape[0], actions.shape[1], NX)
        with torch.inference_mode():
            self.model._rollout_reference(out, state.to(torch.float32),
                                          actions.to(torch.float32))
        return out.clone()


def ensemble_step(model: DeltaDynamics) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One normalized Δ-step of every member: (E, B, nx), (E|1, B, nu) -> (E, B, nx)."""
    s_mean, s_std = (torch.tensor(v, dtype=torch.float32) for v in
                     (model.state_norm.mean, model.state_norm.std))
    a_mean, a_std = (torch.tensor(v, dtype=torch.float32) for v in
                     (model.action_norm.mean, model.action_norm.std))
    d_mean, d_std = (torch.tensor(v, dtype=torch.float32) for v in
                     (model.delta_norm.mean, model.delta_norm.std))
    net = model.net

    def step(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        a_n = ((a.clamp(-1.0, 1.0) - a_mean) / a_std).expand(s.shape[0], -1, -1)
        z = net(torch.cat([(s - s_mean) / s_std, a_n], dim=-1))
        return s + z * d_std + d_mean
    return step


def run_ours(model: Any, state: torch.Tensor, reward_fn: Callable, steps: int,
             warmup: int) -> list[float]:
    planner = MPPIPlanner(NU, MPPIConfig(horizon=H, num_samples=N, kappa=KAPPA, sigma=SIGMA,
                                         beta=BETA, seed=0))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        planner.plan(state, model, reward_fn)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _timed_steps(step: Callable[[], Any], steps: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def run_rollout_only(model: DeltaDynamics, state: torch.Tensor, steps: int,
                     warmup: int) -> list[float]:
    actions = torch.rand(N, H, NU, generator=torch.Generator().manual_seed(3)) * 2.0 - 1.0
    with torch.inference_mode():
        return _timed_steps(lambda: model.rollout(state, actions), steps, warmup)


def run_matmuls_only(model: DeltaDynamics, chunked: bool, steps: int,
                     warmup: int) -> list[float]:
    """H passes of the folded layers' bmm over N samples, as chunks or as one bmm."""
    layers = folded_layers(model)
    chunks = THREADS if chunked else 1
    cols = -(-(N // chunks) // 16) * 16  # the rollout pads columns to 16 floats too
    buffers = [[torch.randn(E, layers[0].shape[2], cols)]
               + [torch.empty(E, w.shape[1], cols) for w in layers] for _ in range(chunks)]

    def one_chunk(bufs: list[torch.Tensor]) -> None:
        for _ in range(H):
            h = bufs[0]
            for w, out in zip(layers, bufs[1:]):
                h = torch.bmm(w, h, out=out)

    if not chunked:
        return _timed_steps(lambda: one_chunk(buffers[0]), steps, warmup)
    with ThreadPoolExecutor(chunks - 1, initializer=torch.set_num_threads,
                            initargs=(1,)) as pool:
        def step() -> None:
            torch.set_num_threads(1)
            futures = [pool.submit(one_chunk, bufs) for bufs in buffers[1:]]
            one_chunk(buffers[0])
            for future in futures:
                future.result()
            torch.set_num_threads(THREADS)
        return _timed_steps(step, steps, warmup)


def run_pytorch_mppi(model: DeltaDynamics, state: torch.Tensor, goal: torch.Tensor,
                     steps: int, warmup: int) -> list[float]:
    from pytorch_mppi import MPPI
    step = ensemble_step(model)

    def dynamics(s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        # (E·N, nx): copy m of every sample (rollout_samples = E) is member m's state.
        return step(s.view(E, -1, NX), u.view(E, -1, NU)[:1]).reshape(-1, NX)

    def running_cost(s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return (s - goal).square().sum(-1)

    ctrl = MPPI(dynamics, running_cost, NX, noise_sigma=SIGMA ** 2 * torch.eye(NU),
                num_samples=N, horizon=H, lambda_=1.0 / KAPPA, u_min=-torch.ones(NU),
                u_max=torch.ones(NU), rollout_samples=E)
    times = []
    with torch.inference_mode():
        for i in range(warmup + steps):
            start = time.perf_counter()
            ctrl.command(state)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def run_torchrl(model: DeltaDynamics, state: torch.Tensor, goal: torch.Tensor,
                steps: int, warmup: int) -> list[float]:
    from tensordict import TensorDict
    from tensordict.nn import TensorDictModule
    from torchrl.data import Bounded, Composite, Unbounded
    from torchrl.envs.model_based import ModelBasedEnvBase
    from torchrl.modules import MPPIPlanner as TorchRLMPPI
    step = ensemble_step(model)

    class WorldModel(torch.nn.Module):
        def forward(self, obs: torch.Tensor, action: torch.Tensor):
            # obs (..., E, nx) per candidate -> members first for the batched ensemble.
            nxt = step(obs.movedim(-2, 0), action.unsqueeze(0)).movedim(0, -2)
            reward = -(nxt - goal).square().sum(-1).mean(-1, keepdim=True)
            return nxt, reward

    class HandModelEnv(ModelBasedEnvBase):
        def __init__(self, world_model):
            super().__init__(world_model)
            self.observation_spec = Composite(obs=Unbounded((E, NX)))
            self.state_spec = Composite(obs=Unbounded((E, NX)))
            self.action_spec = Bounded(-1.0, 1.0, (NU,))
            self.reward_spec = Unbounded((1,))

        def _reset(self, tensordict=None, **kwargs):
            return TensorDict({'obs': state.expand(E, NX).clone()}, batch_size=[])

    class ReturnToGo(torch.nn.Module):
        """Advantage = sum of the rewards from each step on (no value function)."""

        def forward(self, td):
            reward = td.get(('next', 'reward'))
            td.set('advantage', reward.flip(-2).cumsum(-2).flip(-2))
            return td

    world = TensorDictModule(WorldModel(), in_keys=['obs', 'action'],
                             out_keys=['obs', 'reward'])
    env = HandModelEnv(world)
    planner = TorchRLMPPI(env, ReturnToGo(), temperature=KAPPA, planning_horizon=H,
                          optim_steps=1, num_candidates=N, top_k=N)
    td = TensorDict({'obs': state.expand(E, NX).clone()}, batch_size=[])
    times = []
    with torch.inference_mode():
        for i in range(warmup + steps):
            start = time.perf_counter()
            planner(td.clone())
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def summarize(times: list[float], flops: float, peak: float) -> dict[str, Any]:
    ms = np.asarray(times) * 1e3
    p50 = float(np.percentile(ms, 50))
    gflops = flops / (p50 / 1e3) / 1e9
    return {'p50_ms': p50, 'p99_ms': float(np.percentile(ms, 99)),
            'mean_ms': float(ms.mean()), 'max_ms': float(ms.max()), 'steps': int(ms.size),
            'gflops': gflops, 'peak_fraction': gflops / peak}


def budget_at(fraction: float, flops: float, peak_gflops: float, matmul_ms: float,
              ours_ms: float) -> dict[str, float]:
    """
    Time left for the non-matmul work if a step is to reach ``fraction`` of peak.

    ``step_ms`` is the longest step at that rate, ``matmul_ms`` the matmul-only p50,
    ``left_ms`` their difference and ``ours_other_ms`` what ours spends beyond the
    matmuls (``ours_ms`` minus ``matmul_ms``).
    """
    step_ms = flops / (fraction * peak_gflops * 1e9) * 1e3
    return {'fraction': fraction, 'step_ms': step_ms, 'matmul_ms': matmul_ms,
            'left_ms': step_ms - matmul_ms, 'ours_other_ms': ours_ms - matmul_ms}


def plot(results: dict[str, dict[str, Any]], raw: dict[str, list[float]], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    values = np.concatenate([np.asarray(v) * 1e3 for v in raw.values()])
    bins = np.linspace(values.min() * 0.95, np.percentile(values, 99.5) * 1.05, 80)
    for name, times in raw.items():
        ax.hist(np.asarray(times) * 1e3, bins=bins, histtype='step', linewidth=1.5,
                label=f"{name}: p50 {results[name]['p50_ms']:.1f} ms")
    ax.set_xlabel('planning step latency [ms]')
    ax.set_ylabel('steps')
    ax.set_title(f'PDDM planning step, E={E} N={N} H={H}, {THREADS} threads')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--steps', type=int, default=200, help='timed steps per method')
    parser.add_argument('--warmup', type=int, default=20, help='untimed steps first')
    parser.add_argument('--out', type=Path, default=None, help='output folder')
    args = parser.parse_args()
    out = args.out or Path('runs') / f"bench_planner_{time.strftime('%Y%m%d_%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    peak = matmul_peak()
    flops = mlp_flops()
    model = make_model()
    state = torch.from_numpy(np.random.default_rng(1).normal(0.3, 1.5, NX)).float()
    goal = torch.from_numpy(np.random.default_rng(2).normal(0.3, 1.5, NX)).float()
    reward_fn = quadratic_reward(goal)

    methods: dict[str, Callable[[], list[float]]] = {
        'ours': lambda: run_ours(model, state, reward_fn, args.steps, args.warmup),
        'ours (reference rollout)': lambda: run_ours(ReferenceRollout(model), state,
                                                     reward_fn, args.steps, args.warmup),
        'ours: rollout only': lambda: run_rollout_only(model, state, args.steps, args.warmup),
        'ours: layer matmuls only (chunked)': lambda: run_matmuls_only(
            model, True, args.steps, args.warmup),
        'ours: layer matmuls only (one bmm)': lambda: run_matmuls_only(
            model, False, args.steps, args.warmup),
        'pytorch-mppi': lambda: run_pytorch_mppi(model, state, goal, args.steps, args.warmup),
        'torchrl MPPI': lambda: run_torchrl(model, state, goal, args.steps, args.warmup),
    }
    results: dict[str, dict[str, Any]] = {}
    raw: dict[str, list[float]] = {}
    for name, run in methods.items():
        try:
            raw[name] = run()
        except ImportError as exc:
            results[name] = {'status': f'not installed: {exc}'}
            continue
        results[name] = {'status': 'ok', **summarize(raw[name], flops, peak['gflops'])}
    for name, note in PEER_NOTES.items():
        results[name] = {'status': f'not installed: {note}'}
    ours = results['ours']['p50_ms']
    for res in results.values():
        if res['status'] == 'ok':
            res['speedup_of_ours'] = res['p50_ms'] / ours

    print(f"\nfp32 matmul peak ({THREADS} threads): {peak['gflops']:.0f} GFLOP/s "
          f"({', '.join(f'{n}: {g:.0f}' for n, g in peak['by_size'].items())}); "
          f'{flops / 1e9:.3f} GFLOP per planning step')
    header = ['method', 'p50 ms', 'p99 ms', 'p99/p50', 'GFLOP/s', '% of peak', 'speed-up vs ours']
    rows = []
    for name, res in results.items():
        if res['status'] != 'ok':
            rows.append([name, res['status']])
            continue
        rows.append([name, f"{res['p50_ms']:.2f}", f"{res['p99_ms']:.2f}",
                     f"{res['p99_ms'] / res['p50_ms']:.2f}", f"{res['gflops']:.0f}",
                     f"{100 * res['peak_fraction']:.1f}", f"{res['speedup_of_ours']:.2f}x"])
    widths = [max(len(h), *(len(r[i]) for r in rows if len(r) == len(header)))
              for i, h in enumerate(header)]
    print('  '.join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print('  '.join(c.ljust(w) for c, w in zip(row, widths)))

    fastest_matmuls = min((results[n] for n in results if 'matmuls only' in n),
                          key=lambda r: r['p50_ms'])
    ceiling = fastest_matmuls['peak_fraction']
    print(f"\nours reaches {100 * results['ours']['peak_fraction']:.0f} % of peak; the layer "
          f'matmuls alone, at these shapes, reach {100 * ceiling:.0f} %: the ceiling for any '
          'implementation of this network at these shapes.')
    budget = budget_at(0.8, flops, peak['gflops'], fastest_matmuls['p50_ms'],
                       results['ours']['p50_ms'])
    print(f"80 % of peak means a step of at most {budget['step_ms']:.2f} ms; the layer matmuls "
          f"alone take {budget['matmul_ms']:.2f} ms, leaving {budget['left_ms']:.2f} ms for "
          f"everything else (activations, sampling, filtering, scoring), which take "
          f"{budget['ours_other_ms']:.2f} ms in ours.")

    plot(results, raw, out / 'latency.png')
    ok_peers = [n for n, r in results.items()
                if r['status'] == 'ok' and not n.startswith('ours')]
    summary = {
        'bench': 'planner', 'settings': {'E': E, 'N': N, 'H': H, 'nx': NX, 'nu': NU,
                                         'hidden': list(HIDDEN), 'threads': THREADS,
                                         'kappa': KAPPA, 'sigma': SIGMA, 'beta': BETA},
        'machine': {'cpu': platform.processor() or platform.machine(),
                    'torch': torch.__version__, 'numpy': np.__version__,
                    'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY')},
        'gflop_per_step': flops / 1e9, 'peak_gflops': peak['gflops'],
        'peak_by_size': {str(k): v for k, v in peak['by_size'].items()},
        'results': results,
        'matmul_ceiling_fraction': ceiling,
        'budget_at_80_percent': budget,
        'acceptance': {
            'peak_fraction_ge_0.8': results['ours']['peak_fraction'] >= 0.8,
            'p99_le_1.5_p50': results['ours']['p99_ms'] <= 1.5 * results['ours']['p50_ms'],
            'speedup_ge_1.2_vs_each_installed_peer': all(
                results[n]['speedup_of_ours'] >= 1.2 for n in ok_peers),
        },
        'plot': str(out / 'latency.png'),
    }
    (out / 'results.json').write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == '__main__':
    main()
