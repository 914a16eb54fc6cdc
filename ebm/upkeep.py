"""The splat store's upkeep between optimiser steps: curriculum phases and growth, alpha decay,
usage statistics and self-organised criticality (docs/design.md, "Splat upkeep").

The trainer calls `before_step` and `after_step` once per step and logs the events they
return; nothing else edits the store while training.
"""

from __future__ import annotations

import torch

from .attractors import pair_points
from .config import EBMConfig
from .curriculum import Curriculum, Phase
from .model import EBMModel
from .objective import StepResult
from .soc import SOCController, coverage

Tensor = torch.Tensor
Event = tuple[str, dict]  # (record kind, fields)


class SplatUpkeep:
    """`decides=False` is a data-parallel replica other than rank 0: it keeps the statistics and
    phases in step but makes no edit; the trainer copies rank 0's store after `edits_due` steps."""

    def __init__(self, cfg: EBMConfig, token_freq: Tensor, decides: bool = True):
        self.cfg, self.decides = cfg, decides
        self.curriculum = Curriculum(cfg)
        self.soc = SOCController(cfg)
        self.token_freq = token_freq  # (V,) training-split counts: growth fills the most frequent tokens first
        self.phase = self.curriculum.phase(0, 0)

    def initial_splats(self) -> int:
        return self.curriculum.initial_splats()

    def start(self, model: EBMModel) -> None:
        """A fresh model enters the first phase."""
        model.splats.tau.fill_(self.phase.temperature)

    def before_step(self, model: EBMModel, epoch: int, step: int, optimizer: torch.optim.Optimizer) -> list[Event]:
        """Enter a new curriculum phase when the run reaches it: grow, then set its temperature."""
        new = self.curriculum.phase(epoch, step)
        if new == self.phase:
            return []
        spawned = self._grow(model, new, step, optimizer) if self.decides else 0
        self.phase = new
        model.splats.tau.fill_(new.temperature)
        return [self.phase_event(model, spawned)]

    def after_step(
        self, model: EBMModel, out: StepResult, step: int, epoch_progress: float, lr: float, optimizer: torch.optim.Optimizer
    ) -> list[Event]:
        """Age and count the splats after update `step`; run an SOC check when one is due."""
        splats = model.splats
        splats.apply_alpha_decay(splats.decay_strength(epoch_progress), lr, step)
        splats.record_usage(out.target_nbr, step)
        self.soc.observe(out.target_points, out.target_energy)
        if not self.soc.due(step) or not self.decides:
            return []
        event = self.soc.check(splats, model.neighbours.index, step, self.phase.capacity, self.phase.index, optimizer)
        return [("soc", {**event.as_dict(), "soc_rate": self.soc.rate()})]

    def edits_due(self, epoch: int, step: int, after_step: bool) -> bool:
        """Whether `before_step` (a new phase) or `after_step` (an SOC check) may edit the store
        at this step; the same answer on every replica."""
        if after_step:
            return self.soc.due(step)
        return self.curriculum.phase(epoch, step) != self.phase

    @torch.no_grad()
    def _grow(self, model: EBMModel, phase: Phase, step: int, optimizer: torch.optim.Optimizer) -> int:
        """Spawn splats at the most frequent tokens that no splat covers (curriculum_growth_fill of the room)."""
        room = self.curriculum.growth(model.splats.n, phase)
        if room <= 0:
            return 0
        order = torch.argsort(self.token_freq, descending=True, stable=True)
        emb = model.embeddings.detach()[order]
        points = pair_points(emb, emb) if model.splats.paired else emb  # a key starts at its mean
        model.neighbours.index.build(model.splats.position)
        uncovered = ~coverage(model.splats, model.neighbours.index, points, 1, self.cfg.coverage_kernel)
        return model.splats.spawn(points[uncovered][:room], step, phase.index, optimizer)

    def phase_event(self, model: EBMModel, spawned: int) -> Event:
        """The `phase` record of the current phase."""
        p = self.phase
        fields = {"phase": p.index, "name": p.name, "capacity": p.capacity, "tau": p.temperature}
        return "phase", {**fields, "spawned": spawned, "n_splats": model.splats.n}

    def state_dict(self) -> dict:
        return {"soc": self.soc.state_dict(), "phase": self.phase.index}

    def load_state_dict(self, state: dict) -> None:
        """The phase is restored as saved, not recomputed from the clock: a checkpoint taken on a
        phase boundary then still enters the new phase (with its growth) on the next step."""
        self.soc.load_state_dict(state["soc"])
        self.phase = self.curriculum.by_index(int(state["phase"]))
