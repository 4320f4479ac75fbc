"""
MLP policy of MBMF's MB→MF stage (papers.md §1.2): observation -> normalized action.

:class:`MLPPolicy` is MBMF's 2×64 tanh network (``mbmf.py``) with

- input normalization ``(obs - μ)/σ``, statistics fitted on the training observations and
  stored with the weights (:class:`Normalizer`, float64, JSON round trip);
- a tanh output, so the mean action lies in ``[-1, 1]^m`` like every planner's action;
- a Gaussian head for policy-gradient fine-tuning: a state-independent learned ``log_std``
  (m,), initialized to ``log(init_std)`` (MBMF cheetah/ant: 0.5, swimmer/hopper: 1.0).
  :meth:`MLPPolicy.distribution` is ``Normal(mean(obs), exp(log_std))``; samples may leave
  ``[-1, 1]`` and the environment clips them (the log-probability is of the unclipped
  sample).

:meth:`MLPPolicy.fit` is MBMF's distillation: MSE between the mean action and the
teacher's action (clipped to [-1, 1]), Adam (lr 1e-3), minibatches of 512, continuing from
the current weights (DAgger retrains the same network on the growing dataset).

Checkpoints: :func:`save_policy` / :func:`load_policy` write and verify a directory laid
out exactly as a dynamics checkpoint, with the same functions (``learning/checkpoint.py``:
``model.safetensors`` + ``manifest.json``, written to a hidden temporary sibling and
renamed, sha256 of the weights in the manifest, :class:`CheckpointError` on anything
missing, corrupt or not what the caller expects), with ``format`` ``dexmpc_ros.mlp_policy``.
The manifest's ``state_names`` name the policy's input columns (a :class:`StateLayout`), so
a controller rebuilds the input from an observation, and ``extra.action_space`` says how
the actions map to commands (``absolute`` when absent, as for dynamics checkpoints).

Randomness: ``config.seed`` seeds the initialization (inside ``torch.random.fork_rng``, so
the global torch RNG is left as it was) and a private numpy generator for shuffling.
Computation is float32 on the CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dexmpc_ros.learning.checkpoint import (build_manifest, load_checkpoint_dir,
                                            write_checkpoint_dir)
from dexmpc_ros.learning.dynamics.config import is_int
from dexmpc_ros.learning.normalizer import Normalizer
from dexmpc_ros.learning.torch_threads import torch_threads

FORMAT = 'dexmpc_ros.mlp_policy'
#: Manifest layout version this code writes and reads.
FORMAT_VERSION = 1
#: ``on_epoch(epoch, mean_loss)``; returning True stops training after that epoch.
EpochCallback = Callable[[int, float], 'bool | None']


@dataclass(frozen=True)
class PolicyConfig:
    """
    Network and distillation settings (MBMF ``mbmf.py``, papers.md §1.2-1.3).

    Attributes:
        hidden: hidden layer widths (tanh).
        init_std: initial std of the Gaussian head (MBMF cheetah: 0.5).
        lr: Adam learning rate of :meth:`MLPPolicy.fit`.
        batch_size: minibatch size of :meth:`MLPPolicy.fit`.
        epochs: default epochs per :meth:`MLPPolicy.fit` (MBMF cheetah DAgger: 300).
        seed: seed of the initialization and the shuffling.
        threads: torch threads during fit/act (0: leave torch's setting).
    """

    hidden: tuple[int, ...] = (64, 64)
    init_std: float = 0.5
    lr: float = 1e-3
    batch_size: int = 512
    epochs: int = 300
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, (list, tuple)):
            raise ValueError(f'hidden must be a sequence of widths, got {self.hidden!r}')
        object.__setattr__(self, 'hidden', tuple(self.hidden))
        if not all(is_int(n) and n >= 1 for n in self.hidden):
            raise ValueError(f'hidden widths must be integers >= 1, got {self.hidden!r}')
        for name, low in (('batch_size', 1), ('epochs', 0), ('seed', 0), ('threads', 0)):
            value = getattr(self, name)
            if not is_int(value) or value < low:
                raise ValueError(f'{name} must be an integer >= {low}, got {value!r}')
        for name in ('init_std', 'lr'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a finite number > 0, got {value!r}')

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (``hidden`` as a list)."""
        data = asdict(self)
        data['hidden'] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        """Inverse of :meth:`to_dict`; ValueError on an unknown key or invalid value."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown PolicyConfig key(s) {unknown}; known: {sorted(known)}')
        return cls(**data)


class MLPPolicy(nn.Module):
    """
    ``obs (.., d) -> mean action (.., m)`` in [-1, 1], plus a learned state-independent std.

    Attributes:
        obs_dim: d.
        action_dim: m.
        config: the :class:`PolicyConfig`.
        net: the MLP (``Linear``/``Tanh`` layers; its output goes through tanh).
        log_std: (m,) learned log std of the Gaussian head.
        obs_norm: input normalizer (identity until :meth:`fit` or a checkpoint sets it).
    """

    def __init__(self, obs_dim: int, action_dim: int, config: PolicyConfig | None = None
                 ) -> None:
        super().__init__()
        if not (is_int(obs_dim) and obs_dim >= 1 and is_int(action_dim) and action_dim >= 1):
            raise ValueError(f'obs_dim and action_dim must be integers >= 1, got '
                             f'{obs_dim!r}, {action_dim!r}')
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.config = config or PolicyConfig()
        sizes = (self.obs_dim, *self.config.hidden, self.action_dim)
        layers: list[nn.Module] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(nn.Linear(n_in, n_out))
                if i < len(sizes) - 2:
                    layers.append(nn.Tanh())
        # A near-zero output layer starts the mean at ~0 for every input (a fresh policy
        # for PPO explores around the middle of the action range); distillation does not
        # care where it starts.
        with torch.no_grad():
            layers[-1].weight.mul_(0.01)
            layers[-1].bias.zero_()
        self.net = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((self.action_dim,),
                                               math.log(self.config.init_std)))
        self.obs_norm = Normalizer.identity(self.obs_dim)
        self._rng = np.random.default_rng([self.config.seed, 1])
        self.eval()

    # ------------------------------------------------------------------- forward

    def forward(self, obs: Tensor) -> Tensor:
        """Mean action (..., m) in [-1, 1] of raw observations (..., d)."""
        return torch.tanh(self.net(self.obs_norm.normalize(obs)))

    def distribution(self, obs: Tensor) -> torch.distributions.Normal:
        """The Gaussian policy ``Normal(mean(obs), exp(log_std))`` per action dimension."""
        mean = self(obs)
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean))

    def act(self, obs: Any) -> np.ndarray:
        """Deterministic (mean) action, float64 numpy, for obs (d,) or (B, d)."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        if x.shape[-1:] != (self.obs_dim,):
            raise ValueError(f'obs must end in ({self.obs_dim},), got {tuple(x.shape)}')
        with torch_threads(self.config.threads), torch.no_grad():
            return self(x).numpy().astype(np.float64)

    # ------------------------------------------------------------------ training

    def fit(self, obs: Any, actions: Any, epochs: int | None = None,
            on_epoch: EpochCallback | None = None, refit_normalizer: bool = True
            ) -> list[float]:
        """
        Regress the mean action onto ``actions`` (MSE), continuing from the current weights.

        Args:
            obs: (T, d) observations.
            actions: (T, m) teacher actions (clipped to [-1, 1]).
            epochs: passes over the data; None uses ``config.epochs``.
            on_epoch: called after each epoch with (epoch, mean loss); True stops early.
            refit_normalizer: recompute the input statistics from ``obs`` first.

        Returns:
            Mean loss (squared error per action dimension) of each epoch run.

        Raises:
            ValueError: shapes disagree, T < 1, epochs < 0 or the data holds NaN/inf.
        """
        cfg = self.config
        epochs = cfg.epochs if epochs is None else epochs
        if not is_int(epochs) or epochs < 0:
            raise ValueError(f'epochs must be an integer >= 0, got {epochs!r}')
        x = np.asarray(obs, dtype=np.float64)
        y = np.asarray(actions, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.obs_dim or x.shape[0] < 1 \
                or y.shape != (x.shape[0], self.action_dim):
            raise ValueError(f'need obs (T >= 1, {self.obs_dim}) and actions (T, '
                             f'{self.action_dim}), got {x.shape} and {y.shape}')
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError('obs or actions hold NaN or inf')
        if refit_normalizer:
            self.obs_norm = Normalizer.from_data(x)
        inputs = torch.from_numpy(self.obs_norm.normalize(x)).float()
        targets = torch.from_numpy(np.clip(y, -1.0, 1.0)).float()
        optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        losses: list[float] = []
        size = inputs.shape[0]
        self.train()
        with torch_threads(cfg.threads):
            for epoch in range(epochs):
                order = torch.from_numpy(self._rng.permutation(size))
                total = 0.0
                for start in range(0, size, cfg.batch_size):
                    idx = order[start:start + cfg.batch_size]
                    loss = (torch.tanh(self.net(inputs[idx])) - targets[idx]).square().mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * idx.shape[0]
                losses.append(total / size)
                if on_epoch is not None and on_epoch(epoch, losses[-1]):
                    break
        self.eval()
        return losses

    # -------------------------------------------------------------------- export

    def export(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """
        ``(tensors, meta)`` to rebuild this policy.

        Tensors are float32 copies of the parameters by name (``net.<i>.weight``,
        ``net.<i>.bias``, ``log_std``); meta is JSON-able ``{'state_dim' (= obs_dim),
        'action_dim', 'config', 'normalizers': {'obs'}}``.
        """
        tensors = {name: p.detach().to(torch.float32).contiguous().clone()
                   for name, p in self.named_parameters()}
        meta = {'state_dim': self.obs_dim, 'action_dim': self.action_dim,
                'config': self.config.to_dict(),
                'normalizers': {'obs': self.obs_norm.to_dict()}}
        return tensors, meta

    @classmethod
    def from_export(cls, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
                    ) -> MLPPolicy:
        """
        Rebuild a policy from :meth:`export` output, checking every name and shape.

        Raises:
            ValueError: a missing/unexpected key or tensor, a shape mismatch, or an invalid
                config or normalizer (the message says which).
        """
        missing = sorted({'state_dim', 'action_dim', 'config', 'normalizers'} - set(meta))
        if missing:
            raise ValueError(f'missing key(s) {missing}')
        if not isinstance(meta['config'], dict):
            raise ValueError(f"config must be a dict, got {type(meta['config']).__name__}")
        policy = cls(meta['state_dim'], meta['action_dim'],
                     PolicyConfig.from_dict(meta['config']))
        norms = meta['normalizers']
        if not isinstance(norms, dict) or set(norms) != {'obs'}:
            raise ValueError("normalizers must be a dict with the key 'obs'")
        norm = Normalizer.from_dict(norms['obs'])
        if norm.dim != policy.obs_dim:
            raise ValueError(f"normalizer 'obs' has {norm.dim} dimensions, expected "
                             f'{policy.obs_dim}')
        expected = {name: tuple(p.shape) for name, p in policy.named_parameters()}
        absent = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if absent or unexpected:
            raise ValueError(f'tensor names differ: missing {absent}, unexpected {unexpected}')
        for name, shape in expected.items():
            tensor = tensors[name]
            if tuple(tensor.shape) != shape or not tensor.is_floating_point():
                raise ValueError(f'tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, '
                                 f'expected float {shape} from obs_dim={policy.obs_dim}, '
                                 f'action_dim={policy.action_dim}, config hidden')
        with torch.no_grad():
            for name, param in policy.named_parameters():
                param.copy_(tensors[name])
        policy.obs_norm = norm
        return policy


# ---------------------------------------------------------------------- checkpoints

def save_policy(directory: str | os.PathLike[str], policy: MLPPolicy,
                manifest_extra: Mapping[str, Any]) -> Path:
    """
    Write ``policy`` as a new checkpoint directory, atomically (never overwriting).

    Args:
        directory: the directory to create (its parent is created if needed).
        policy: the policy (weights, log std, input normalizer, config).
        manifest_extra: as for ``save_checkpoint``: ``state_names`` (the policy's d input
            columns, :class:`StateLayout` names), ``action_names`` (m) and ``robot`` are
            required; ``source_bags``, ``metrics`` and ``extra`` (e.g.
            ``{'action_space': 'delta'}``) are optional.

    Returns:
        The absolute checkpoint path.

    Raises:
        CheckpointError: the target exists.
        ValueError: ``manifest_extra`` is invalid or not JSON-able.
    """
    tensors, meta = policy.export()
    return write_checkpoint_dir(
        directory, tensors, build_manifest(meta, manifest_extra, FORMAT, FORMAT_VERSION))


def load_policy(directory: str | os.PathLike[str],
                expect_state_names: Sequence[str] | None = None,
                expect_action_names: Sequence[str] | None = None,
                expect_robot: str | None = None) -> tuple[MLPPolicy, dict[str, Any]]:
    """
    Load and verify a policy checkpoint written by :func:`save_policy`.

    Args:
        directory: the checkpoint directory.
        expect_state_names, expect_action_names, expect_robot: as for ``load_checkpoint``
            (the state names are the policy's input columns).

    Returns:
        ``(policy, manifest)``, the policy in eval mode.

    Raises:
        CheckpointError: any problem; the message names the file and says what is wrong.
    """
    policy, manifest = load_checkpoint_dir(directory, FORMAT, FORMAT_VERSION,
                                           MLPPolicy.from_export, expect_state_names,
                                           expect_action_names, expect_robot)
    policy.eval()
    return policy, manifest
