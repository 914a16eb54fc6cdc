"""The three-phase curriculum (docs/design.md, "Splat upkeep"): each phase has a splat capacity and a
splat temperature; phases change at epoch (or step) boundaries. A phase starts with a share
(curriculum_growth_fill) of its new room filled at the embeddings of the most frequent tokens not
yet covered; the rest is left to SOC avalanches, which spawn where the data is poorly explained."""

from __future__ import annotations

from dataclasses import dataclass

from .config import EBMConfig

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
        """The phase that a run at this epoch and step is in."""
        cfg = self.cfg
        clock = epoch if cfg.curriculum_unit == "epoch" else step
        return self.by_index(sum(clock >= b for b in cfg.curriculum_boundaries) if cfg.curriculum else 0)

    def by_index(self, index: int) -> Phase:
        cfg = self.cfg
        if not cfg.curriculum:
            return Phase(0, "flat", max(cfg.n_splats_init, 1), cfg.splat_temperature)
        name = PHASE_NAMES[index] if index < len(PHASE_NAMES) else f"phase{index}"
        return Phase(index, name, cfg.curriculum_capacities[index], cfg.curriculum_temperatures[index])

    def initial_splats(self) -> int:
        if not self.cfg.curriculum:
            return self.cfg.n_splats_init
        return max(1, int(self.phase(0, 0).capacity * self.cfg.curriculum_growth_fill))

    def growth(self, n_splats: int, phase: Phase) -> int:
        """Splats to spawn from frequent tokens on entering `phase`; SOC fills the rest of the room."""
        return max(0, int((phase.capacity - n_splats) * self.cfg.curriculum_growth_fill))
