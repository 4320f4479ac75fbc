"""
Per-dimension standardization ``z = (x - mean) / std`` for numpy arrays and torch tensors.

Statistics are float64 numpy arrays of shape (d,), fitted on a whole dataset (T, d)
with the population std (ddof 0). A dimension whose std is below :data:`MIN_STD`
(constant in the data, e.g. a locked joint or a Δ that is always 0) gets std 1.0, not a
floor of ``MIN_STD``: a floor would turn any unseen deviation of that dimension at
prediction time into a value of order 1e6 at the network input, while std 1.0 leaves it
at its raw scale and normalizes the training data of that dimension to exactly 0.

``normalize``/``denormalize`` accept any array whose last axis is d. A numpy input gives
a numpy result in the input's float dtype (float64 for integer input); a torch input
gives a tensor of its own dtype and device, computed with the statistics cast to that
dtype (cached per dtype/device, so the hot path does not allocate them every call).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

#: Std below this (in data units) marks a dimension as constant; its std becomes 1.0.
MIN_STD = 1e-6

ArrayT = TypeVar('ArrayT', np.ndarray, torch.Tensor)


class Normalizer:
    """
    Mean/std of d dimensions; immutable except through :meth:`fit`.

    Attributes:
        mean: (d,) float64 per-dimension mean.
        std: (d,) float64 per-dimension std, > 0 (constant dimensions have 1.0).
    """

    def __init__(self, mean: Any, std: Any) -> None:
        """
        Wrap given statistics (validated: same shape (d,), finite, std > 0).

        Raises:
            ValueError: shapes differ or are not 1-D, a value is not finite, a std <= 0.
        """
        mean_arr = np.array(mean, dtype=np.float64)
        std_arr = np.array(std, dtype=np.float64)
        if mean_arr.ndim != 1 or std_arr.shape != mean_arr.shape:
            raise ValueError(f'mean and std must both have shape (d,), got {mean_arr.shape} '
                             f'and {std_arr.shape}')
        if not (np.all(np.isfinite(mean_arr)) and np.all(np.isfinite(std_arr))):
            raise ValueError('mean and std must be finite')
        if np.any(std_arr <= 0.0):
            raise ValueError(f'std must be > 0, got {std_arr.min()}')
        self._set(mean_arr, std_arr)

    def _set(self, mean: np.ndarray, std: np.ndarray) -> None:
        mean.setflags(write=False)
        std.setflags(write=False)
        self._mean = mean
        self._std = std
        self._torch_cache: dict[tuple[torch.dtype, torch.device],
                                tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def identity(cls, dim: int) -> Normalizer:
        """Mean 0 and std 1 in ``dim`` dimensions (a no-op normalizer)."""
        return cls(np.zeros(dim), np.ones(dim))

    @classmethod
    def from_data(cls, data: Any) -> Normalizer:
        """Normalizer fitted on ``data`` (T, d); see :meth:`fit`."""
        data = np.asarray(data, dtype=np.float64)
        norm = cls.identity(data.shape[-1] if data.ndim == 2 else 1)
        return norm.fit(data)

    @property
    def mean(self) -> np.ndarray:
        """(d,) float64 mean (read-only array)."""
        return self._mean

    @property
    def std(self) -> np.ndarray:
        """(d,) float64 std, constant dimensions 1.0 (read-only array)."""
        return self._std

    @property
    def dim(self) -> int:
        """Number of dimensions d."""
        return int(self._mean.shape[0])

    def fit(self, data: Any) -> Normalizer:
        """
        Recompute mean and std from ``data`` (T, d), T >= 1; returns self.

        Raises:
            ValueError: data is not 2-D with at least one row, or holds NaN/inf.
        """
        arr = np.asarray(data, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] < 1:
            raise ValueError(f'data must have shape (T >= 1, d), got {arr.shape}')
        if not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=0))
            raise ValueError(f'data holds NaN or inf in dimension(s) {bad.tolist()}')
        mean = arr.mean(axis=0)
        std = arr.std(axis=0)
        std[std < MIN_STD] = 1.0
        self._set(mean, std)
        return self

    def stats_like(self, x: ArrayT) -> tuple[Any, Any]:
        """
        ``(mean, std)`` in the kind, dtype and device of ``x`` (whose last axis must be d).

        Raises:
            ValueError: the last axis of ``x`` is not of size d.
        """
        d = self.dim
        if x.shape[-1:] != (d,):
            raise ValueError(f'last axis must have size {d}, got shape {tuple(x.shape)}')
        if isinstance(x, torch.Tensor):
            key = (x.dtype, x.device)
            stats = self._torch_cache.get(key)
            if stats is None:
                stats = (torch.tensor(self._mean, dtype=x.dtype, device=x.device),
                         torch.tensor(self._std, dtype=x.dtype, device=x.device))
                self._torch_cache[key] = stats
            return stats
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return self._mean.astype(dtype, copy=False), self._std.astype(dtype, copy=False)

    def normalize(self, x: ArrayT) -> ArrayT:
        """``(x - mean) / std`` over the last axis (size d); numpy or torch in, same kind out."""
        if not isinstance(x, torch.Tensor):
            x = np.asarray(x)
        mean, std = self.stats_like(x)
        return (x - mean) / std

    def denormalize(self, z: ArrayT) -> ArrayT:
        """``z * std + mean`` over the last axis (size d), the inverse of :meth:`normalize`."""
        if not isinstance(z, torch.Tensor):
            z = np.asarray(z)
        mean, std = self.stats_like(z)
        return z * std + mean

    def to_dict(self) -> dict[str, list[float]]:
        """Plain JSON-able form ``{'mean': [...], 'std': [...]}`` (exact float64 round trip)."""
        return {'mean': self._mean.tolist(), 'std': self._std.tolist()}

    @classmethod
    def from_dict(cls, data: Any) -> Normalizer:
        """
        Inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a dict with exactly 'mean' and 'std', or invalid statistics.
        """
        if not isinstance(data, dict) or set(data) != {'mean', 'std'}:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"normalizer must be a dict with keys 'mean' and 'std', got {keys}")
        return cls(data['mean'], data['std'])

    def __repr__(self) -> str:
        return f'Normalizer(dim={self.dim})'
