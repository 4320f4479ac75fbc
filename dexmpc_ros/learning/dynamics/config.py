"""
Settings of the Δ-state ensemble dynamics model (:class:`DeltaDynamics` in ``model.py``).

:class:`DynamicsConfig` is frozen and validated at construction; it round-trips through
JSON (:meth:`DynamicsConfig.to_dict` / :meth:`DynamicsConfig.from_dict`) as the ``config``
of a dynamics checkpoint's manifest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """True for a Python or numpy integer, False for a bool (which ``int`` would accept)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class DynamicsConfig:
    """
    Model and training settings (PDDM defaults, papers.md §7.3).

    Attributes:
        ensemble_size: members E.
        hidden: hidden layer widths of each member (ReLU).
        lr: Adam learning rate.
        batch_size: minibatch size (the last minibatch of an epoch may be smaller).
        epochs: default epochs per :meth:`DeltaDynamics.fit`.
        noise_to_signal: training noise std per dimension, as a fraction of |mean|.
        bootstrap: each member trains on its own resample with replacement.
        new_data_fraction: MBMF's ``fraction_use_new``: when :meth:`DeltaDynamics.fit` is
            told which transitions are on-policy (``is_new``), each minibatch takes this
            share of them and sweeps the rest from the other data; 0 samples uniformly
            (PDDM). MBMF uses 0.9, so the model is most accurate where the controller goes.
        clip_actions: clip actions to [-1, 1] at the model input.
        seed: seed of the model's private RNGs (initialization, shuffling, noise).
        threads: torch intra-op threads during model calls; 0 leaves torch's setting.
            On a machine whose cores are shared with other busy processes (MuJoCo, other
            nodes) use 1: spinning OpenMP threads that get descheduled slow a multi-thread
            rollout down many times (runtime/ros_env.py; ``OMP_WAIT_POLICY=PASSIVE`` in
            the environment also avoids it).
    """

    ensemble_size: int = 3
    hidden: tuple[int, ...] = (250, 250)
    lr: float = 1e-3
    batch_size: int = 512
    epochs: int = 40
    noise_to_signal: float = 0.01
    bootstrap: bool = False
    new_data_fraction: float = 0.0
    clip_actions: bool = True
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        # JSON gives lists: normalize to a tuple so configs compare and hash equal.
        if isinstance(self.hidden, (list, tuple)):
            object.__setattr__(self, 'hidden', tuple(self.hidden))
        else:
            raise ValueError(f'hidden must be a sequence of widths, got {self.hidden!r}')
        if not all(is_int(n) and n >= 1 for n in self.hidden):
            raise ValueError(f'hidden widths must be integers >= 1, got {self.hidden!r}')
        for name, low in (('ensemble_size', 1), ('batch_size', 1), ('epochs', 0), ('seed', 0),
                          ('threads', 0)):
            value = getattr(self, name)
            if not is_int(value) or value < low:
                raise ValueError(f'{name} must be an integer >= {low}, got {value!r}')
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f'lr must be a finite number > 0, got {self.lr!r}')
        if not (isinstance(self.noise_to_signal, (int, float))
                and math.isfinite(self.noise_to_signal) and self.noise_to_signal >= 0):
            raise ValueError(f'noise_to_signal must be a finite number >= 0, '
                             f'got {self.noise_to_signal!r}')
        for name in ('bootstrap', 'clip_actions'):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f'{name} must be a bool, got {getattr(self, name)!r}')
        fraction = self.new_data_fraction
        if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
            raise ValueError(f'new_data_fraction must be in [0, 1), got {fraction!r}')
        if fraction > 0 and self.bootstrap:
            raise ValueError('new_data_fraction and bootstrap cannot be combined')

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (``hidden`` as a list)."""
        data = asdict(self)
        data['hidden'] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DynamicsConfig:
        """
        Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises:
            ValueError: an unknown key or an invalid value (named in the message).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown DynamicsConfig key(s) {unknown}; known: {sorted(known)}')
        return cls(**data)
