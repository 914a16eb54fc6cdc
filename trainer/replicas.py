"""Data-parallel replicas of one run under torchrun (docs/design.md, "Data-parallel training").

torchrun starts one process per device and tells each its RANK, WORLD_SIZE and LOCAL_RANK.
Every process holds the whole model, trains on its rows of each global batch and averages the
gradients before the optimiser step, as DistributedDataParallel does. DDP itself is not used:
a splat edit replaces the store's Parameters with ones of another shape, which DDP's gradient
buckets (fixed when it wraps the model) do not allow. Splat edits are decided on rank 0 and
broadcast with their Adam rows; then every rank checks that its model matches rank 0's.

A single process is `Replicas()`: every method is the identity and torch.distributed is unused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ebm.model import EBMModel
from ebm.shard import Shard
from ebm.splats import adopt_store_state, store_state

Tensor = torch.Tensor


class ReplicaError(RuntimeError):
    pass


@dataclass(frozen=True)
class Replicas:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 decides splat edits and alone writes logs, status, samples and checkpoints."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.size)

    def rows(self, batch: np.ndarray) -> np.ndarray:
        """This rank's rows of a global batch of window ids, in the global order."""
        n = len(batch) // self.size
        return batch[self.rank * n : (self.rank + 1) * n]

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Mean of every parameter's gradient over the ranks, in one all-reduce; a parameter that
        got no gradient here (an expert no row of this rank chose) counts as zero."""
        if self.size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]) / self.size
        torch.distributed.all_reduce(flat)
        for p, g in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = g.view_as(p)

    def agree_max(self, values: Tensor) -> Tensor:
        """(n,) -> the elementwise maximum over ranks: the slowest rank's step time, any stop."""
        if self.size > 1:
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
        return values

    def average(self, values: Tensor) -> Tensor:
        """(n,) -> the mean over ranks: the global batch's metrics."""
        if self.size > 1:
            torch.distributed.all_reduce(values)
            values = values / self.size
        return values

    def gather(self, x: Tensor) -> Tensor:
        """(N, ...) rows of this rank -> (size N, ...) rows of the global batch, in rank order."""
        if self.size == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.size)]
        torch.distributed.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def broadcast(self, obj):
        """Rank 0's object (tensors inside moved to the CPU) on every rank."""
        if self.size == 1:
            return obj
        box = [obj if self.main else None]
        torch.distributed.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()

    def copy_model(self, model: EBMModel) -> None:
        """Rank 0's parameters and buffers on every rank (same shapes), e.g. at the start."""
        if self.size > 1:
            for tensor in model.state_dict().values():
                if torch.is_tensor(tensor):
                    torch.distributed.broadcast(tensor, src=0)

    def sync_store(self, model: EBMModel, optimizer: torch.optim.Optimizer) -> None:
        """After a step where rank 0 may have edited the splat store: its store, with the Adam
        moments of its rows, on every rank; then the check that all ranks hold the same model."""
        if self.size == 1:
            return
        state = self.broadcast(store_state(model.splats, optimizer) if self.main else None)
        if not self.main:
            adopt_store_state(model.splats, state, optimizer)
        self.check_same(model, optimizer)

    def check_same(self, model: EBMModel, optimizer: torch.optim.Optimizer) -> None:
        """Raise on every rank when any rank's parameters or optimiser moments differ from rank 0's."""
        if self.size == 1:
            return
        mine = fingerprint(model, optimizer)
        theirs = mine.clone()
        torch.distributed.broadcast(theirs, src=0)
        differs = torch.tensor([float(not torch.equal(mine, theirs))], device=mine.device)
        if self.agree_max(differs).item():
            raise ReplicaError(
                "data-parallel ranks hold different models after a splat edit; "
                "rerun with one process to rule out the launcher, and report it"
            )

    def _comm_device(self) -> torch.device | None:
        backend = torch.distributed.get_backend()
        return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else None

    def close(self) -> None:
        if self.size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


ALONE = Replicas()  # one process


def fingerprint(model: EBMModel, optimizer: torch.optim.Optimizer) -> Tensor:
    """(n,) float64 sums and shapes of every parameter, buffer and Adam moment: equal on two
    ranks exactly when (up to a sum collision) their models are."""
    tensors = [t for t in model.state_dict().values() if torch.is_tensor(t) and t.numel()]
    for group in optimizer.param_groups:  # the groups' order: the state dict's order depends on edit history
        for param in group["params"]:
            tensors += [v for v in optimizer.state.get(param, {}).values() if torch.is_tensor(v) and v.dim() > 0]
    sums = [t.detach().double().sum() for t in tensors]
    return torch.stack([torch.tensor(float(model.splats.n), dtype=torch.float64, device=sums[0].device), *sums])


def from_environment(device: str) -> Replicas:
    """The replica this process is, from torchrun's variables; one process without them. Joins
    the process group (NCCL on CUDA, gloo otherwise)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return ALONE
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Replicas(rank, size, local_rank)
