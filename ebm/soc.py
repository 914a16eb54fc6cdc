"""Self-organised criticality: when the splat landscape explains the data poorly, an
avalanche merges, prunes and spawns splats (docs/design.md, "Splat upkeep").

Activity = share of recently seen training targets that no splat covers, where z is covered
when some neighbour splat's kernel k_i(z) >= coverage_kernel. It lies in [0, 1], it falls as
the landscape learns the data, and above soc_threshold an avalanche runs:
  merge  pairs of splats whose means have cosine >= soc_merge_cos (alpha-weighted),
  prune  splats whose alpha and usage are negligible and whose age >= soc_prune_min_age,
  spawn  new splats at the worst-covered distinct buffered targets, within capacity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import EBMConfig
from .knn import SplatIndex
from .splats import EditCounts, SplatStore

Tensor = torch.Tensor


class HistoryBuffer:
    """Ring buffer of recent target points (N, D) and their energies (N,), kept on the device of
    the points it is fed."""

    def __init__(self, capacity: int, dim: int):
        self.capacity = capacity
        self.points = torch.zeros(capacity, dim)
        self.energies = torch.zeros(capacity)
        self.count = 0  # total ever added
        self.cursor = 0

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    @torch.no_grad()
    def add(self, points: Tensor, energies: Tensor) -> None:
        points, energies = points.detach()[-self.capacity :], energies.detach()[-self.capacity :]
        if self.points.device != points.device:  # follow the model once: no host copy per step on a GPU
            self.points, self.energies = self.points.to(points.device), self.energies.to(points.device)
        n = points.shape[0]
        slots = (self.cursor + torch.arange(n, device=self.points.device)) % self.capacity
        self.points[slots] = points.to(self.points)
        self.energies[slots] = energies.to(self.energies)
        self.cursor = (self.cursor + n) % self.capacity
        self.count += n

    def contents(self) -> tuple[Tensor, Tensor]:
        n = len(self)
        return self.points[:n], self.energies[:n]

    def state_dict(self) -> dict:
        return {"points": self.points, "energies": self.energies, "count": self.count, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.points, self.energies = state["points"].clone(), state["energies"].clone()
        self.capacity = self.points.shape[0]
        self.count, self.cursor = int(state["count"]), int(state["cursor"])


@dataclass
class SOCEvent:
    """One SOC check: `triggered` when activity passed the threshold, `avalanche` only when the
    check then edited the store (a triggered check that merged, pruned and spawned nothing is
    a check, not an avalanche of size 0)."""

    step: int
    activity: float
    triggered: bool
    avalanche: bool = False
    counts: EditCounts = field(default_factory=EditCounts)
    n_splats: int = 0

    def as_dict(self) -> dict:
        return {
            "activity": self.activity,
            "triggered": self.triggered,
            "avalanche": self.avalanche,
            "n_splats": self.n_splats,
            "size": self.counts.merged + self.counts.pruned + self.counts.spawned,
            **self.counts.as_dict(),
        }


def coverage(store: SplatStore, index: SplatIndex, points: Tensor, k: int, kernel_level: float) -> Tensor:
    """Boolean (N,): is each point covered by some splat's kernel at >= kernel_level?"""
    if points.shape[0] == 0 or store.n == 0:
        return torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    index.ensure(store.position)
    return store.max_kernel(points, index.search(points, k)) >= kernel_level


class SOCController:
    def __init__(self, cfg: EBMConfig):
        self.cfg = cfg
        self.buffer = HistoryBuffer(cfg.soc_buffer_size, cfg.splat_dim)
        self.recent: list[bool] = []  # avalanche flag of the last checks, for the SOC rate

    def observe(self, points: Tensor, energies: Tensor) -> None:
        self.buffer.add(points, energies)

    def due(self, step: int) -> bool:
        return step > 0 and step % self.cfg.soc_check_interval == 0

    def rate(self, window: int = 20) -> float:
        """Avalanches per check over the last `window` checks."""
        tail = self.recent[-window:]
        return sum(tail) / len(tail) if tail else 0.0

    @torch.no_grad()
    def check(
        self,
        store: SplatStore,
        index: SplatIndex,
        step: int,
        capacity: int,
        phase: int = 0,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> SOCEvent:
        points, _ = self.buffer.contents()
        covered = coverage(store, index, points, self.cfg.knn_k, self.cfg.coverage_kernel)
        activity = 1.0 - covered.float().mean().item() if len(points) else 0.0
        event = SOCEvent(step=step, activity=activity, triggered=activity > self.cfg.soc_threshold)
        if event.triggered:
            event.counts = self.avalanche(store, index, step, capacity, phase, optimizer, points, covered)
            event.avalanche = event.counts.merged + event.counts.pruned + event.counts.spawned > 0
        self.recent.append(event.avalanche)
        event.n_splats = store.n
        return event

    def avalanche(
        self,
        store: SplatStore,
        index: SplatIndex,
        step: int,
        capacity: int,
        phase: int,
        optimizer,
        points: Tensor,
        covered: Tensor,
    ) -> EditCounts:
        counts = EditCounts()
        index.build(store.position)
        counts.merged = store.merge_close(index.search, step, optimizer)
        counts.pruned = store.prune_dead(step, optimizer)
        room = min(self.cfg.soc_spawn_max, capacity - store.n)
        if room > 0:
            worst = _worst_distinct(store, index, points[~covered], room)
            counts.spawned = store.spawn(worst, step, phase, optimizer)
        index.build(store.position)
        return counts

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.recent = list(state["recent"])


def _worst_distinct(store: SplatStore, index: SplatIndex, points: Tensor, n: int) -> Tensor:
    """Up to n distinct uncovered points, least covered first."""
    if points.shape[0] == 0:
        return points
    points = torch.unique(points, dim=0)
    index.ensure(store.position)
    kernel = store.max_kernel(points, index.search(points, 1))
    order = torch.argsort(kernel)
    return points[order[:n]]
