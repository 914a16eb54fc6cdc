"""The three-phase curriculum (DESIGN.md section 11): each phase has a splat capacity and a
splat temperature; phases change at epoch (or step) boundaries. Growth at a phase change spawns
splats at the embeddings of the most frequent tokens not yet covered."""

from __future__ import annotations

from dataclasses import dataclass

from ebm.config import EBMConfig

PHASE_NAMES = ("init", "mid", "max")


@dataclass(frozen=True)
class Phase:
    index: int
    name: str
    capacity: int
    temperature: float


class Curriculum:
    def __init__(self, cfg: EBMConfig):
        self.cfg = cfg

    def phase(self, epoch: int, step: int) -> Phase:
        cfg = self.cfg
        if not cfg.curriculum:
            return Phase(0, "flat", max(cfg.n_splats_init, 1), cfg.splat_temperature)
        clock = epoch if cfg.curriculum_unit == "epoch" else step
        index = sum(clock >= b for b in cfg.curriculum_boundaries)
        name = PHASE_NAMES[index] if index < len(PHASE_NAMES) else f"phase{index}"
        return Phase(index, name, cfg.curriculum_capacities[index], cfg.curriculum_temperatures[index])

    def initial_splats(self) -> int:
        return self.phase(0, 0).capacity if self.cfg.curriculum else self.cfg.n_splats_init
