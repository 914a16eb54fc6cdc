"""The nearest splats of every vocabulary token, cached between store edits.

The splat term of p_E needs E_splat(e_w) for all V tokens, which needs each token's knn_k
nearest splats. Searching V x K every step would dominate the step, so the table is rebuilt
every knn_refresh_interval steps, or at once when the store was edited (its `version`
changed). Kernel values always come from the current parameters: a stale table changes which
splats are summed, never their values (docs/design.md, "Neighbours").
"""

from __future__ import annotations

import torch
from torch import nn

from .config import EBMConfig
from .knn import SplatIndex
from .splats import SplatStore

Tensor = torch.Tensor


class NeighbourTable(nn.Module):
    """The FAISS index over the splat means and the vocabulary's (V, k) neighbour ids.

    Both are part of the training state (exact resume), saved as this module's extra state.
    """

    def __init__(self, cfg: EBMConfig):
        super().__init__()
        self.cfg = cfg
        self.index = SplatIndex(cfg.knn_index)
        self.register_buffer("vocab_nbr", torch.zeros(cfg.vocab_size, 1, dtype=torch.long), persistent=False)
        self.built_version = -1  # store version the table was built for
        self.built_step = -(10**9)

    @torch.no_grad()
    def refresh(self, store: SplatStore, embeddings: Tensor, step: int | None = None, force: bool = False) -> bool:
        """Rebuild the index and the table when due; True if rebuilt."""
        due = step is None or step - self.built_step >= self.cfg.knn_refresh_interval
        if not (force or due or self.built_version != store.version):
            return False
        self.index.build(store.mu)
        self.vocab_nbr = self.index.search(embeddings, self.cfg.knn_k)
        self.built_version = store.version
        self.built_step = self.built_step if step is None else step
        return True

    def current(self, store: SplatStore, embeddings: Tensor) -> Tensor:
        """The (V, k) table, rebuilt first if the store changed since it was built."""
        never_built = self.vocab_nbr.shape[1] == 1 and self.cfg.knn_k > 1
        if self.built_version != store.version or never_built:
            self.refresh(store, embeddings, force=True)
        return self.vocab_nbr

    def search(self, store: SplatStore, queries: Tensor, k: int | None = None) -> Tensor:
        """Nearest splats of arbitrary points (N, D) -> (N, k), on a fresh enough index."""
        self.index.ensure(store.mu)
        return self.index.search(queries, k or self.cfg.knn_k)

    def get_extra_state(self) -> dict:
        return {
            "nbr_step": self.built_step,
            "nbr_version": self.built_version,
            "vocab_nbr": self.vocab_nbr.clone(),
            "index_snapshot": self.index._snapshot,
        }

    def set_extra_state(self, state: dict) -> None:
        self.built_step, self.built_version = int(state["nbr_step"]), int(state["nbr_version"])
        self.vocab_nbr = state["vocab_nbr"].clone()
        if state["index_snapshot"] is not None:
            self.index.build(state["index_snapshot"])
        else:
            self.index.invalidate()
