"""
The fast path of ``RolloutModel.rollout``: folded weights, samples in columns, chunks on threads.

The planner's hot loop (PDDM: E=3 members, N=700 samples, H=7 steps, 2x250 MLPs, ~2.7 GFLOP
per plan) spends its time in small matmuls. This module makes them as few and as large as
the maths allows and keeps both cores busy:

- normalizers folded into the first and last layer, biases as one more weight column fed
  by a constant-1 input row, so every layer is exactly one batched matmul;
- samples as columns (features x samples), padded to a multiple of 16 floats;
- the N samples cut into one chunk per torch thread, each rolled out on its own thread with
  one intra-op thread: independent sequences never synchronize, and a single-threaded matmul
  per chunk measured ~1.5x as efficient as a two-threaded one on all N (bench/planner.py).

``DeltaDynamics._rollout_reference`` is the straightforward version; test_rollout_fast.py
checks the two agree.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import torch


class RolloutModel(Protocol):
    """
    What a rollout reads of a Δ-state ensemble (``model.DeltaDynamics`` has it all).

    A protocol rather than an import: ``model.py`` calls this module, so this module may
    not import it back.
    """

    net: Any                 # .layers() -> [(weight (E, in, out), bias (E, 1, out)), ...]
    state_norm: Any          # Normalizer: .mean, .std, .stats_like(s0)
    action_norm: Any
    delta_norm: Any          # + .output_std
    state_dim: int
    action_dim: int
    config: Any              # .clip_actions


#: model -> (key, folded layers); weak, so a model dropped by a swap frees its weights.
_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: Fewest samples per concurrently rolled-out chunk (smaller ones do not pay the hand-off).
_MIN_CHUNK = 64

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _single_threaded() -> None:
    torch.set_num_threads(1)


def _helper_pool(workers: int) -> ThreadPoolExecutor:
    """Process-wide pool of >= ``workers`` helper threads, each with 1 intra-op thread."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            # Grown, never shrunk: the old pool's threads finish their queue and exit.
            old, _POOL = _POOL, ThreadPoolExecutor(workers, 'dexmpc-rollout',
                                                   initializer=_single_threaded)
            if old is not None:
                old.shutdown(wait=False)
        return _POOL


def _in_inference_mode(fn: Callable[..., Any], *args: Any) -> Any:
    # Grad mode is thread-local: the caller's inference_mode does not reach the helpers.
    with torch.inference_mode():
        return fn(*args)


def folded_layers(model: RolloutModel) -> list[torch.Tensor]:
    """
    Transposed, bias-augmented weights with the normalizers folded in (cached).

    The rollout runs in normalized state units u = (s - μs)/σs, feature-major (features
    × samples), with a constant-1 row appended to every layer input so that each
    bias is one more weight column and a layer is one matmul (no bias pass)::

        layer 0   [u; clip(a); 1] -> h (+ 1 row)   W·[I; 1/σa] and b - Σ W μa/σa
        middle    [h; 1] -> [h'; 1]                last row (0..0, 1) keeps the 1
        last      [h; 1] -> Δu = (σΔ z + μΔ)/σs    u' = u + Δu

    Returns:
        ``[W_0 (E, h_0 + 1, nx + nu + 1), W_i (E, h_i + 1, h_{i-1} + 1)...,
        W_L (E, nx, h_{L-1} + 1)]`` float32, contiguous.
    """
    layers = model.net.layers()
    norms = (model.state_norm, model.action_norm, model.delta_norm)
    key = (tuple((p, p._version) for pair in layers for p in pair),
           tuple((nm, nm.mean, nm.std) for nm in norms))
    cached = _FOLDED.get(model)
    if cached is not None and len(cached[0][0]) == len(key[0]) and all(
            x is y and vx == vy for (x, vx), (y, vy) in zip(cached[0][0], key[0])) and all(
            all(p is q for p, q in zip(c, k)) for c, k in zip(cached[0][1], key[1])):
        return cached[1]
    nx, nu = model.state_dim, model.action_dim
    f64 = torch.float64
    s_std = torch.tensor(model.state_norm.std)
    a_mean = torch.tensor(model.action_norm.mean)
    a_std = torch.tensor(model.action_norm.std)
    d_mean = torch.tensor(model.delta_norm.mean)
    d_std = torch.tensor(model.delta_norm.output_std)  # 0 where Δ never varied
    folded = []
    with torch.no_grad():
        for i, (weight, bias) in enumerate(layers):
            w, b = weight.detach().to(f64), bias.detach().to(f64)[:, 0]  # (E, in, out)
            e, fan_in, fan_out = w.shape
            if i == len(layers) - 1:
                # Δu = (σΔ (h W + b) + μΔ) / σs: scale the output columns.
                scale = d_std / s_std
                m = torch.cat([w * scale, ((b * d_std + d_mean) / s_std)[:, None]], dim=1)
                folded.append(m.transpose(1, 2).to(torch.float32).contiguous())
                break
            m = torch.zeros(e, fan_in + 1, fan_out + 1, dtype=f64)
            if i == 0:
                w_a = w[:, nx:] / a_std[:, None]
                m[:, :nx, :fan_out] = w[:, :nx]
                m[:, nx:nx + nu, :fan_out] = w_a
                b = b - torch.einsum('u,euo->eo', a_mean, w_a)
            else:
                m[:, :fan_in, :fan_out] = w
            m[:, fan_in, :fan_out] = b
            m[:, fan_in, fan_out] = 1.0
            folded.append(m.transpose(1, 2).to(torch.float32).contiguous())
    _FOLDED[model] = (key, folded)
    return folded


