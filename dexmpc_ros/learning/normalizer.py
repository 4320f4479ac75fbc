"""
Per-dimension standardization ``z = (x - mean) / std`` for numpy arrays and torch tensors.

Statistics are float64 numpy arrays of shape (d,), fitted on a whole dataset (T, d)
with the population std (ddof 0). A dimension whose std is below :data:`MIN_STD`
(constant in the data, e.g. a locked joint or a Δ that is always 0) gets std 1.0, not a
floor of ``MIN_STD``: a floor would turn any unseen deviation of that dimension at
prediction time into a value of order 1e6 at the network input, while std 1.0 leaves it
at its raw scale and normalizes the training data of that dimension to exactly 0.
Such dimensions are remembered (:attr:`Normalizer.constant`): a model that *predicts* a
normalized quantity uses :meth:`Normalizer.output_stats_like`, whose scale is 0 there, so a
dimension that never changed in the data is predicted exactly at its mean instead of
drifting by whatever the network outputs for it (e.g. the WidowX target columns).

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

    def __init__(self, mean: Any, std: Any, constant: Any = None) -> None:
        """
        Wrap given statistics (validated: same shape (d,), finite, std > 0).

        ``constant`` (d,) bool marks dimensions that were constant in the fitted data
        (default: none).

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
        const_arr = (np.zeros(mean_arr.shape, dtype=bool) if constant is None
                     else np.array(constant, dtype=bool))
        if const_arr.shape != mean_arr.shape:
            raise ValueError(f'constant must have shape {mean_arr.shape}, got {const_arr.shape}')
        self._set(mean_arr, std_arr, const_arr)

    def _set(self, mean: np.ndarray, std: np.ndarray, constant: np.ndarray) -> None:
        for arr in (mean, std, constant):
            arr.setflags(write=False)
        self._mean = mean
        self._std = std
        self._constant = constant
        self._output_std = np.where(constant, 0.0, std)
        self._output_std.setflags(write=False)
        self._torch_cache: dict[tuple[torch.dtype, torch.device, bool],
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
    def constant(self) -> np.ndarray:
        """(d,) bool, dimensions that were constant in the fitted data (read-only array)."""
        return self._constant

    @property
    def output_std(self) -> np.ndarray:
        """(d,) float64 std with 0 for constant dimensions (for predicted outputs)."""
        return self._output_std

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
        constant = std < MIN_STD
        std[constant] = 1.0
        self._set(mean, std, constant)
        return self

    def stats_like(self, x: ArrayT) -> tuple[Any, Any]:
        """
        ``(mean, std)`` in the kind, dtype and device of ``x`` (whose last axis must be d).

        Raises:
            ValueError: the last axis of ``x`` is not of size d.
        """
        return self._stats(x, self._std, False)

    def output_stats_like(self, x: ArrayT) -> tuple[Any, Any]:
        """Like :meth:`stats_like` with :attr:`output_std`: ``z * std + mean`` is exactly
        the mean in constant dimensions, whatever z is there."""
        return self._stats(x, self._output_std, True)

    def _stats(self, x: ArrayT, std: np.ndarray, output: bool) -> tuple[Any, Any]:
        d = self.dim
        if x.shape[-1:] != (d,):
            raise ValueError(f'last axis must have size {d}, got shape {tuple(x.shape)}')
        if isinstance(x, torch.Tensor):
            key = (x.dtype, x.device, output)
            stats = self._torch_cache.get(key)
            if stats is None:
                stats = (torch.tensor(self._mean, dtype=x.dtype, device=x.device),
                         torch.tensor(std, dtype=x.dtype, device=x.device))
                self._torch_cache[key] = stats
            return stats
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        return self._mean.astype(dtype, copy=False), std.astype(dtype, copy=False)

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

    def to_dict(self) -> dict[str, list]:
        """JSON-able ``{'mean': [...], 'std': [...], 'constant': [...]}`` (exact round trip)."""
        return {'mean': self._mean.tolist(), 'std': self._std.tolist(),
                'constant': self._constant.tolist()}

    @classmethod
    def from_dict(cls, data: Any) -> Normalizer:
        """
        Inverse of :meth:`to_dict`.

        ``constant`` may be absent (normalizers saved before it existed: none constant).

        Raises:
            ValueError: not a dict with 'mean', 'std' and optionally 'constant', or invalid
                statistics.
        """
        keys_ok = isinstance(data, dict) and {'mean', 'std'} <= set(data) <= {
            'mean', 'std', 'constant'}
        if not keys_ok:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"normalizer must be a dict with keys 'mean', 'std' (and "
                             f"optionally 'constant'), got {keys}")
        return cls(data['mean'], data['std'], data.get('constant'))

    def __repr__(self) -> str:
        return f'Normalizer(dim={self.dim})'
