"""
Δ-state ensemble dynamics model of MBMF and PDDM (papers.md §0.1 item 1, §1.2, §7.2).

Each of E members predicts the normalized state change::

    x = [(s - μs)/σs, (clip(a) - μa)/σa]      ẑ = f_e(x)      ŝ' = s + σΔ·ẑ + μΔ

and is trained on ``mean ‖ẑ - (Δs - μΔ)/σΔ‖²`` with Adam (lr 1e-3, batch 512). ``clip``
is the PDDM clip of actions to [-1, 1] at the model input (planner proposals may leave
the range), applied in training, prediction and rollouts alike when
``clip_actions`` is on.

Training (:meth:`DeltaDynamics.fit`), as in the reference code:

- the three normalizers are recomputed from the whole (clipped, noise-free) dataset on
  every call;
- Gaussian noise with per-dimension std ``noise_to_signal·|mean of that dimension|`` is
  added once per call to the states and to the Δs targets (not to the actions, as
  ``add_noise`` in nn_dynamics/PDDM), never at prediction time;
- all members see the same shuffled minibatches (PDDM: diversity only from their
  different initializations), or, with ``bootstrap``, each member trains on its own
  resample-with-replacement of the data, shuffled separately;
- each member's loss is its own mean squared error; the summed loss gives every member
  exactly the gradient it would get alone. A fresh Adam is made per call and training
  continues from the current weights (PDDM's ``warmstart``); to retrain from scratch
  build a new model.

Precision: normalizer statistics are float64 (fitted and stored exactly, JSON
round trip); network weights and every training, prediction and rollout computation are
float32 on the CPU. float32 halves memory traffic and is ~2× faster in the planner's
batched matmuls, and its rounding (~1e-7 relative) is orders below the model's own
one-step error. Predictions are therefore float32, also for float64 input.

Settings are a :class:`DynamicsConfig` (``config.py``).

Randomness: ``config.seed`` seeds a private ``torch.Generator`` for the initialization
and a private numpy ``Generator`` for shuffling, bootstrap and noise; no global RNG or
torch setting is touched (``threads`` > 0 sets torch's thread count only for the
duration of a call and restores it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from dexmpc_ros.learning.dynamics.config import DynamicsConfig, is_int
from dexmpc_ros.learning.ensemble import EnsembleMLP
from dexmpc_ros.learning.dynamics.fast_rollout import rollout_fast
from dexmpc_ros.learning.normalizer import Normalizer
from dexmpc_ros.learning.torch_threads import torch_threads

ArrayT = TypeVar('ArrayT', np.ndarray, torch.Tensor)
#: ``on_epoch(epoch, mean_loss)``; returning True stops training after that epoch.
EpochCallback = Callable[[int, float], 'bool | None']

#: Windows evaluated per batch in :meth:`DeltaDynamics.multi_step_error` (bounds memory).
_WINDOW_CHUNK = 2048


def add_noise(data: np.ndarray, noise_to_signal: float, rng: np.random.Generator) -> np.ndarray:
    """
    Copy of ``data`` (T, d) plus N(0, (noise_to_signal·|mean_j|)²) noise in each dimension j.

    Dimensions whose mean is 0 get no noise (the nn_dynamics/PDDM ``add_noise`` rule).
    """
    data = np.asarray(data, dtype=np.float64)
    scale = noise_to_signal * np.abs(data.mean(axis=0))
    if not np.any(scale > 0):
        return data.copy()
    return data + rng.standard_normal(data.shape) * scale


class DeltaDynamics:
    """
    Ensemble Δ-state model ``(s (nx,), a (nu,)) -> s' (nx,)`` per member.

    Array arguments may be numpy arrays or torch tensors (any float dtype); results are
    float32 and of the same kind as the input named in each method. Torch results are
    ordinary tensors (not inference tensors) that callers may modify. Not thread-safe:
    do not call :meth:`fit` while another thread predicts with the same object.

    Attributes:
        state_dim: nx.
        action_dim: nu.
        config: the :class:`DynamicsConfig`.
        net: the :class:`EnsembleMLP` (E, nx + nu -> nx).
        state_norm: normalizer of s (nx).
        action_norm: normalizer of the (clipped) actions (nu).
        delta_norm: normalizer of Δs = s' - s (nx).
        fitted: :meth:`fit` or a checkpoint set the normalizers (before that they are the
            identity and predictions come from the untrained initialization).
    """

    def __init__(self, state_dim: int, action_dim: int,
                 config: DynamicsConfig | None = None) -> None:
        """
        Build an untrained model with identity normalizers.

        Raises:
            ValueError: a dimension is < 1.
        """
        if not (is_int(state_dim) and state_dim >= 1 and is_int(action_dim)
                and action_dim >= 1):
            raise ValueError(f'state_dim and action_dim must be integers >= 1, got '
                             f'{state_dim!r}, {action_dim!r}')
        self.state_dim = int(state_dim)
        self.action_dim = int(action_dim)
        self.config = config or DynamicsConfig()
        cfg = self.config
        init_gen = torch.Generator().manual_seed(cfg.seed)
        self.net = EnsembleMLP(cfg.ensemble_size, self.state_dim + self.action_dim,
                               self.state_dim, cfg.hidden, generator=init_gen)
        # A stream independent of the initialization's for shuffling, bootstrap and noise.
        self._rng = np.random.default_rng([cfg.seed, 1])
        self.state_norm = Normalizer.identity(self.state_dim)
        self.action_norm = Normalizer.identity(self.action_dim)
        self.delta_norm = Normalizer.identity(self.state_dim)
        self.fitted = False

    @property
    def ensemble_size(self) -> int:
        """Members E."""
        return self.config.ensemble_size

    # ------------------------------------------------------------------ training

    def fit(self, states: Any, actions: Any, next_states: Any, epochs: int | None = None,
            on_epoch: EpochCallback | None = None, is_new: Any = None) -> list[float]:
        """
        Train all members on transitions ``(s_t, a_t) -> s_{t+1}``.

        Args:
            states: (T, nx) s_t.
            actions: (T, nu) a_t (clipped to [-1, 1] first when ``clip_actions``).
            next_states: (T, nx) s_{t+1}.
            epochs: passes over the data; None uses ``config.epochs``; 0 only refits the
                normalizers.
            on_epoch: called after each epoch with (epoch index, mean loss); returning
                True stops training early.
            is_new: (T,) bool, the on-policy transitions, for ``new_data_fraction``
                (ignored when that is 0, or when every or no transition is new).

        Returns:
            Mean training loss of each epoch run (mean over members and samples, in
            normalized Δ units, noise included).

        Raises:
            ValueError: shapes disagree, T < 1, epochs < 0, or the data holds NaN/inf.
        """
        cfg = self.config
        epochs = cfg.epochs if epochs is None else epochs
        if not is_int(epochs) or epochs < 0:
            raise ValueError(f'epochs must be an integer >= 0, got {epochs!r}')
        s, a, s_next = (self._as_numpy(x) for x in (states, actions, next_states))
        nx, nu = self.state_dim, self.action_dim
        if s.ndim != 2 or s.shape[1] != nx or s.shape[0] < 1:
            raise ValueError(f'states must be (T >= 1, {nx}), got {s.shape}')
        if a.shape != (s.shape[0], nu) or s_next.shape != s.shape:
            raise ValueError(f'need states (T, {nx}), actions (T, {nu}), next_states (T, {nx})'
                             f'; got {s.shape}, {a.shape}, {s_next.shape}')
        for name, arr in (('states', s), ('actions', a), ('next_states', s_next)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f'{name} holds NaN or inf')
        if cfg.clip_actions:
            a = np.clip(a, -1.0, 1.0)
        delta = s_next - s
        self.state_norm = Normalizer.from_data(s)
        self.action_norm = Normalizer.from_data(a)
        self.delta_norm = Normalizer.from_data(delta)
        self.fitted = True
        if epochs == 0:
            return []

        rng = self._rng
        if cfg.noise_to_signal > 0:
            s = add_noise(s, cfg.noise_to_signal, rng)
            delta = add_noise(delta, cfg.noise_to_signal, rng)
        inputs = torch.from_numpy(np.concatenate(
            [self.state_norm.normalize(s), self.action_norm.normalize(a)], axis=1)).float()
        targets = torch.from_numpy(self.delta_norm.normalize(delta)).float()
        groups = None
        if is_new is not None and cfg.new_data_fraction > 0:
            new = np.asarray(is_new, dtype=bool)
            if new.shape != (s.shape[0],):
                raise ValueError(f'is_new must be ({s.shape[0]},), got {new.shape}')
            if 0 < new.sum() < len(new):
                groups = (np.flatnonzero(new), np.flatnonzero(~new))
        return self._train(inputs, targets, epochs, on_epoch, groups)

    def _epoch_order(self, size: int, groups: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
        """
        One epoch's row order with ``new_data_fraction`` of every minibatch from ``groups[0]``.

        As many minibatches as a uniform epoch; each group is swept in shuffled order and
        reshuffled when used up (the smaller group repeats within an epoch).
        """
        batch = self.config.batch_size
        n_batches = -(-size // batch)
        n_new = max(1, round(batch * self.config.new_data_fraction))
        n_old = batch - n_new
        rows = []
        for members, count in ((groups[0], n_new), (groups[1], n_old)):
            need = n_batches * count
            reps = -(-need // len(members))
            sweep = np.concatenate([self._rng.permutation(members) for _ in range(reps)])
            rows.append(sweep[:need].reshape(n_batches, count))
        return torch.from_numpy(np.concatenate(rows, axis=1).ravel())

    def _train(self, inputs: torch.Tensor, targets: torch.Tensor, epochs: int,
               on_epoch: EpochCallback | None,
               groups: tuple[np.ndarray, np.ndarray] | None = None) -> list[float]:
        cfg, rng, n_members = self.config, self._rng, self.config.ensemble_size
        size = inputs.shape[0]
        if cfg.bootstrap:
            members = torch.from_numpy(rng.integers(0, size, (n_members, size)))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        losses: list[float] = []
        self.net.train()
        with torch_threads(cfg.threads):
            for epoch in range(epochs):
                if cfg.bootstrap:
                    # Each member shuffles its own resample: (E, T) row indices.
                    order = torch.from_numpy(rng.permuted(members.numpy(), axis=1))
                elif groups is not None:
                    order = self._epoch_order(size, groups)
                else:
                    order = torch.from_numpy(rng.permutation(size))
                total, rows = 0.0, order.shape[-1]
                for start in range(0, rows, cfg.batch_size):
                    idx = order[..., start:start + cfg.batch_size]
                    pred = self.net(inputs[idx])          # (B, in) shared or (E, B, in)
                    err = (pred - targets[idx]).square()  # (E, B, nx)
                    per_member = err.mean(dim=(1, 2))
                    optimizer.zero_grad(set_to_none=True)
                    per_member.sum().backward()
                    optimizer.step()
                    total += per_member.detach().mean().item() * idx.shape[-1]
                losses.append(total / rows)
                if on_epoch is not None and on_epoch(epoch, losses[-1]):
                    break
        self.net.eval()
        return losses

    # ---------------------------------------------------------------- prediction

    def predict(self, states: ArrayT, actions: Any) -> ArrayT:
        """
        One step for every member: ŝ' = s + σΔ·f_e(norm(s), norm(clip(a))) + μΔ.

        Args:
            states: (B, nx), fed to every member, or (E, B, nx), member e reads [e].
            actions: (B, nu) or (E, B, nu), likewise.

        Returns:
            (E, B, nx) float32 next states, a tensor if ``states`` is one, else numpy.
        """
        as_torch = isinstance(states, torch.Tensor)
        s, a = self._as_tensor(states), self._as_tensor(actions)
        e, nx, nu = self.ensemble_size, self.state_dim, self.action_dim
        for name, arr, dim in (('states', s, nx), ('actions', a, nu)):
            if arr.ndim not in (2, 3) or arr.shape[-1] != dim or (
                    arr.ndim == 3 and arr.shape[0] != e):
                raise ValueError(f'{name} must be (B, {dim}) or (E={e}, B, {dim}), '
                                 f'got {tuple(arr.shape)}')
        if s.shape[-2] != a.shape[-2]:
            raise ValueError(f'states and actions batch sizes differ: {tuple(s.shape)} vs '
                             f'{tuple(a.shape)}')
        batch = s.shape[-2]
        out = torch.empty(e, batch, nx)
        with torch_threads(self.config.threads), torch.inference_mode():
            s = s.expand(e, batch, nx)
            x = torch.cat([self.state_norm.normalize(s),
                           self._normalize_actions(a).expand(e, batch, nu)], dim=2)
            self._step_into(out, s, self.net(x))
        return out if as_torch else out.numpy()

    def rollout(self, state: Any, actions: ArrayT) -> ArrayT:
        """
        Open-loop H-step predictions of every member for N action sequences.

        Member e feeds its own predictions back (PDDM): ŝ_{k+1} = f_e(ŝ_k, a_k), ŝ_0 = s.
        One batched pass per step covers all members and samples.

        Args:
            state: (nx,) shared start state, or (N, nx) one per sequence.
            actions: (N, H, nu) action sequences.

        Returns:
            (E, N, H, nx) float32 predicted s_1..s_H, a tensor if ``actions`` is one,
            else numpy.
        """
        as_torch = isinstance(actions, torch.Tensor)
        a, s0 = self._as_tensor(actions), self._as_tensor(state)
        e, nx, nu = self.ensemble_size, self.state_dim, self.action_dim
        if a.ndim != 3 or a.shape[2] != nu:
            raise ValueError(f'actions must be (N, H, {nu}), got {tuple(a.shape)}')
        n, horizon = a.shape[0], a.shape[1]
        if s0.shape not in ((nx,), (n, nx)):
            raise ValueError(f'state must be ({nx},) or (N={n}, {nx}), got {tuple(s0.shape)}')
        out = torch.empty(e, n, horizon, nx)
        with torch_threads(self.config.threads), torch.inference_mode():
            if self.config.hidden:
                rollout_fast(self, out, s0, a)
            else:
                self._rollout_reference(out, s0, a)
        return out if as_torch else out.numpy()

    def _rollout_reference(self, out: torch.Tensor, s0: torch.Tensor, a: torch.Tensor) -> None:
        """Straightforward rollout into ``out`` (E, N, H, nx): normalize, predict, step."""
        e, n, horizon, nx = out.shape
        a_in = self._normalize_actions(a)
        mean, std = self.state_norm.stats_like(s0)
        x = torch.empty(e, n, nx + self.action_dim)
        x_s, x_a = x[..., :nx], x[..., nx:]
        current = s0.expand(e, n, nx)
        for k in range(horizon):
            torch.sub(current, mean, out=x_s)
            x_s.div_(std)
            x_a.copy_(a_in[:, k])
            nxt = out[:, :, k]
            self._step_into(nxt, current, self.net(x))
            current = nxt

    def _normalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        if self.config.clip_actions:
            a = a.clamp(-1.0, 1.0)
        return self.action_norm.normalize(a)

    def _step_into(self, out: torch.Tensor, s: torch.Tensor, z: torch.Tensor) -> None:
        """``out = s + σΔ·z + μΔ`` (z is consumed)."""
        mean, std = self.delta_norm.output_stats_like(z)  # 0 where Δ never varied
        torch.add(z.mul_(std).add_(mean), s, out=out)

    # ---------------------------------------------------------------- validation

    def multi_step_error(self, episodes: Sequence[tuple[Any, Any]],
                         horizon: int, scale: Any = None) -> dict[str, Any]:
        """
        Error of open-loop ``horizon``-step predictions from every start of every episode.

        For each window (start t, k = 1..H) the error is ``(ŝ_{t+k} - s_{t+k}) / σs``
        (state normalizer units, so dimensions of different scale weigh alike).

        Args:
            episodes: ``(states (T+1, nx), actions (T, nu))`` pairs; an episode with
                T < horizon has no window and is skipped.
            horizon: H >= 1.
            scale: (nx,) per-dimension error unit; None uses this model's state std. Give
                the same scale (e.g. the validation data's std) to compare two models:
                each model's own std differs with the data it was trained on.

        Returns:
            ``{'horizon': H, 'windows': W, 'per_step': [e_1..e_H], 'mean': mean of
            per_step, 'final': e_H}`` where e_k is the root mean square normalized error
            at step k over windows, members and dimensions (plain floats, JSON-able).

        Raises:
            ValueError: horizon < 1, an episode's shapes disagree, or no episode is long
                enough for one window.
        """
        if not is_int(horizon) or horizon < 1:
            raise ValueError(f'horizon must be an integer >= 1, got {horizon!r}')
        nx, nu = self.state_dim, self.action_dim
        starts, seqs, truths = [], [], []
        for i, (states, actions) in enumerate(episodes):
            s, a = self._as_numpy(states), self._as_numpy(actions)
            if a.ndim != 2 or a.shape[1] != nu or s.shape != (a.shape[0] + 1, nx):
                raise ValueError(f'episode {i}: need states (T+1, {nx}) and actions (T, {nu}),'
                                 f' got {s.shape} and {a.shape}')
            windows = a.shape[0] - horizon + 1
            if windows < 1:
                continue
            # sliding_window_view puts the window axis last: (W, nu, H) -> (W, H, nu).
            seqs.append(np.lib.stride_tricks.sliding_window_view(a, horizon, axis=0)
                        .transpose(0, 2, 1))
            truths.append(np.lib.stride_tricks.sliding_window_view(s[1:], horizon, axis=0)
                          .transpose(0, 2, 1))
            starts.append(s[:windows])
        if not starts:
            raise ValueError(f'no episode has at least horizon={horizon} actions')
        start, seq, truth = (np.concatenate(x) for x in (starts, seqs, truths))
        unit = self.state_norm.std if scale is None else np.asarray(scale, dtype=np.float64)
        sq_sum = np.zeros(horizon)
        for lo in range(0, start.shape[0], _WINDOW_CHUNK):
            hi = lo + _WINDOW_CHUNK
            pred = self.rollout(start[lo:hi], np.ascontiguousarray(seq[lo:hi]))
            err = (pred - truth[lo:hi]) / unit  # (E, W, H, nx), float64
            sq_sum += np.square(err).sum(axis=(0, 1, 3))
        per_step = np.sqrt(sq_sum / (self.ensemble_size * start.shape[0] * nx))
        return {'horizon': horizon, 'windows': int(start.shape[0]),
                'per_step': per_step.tolist(), 'mean': float(per_step.mean()),
                'final': float(per_step[-1])}

    # ------------------------------------------------------------------- export

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """
        Everything needed to rebuild this model, split for a checkpoint.

        Returns:
            ``(tensors, meta)``: tensors are contiguous float32 CPU copies of the network
            parameters by name (``weight_i``, ``bias_i``); meta is JSON-able:
            ``{'state_dim', 'action_dim', 'config', 'normalizers': {'state', 'action',
            'delta'}}``.
        """
        tensors = {name: p.detach().to(torch.float32).contiguous().clone()
                   for name, p in self.net.named_parameters()}
        meta = {'state_dim': self.state_dim, 'action_dim': self.action_dim,
                'config': self.config.to_dict(),
                'normalizers': {'state': self.state_norm.to_dict(),
                                'action': self.action_norm.to_dict(),
                                'delta': self.delta_norm.to_dict()}}
        return tensors, meta

    @classmethod
    def from_export(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> DeltaDynamics:
        """
        Rebuild a model from :meth:`export` output, checking every name and shape.

        Raises:
            ValueError: a missing/unexpected key or tensor, a shape or dimension mismatch,
                or an invalid config/normalizer (the message says which).
        """
        if not isinstance(meta, dict):
            raise ValueError(f'meta must be a dict, got {type(meta).__name__}')
        missing = sorted({'state_dim', 'action_dim', 'config', 'normalizers'} - set(meta))
        if missing:
            raise ValueError(f'missing key(s) {missing}')
        if not isinstance(meta['config'], dict):
            raise ValueError(f"config must be a dict, got {type(meta['config']).__name__}")
        config = DynamicsConfig.from_dict(meta['config'])
        model = cls(meta['state_dim'], meta['action_dim'], config)
        norms = meta['normalizers']
        if not isinstance(norms, dict) or set(norms) != {'state', 'action', 'delta'}:
            raise ValueError("normalizers must be a dict with keys 'state', 'action', 'delta'")
        for key, dim in (('state', model.state_dim), ('action', model.action_dim),
                         ('delta', model.state_dim)):
            try:
                norm = Normalizer.from_dict(norms[key])
            except ValueError as exc:
                raise ValueError(f'normalizer {key!r}: {exc}') from None
            if norm.dim != dim:
                raise ValueError(f'normalizer {key!r} has {norm.dim} dimensions, expected {dim}')
            setattr(model, f'{key}_norm', norm)
        expected = {name: tuple(p.shape) for name, p in model.net.named_parameters()}
        unexpected = sorted(set(tensors) - set(expected))
        absent = sorted(set(expected) - set(tensors))
        if unexpected or absent:
            raise ValueError(f'tensor names differ: missing {absent}, unexpected {unexpected}')
        for name, shape in expected.items():
            got = tuple(tensors[name].shape)
            if got != shape:
                raise ValueError(f'tensor {name!r} has shape {got}, expected {shape} from '
                                 f'state_dim={model.state_dim}, action_dim={model.action_dim},'
                                 f' config ensemble_size/hidden')
            if not tensors[name].is_floating_point():
                raise ValueError(f'tensor {name!r} has dtype {tensors[name].dtype}, expected '
                                 f'float')
        with torch.no_grad():
            for name, param in model.net.named_parameters():
                param.copy_(tensors[name])
        model.fitted = True
        return model

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _as_tensor(x: Any) -> torch.Tensor:
        """float32 CPU tensor view/copy of an array or tensor."""
        if isinstance(x, torch.Tensor):
            return x.detach().to(device='cpu', dtype=torch.float32)
        return torch.from_numpy(np.asarray(x, dtype=np.float32))

    @staticmethod
    def _as_numpy(x: Any) -> np.ndarray:
        """float64 numpy array of an array or tensor."""
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy().astype(np.float64)
        return np.asarray(x, dtype=np.float64)