def rollout_fast(model: RolloutModel, out: torch.Tensor, s0: torch.Tensor,
                 a: torch.Tensor) -> None:
    """
    ``DeltaDynamics._rollout_reference`` in fewer, larger ops, split over torch's threads.

    Sequences are independent, so with T = ``torch.get_num_threads()`` > 1 the N
    samples are cut into T chunks rolled out concurrently, each on one thread (T - 1
    helper threads plus this one, intra-op threads 1 meanwhile). One single-threaded
    matmul per layer on a chunk is ~1.5x as efficient as a T-threaded matmul on all N:
    these matmuls are too small to split well, and the chunks never synchronize.
    """
    n = out.shape[1]
    threads = torch.get_num_threads()
    chunks = max(1, min(threads, n // _MIN_CHUNK))
    layers = folded_layers(model)
    if model.config.clip_actions:
        a = a.clamp(-1.0, 1.0)
    mean, std = model.state_norm.stats_like(s0)
    u0 = (s0 - mean) / std
    if chunks == 1:
        _rollout_chunk(model.action_dim, out, u0, a, layers, mean, std)
        return
    bounds = [n * i // chunks for i in range(chunks + 1)]
    parts = [(out[:, lo:hi], u0 if u0.ndim == 1 else u0[lo:hi], a[lo:hi])
             for lo, hi in zip(bounds[:-1], bounds[1:])]
    pool = _helper_pool(chunks - 1)
    torch.set_num_threads(1)
    try:
        futures = [pool.submit(_in_inference_mode, _rollout_chunk, model.action_dim, *part, layers,
                               mean, std) for part in parts[1:]]
        _rollout_chunk(model.action_dim, *parts[0], layers, mean, std)
    finally:
        torch.set_num_threads(threads)
        for future in futures:
            future.result()


def _rollout_chunk(action_dim: int, out: torch.Tensor, u0: torch.Tensor, a: torch.Tensor,
                   layers: list[torch.Tensor], mean: torch.Tensor, std: torch.Tensor) -> None:
    """Roll out one chunk (see :func:`folded_layers`) into ``out`` (E, n, H, nx)."""
    e, n, horizon, nx = out.shape
    nu = action_dim
    # Columns padded to a multiple of 16 (one AVX-512 register of float32).
    cols = -(-n // 16) * 16
    x = torch.zeros(horizon + 1, e, nx + nu + 1, cols)
    x[:, :, nx + nu].fill_(1.0)
    x[:horizon, :, nx:nx + nu, :n].copy_(a.permute(1, 2, 0).unsqueeze(1))
    x[0, :, :nx, :n].copy_(u0.T.unsqueeze(0) if u0.ndim == 2 else u0[None, :, None])
    hidden = [torch.empty(e, w.shape[1], cols) for w in layers[:-1]]
    last = len(layers) - 1
    for k in range(horizon):
        h = x[k]
        for i in range(last):
            h = torch.bmm(layers[i], h, out=hidden[i]).relu_()
        u = x[k, :, :nx]
        torch.baddbmm(u, layers[last], h, out=x[k + 1, :, :nx])
    # (H, E, nx, n) normalized -> (E, n, H, nx) state units.
    states = x[1:, :, :nx, :n].permute(1, 3, 0, 2)
    torch.addcmul(mean, states, std, out=out)
