"""
An ensemble of E independent MLPs evaluated with one batched matmul per layer.

Member e is ``x -> W_L^e relu(... relu(x W_1^e + b_1^e) ...) + b_L^e`` (ReLU hidden
layers, linear output). Weights are stored stacked, ``weight_i`` (E, in_i, out_i) and
``bias_i`` (E, 1, out_i), so a forward pass over all members is one ``torch.baddbmm``
per layer instead of a Python loop over members: this is the planner's hot path
(E = 3 members × N = 700 samples per step, papers.md §7.3). Members share no parameter,
so each one's output and gradient depend on its own parameters only.

Initialization matches ``torch.nn.Linear`` for each member separately (kaiming-uniform
with a = √5, i.e. weights and biases uniform in ±1/√fan_in), drawn from an optional
``torch.Generator`` so that seeding a model touches no global RNG state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class EnsembleMLP(nn.Module):
    """
    E members of ``in_dim -> hidden... -> out_dim`` ReLU MLPs.

    Parameters are named ``weight_0, bias_0, ..., weight_L, bias_L`` with L = len(hidden).

    Attributes:
        ensemble_size: number of members E.
        in_dim: input width.
        out_dim: output width.
        hidden: hidden layer widths.
    """

    def __init__(self, ensemble_size: int, in_dim: int, out_dim: int,
                 hidden: Sequence[int] = (250, 250),
                 generator: torch.Generator | None = None) -> None:
        """
        Build and initialize the members (float32, CPU).

        Args:
            ensemble_size: E >= 1.
            in_dim: input width >= 1.
            out_dim: output width >= 1.
            hidden: widths of the ReLU hidden layers (may be empty: a linear model).
            generator: RNG for the initialization; None uses torch's default generator.

        Raises:
            ValueError: a size is < 1.
        """
        super().__init__()
        sizes = (in_dim, *hidden, out_dim)
        if ensemble_size < 1 or any(int(n) < 1 for n in sizes):
            raise ValueError(f'ensemble_size and all layer sizes must be >= 1, got '
                             f'ensemble_size={ensemble_size}, layers={sizes}')
        self.ensemble_size = int(ensemble_size)
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)
        self.hidden = tuple(int(n) for n in hidden)
        self.num_layers = len(sizes) - 1
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.register_parameter(
                f'weight_{i}', nn.Parameter(torch.empty(ensemble_size, fan_in, fan_out)))
            self.register_parameter(
                f'bias_{i}', nn.Parameter(torch.empty(ensemble_size, 1, fan_out)))
        self.reset_parameters(generator)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(weight_i (E, in_i, out_i), bias_i (E, 1, out_i)), ...]`` from input to output."""
        return [(getattr(self, f'weight_{i}'), getattr(self, f'bias_{i}'))
                for i in range(self.num_layers)]

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every member's parameters like ``nn.Linear`` (uniform ±1/√fan_in)."""
        for weight, bias in self.layers():
            bound = 1.0 / math.sqrt(weight.shape[1])
            weight.uniform_(-bound, bound, generator=generator)
            bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Evaluate every member on its own batch.

        Args:
            x: (E, B, in_dim) inputs, member e reads x[e]; or (B, in_dim), read by every
                member (expanded without a copy).

        Returns:
            (E, B, out_dim) outputs.
        """
        if x.ndim == 2:
            x = x.expand(self.ensemble_size, *x.shape)
        if x.ndim != 3 or x.shape[0] != self.ensemble_size or x.shape[2] != self.in_dim:
            raise ValueError(f'input must be (E={self.ensemble_size}, B, {self.in_dim}) or '
                             f'(B, {self.in_dim}), got {tuple(x.shape)}')
        last = self.num_layers - 1
        for i, (weight, bias) in enumerate(self.layers()):
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                # In place: the fresh baddbmm output is ours, and autograd can still
                # differentiate relu_ (its backward needs only its own output).
                x = x.relu_()
        return x

    def extra_repr(self) -> str:
        return (f'ensemble_size={self.ensemble_size}, in_dim={self.in_dim}, '
                f'out_dim={self.out_dim}, hidden={self.hidden}')
