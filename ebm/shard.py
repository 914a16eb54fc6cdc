"""This process's part of a global batch, when a batch is split row-wise over data-parallel
processes (docs/design.md, "Data-parallel training").

Process r of W holds rows [r N, (r + 1) N) of a global batch of W N rows. The objective uses
a Shard in the two places where a batch does not split into independent rows:
  - random draws: each process draws the global batch's noise and keeps its rows, so the
    generator stream, and the run, do not depend on W;
  - batch statistics (the score-matching normaliser, the router's load): summed over processes
    with a differentiable all-reduce before they are used.
With W = 1 (the default, SOLO) every method is the identity and torch.distributed is not touched.

Gradient accumulation splits a process's rows further into `parts` micro-batches, run one after
another. Each draws the global batch's noise again from the same generator state and keeps
its slice, so the noise is the one-batch noise; the batch statistics become the micro-batch's
(summed over processes), which no sequential split can avoid.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

Tensor = torch.Tensor


class Shard(NamedTuple):
    rank: int = 0
    world: int = 1
    part: int = 0  # this micro-batch of the process's rows
    parts: int = 1  # micro-batches per process and step (gradient accumulation)

    @property
    def slices(self) -> int:
        """How many equal slices the global batch is cut into."""
        return self.world * self.parts

    def micro(self, part: int, parts: int) -> Shard:
        return self._replace(part=part, parts=parts)

    def take(self, full: Tensor) -> Tensor:
        """This slice's rows of a tensor drawn for the global batch: (S N, ...) -> (N, ...)."""
        if self.slices == 1:
            return full
        n, i = full.shape[0] // self.slices, self.rank * self.parts + self.part
        return full[i * n : (i + 1) * n]

    def total(self, x: Tensor) -> Tensor:
        """x summed over the processes, differentiably: every process gets the sum, and the
        gradient reaching each process's x is the sum of all processes' upstream gradients."""
        return x if self.world == 1 else _Total.apply(x)


class _Total(torch.autograd.Function):
    """Sum over processes; its gradient is again the sum over processes (each process's loss
    uses the total, so every upstream gradient reaches every process's share)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


SOLO = Shard()
