"""The splat index and the tables that tie splats to tokens, cached between store edits.

The context term (ebm.attractors) needs each splat's splat_top_tokens nearest tokens; the
token term needs each token's knn_k nearest splats. Searching K x V every step would dominate
the step, so the tables are rebuilt every knn_refresh_interval steps, or at once when the store
was edited (its `version` changed). Kernel values always come from the current parameters: a
stale table changes which pairs are summed, never their values (docs/design.md, "Neighbours").
"""

from __future__ import annotations

import torch
from torch import nn

from .config import EBMConfig
from .knn import SplatIndex
from .splats import SplatStore

Tensor = torch.Tensor


TOP_BLOCK = 1024  # splats scored against the vocabulary at once: 33 MB at V = 8,192


@torch.no_grad()
def nearest_tokens(mu: Tensor, embeddings: Tensor, m: int) -> Tensor:
    """The m tokens of largest mu_i . e_w for each splat, exact: (K, D), (V, D) -> (K, m)."""
    m = min(m, embeddings.shape[0])
    blocks = [(mu[s : s + TOP_BLOCK] @ embeddings.T).topk(m, dim=1).indices for s in range(0, mu.shape[0], TOP_BLOCK)]
    return torch.cat(blocks) if blocks else torch.zeros(0, m, dtype=torch.long, device=mu.device)


class NeighbourTable(nn.Module):
    """The FAISS index over the splat means, each splat's (K, m) top tokens (context term) and
    each token's (V, k) nearest splats (token term).

    All are part of the training state (exact resume), saved as this module's extra state.
    """

    def __init__(self, cfg: EBMConfig):
        super().__init__()
        self.cfg = cfg
        self.index = SplatIndex(cfg.knn_index)
        self.register_buffer("vocab_nbr", torch.zeros(cfg.vocab_size, 0, dtype=torch.long), persistent=False)
        self.register_buffer("splat_top", torch.zeros(0, cfg.splat_top_tokens, dtype=torch.long), persistent=False)
        self.built_version = -1  # store version the table was built for
        self.built_step = -(10**9)

    @torch.no_grad()
    def refresh(self, store: SplatStore, embeddings: Tensor, step: int | None = None, force: bool = False) -> bool:
        """Rebuild the index and the table when due; True if rebuilt."""
        due = step is None or step - self.built_step >= self.cfg.knn_refresh_interval
        if not (force or due or self.built_version != store.version):
            return False
        self.index.build(store.position)
        if self.cfg.splat_term == "token":
            self.vocab_nbr = self.index.search(embeddings, self.cfg.knn_k)
        if self.cfg.retrieves_splats:
            self.splat_top = nearest_tokens(store.mu.detach(), embeddings.detach(), self.cfg.splat_top_tokens)
        self.built_version = store.version
        self.built_step = self.built_step if step is None else step
        return True

    def current(self, store: SplatStore, embeddings: Tensor) -> NeighbourTable:
        """The tables, rebuilt first if the store changed since they were built."""
        if self.built_version != store.version:
            self.refresh(store, embeddings, force=True)
        return self

    def search(self, store: SplatStore, queries: Tensor, k: int | None = None) -> Tensor:
        """Nearest splats of points in the splats' space (N, splat_dim) -> (N, k), on a fresh enough index."""
        self.index.ensure(store.position)
        return self.index.search(queries, k or self.cfg.knn_k)

    def get_extra_state(self) -> dict:
        return {
            "nbr_step": self.built_step,
            "nbr_version": self.built_version,
            "vocab_nbr": self.vocab_nbr.clone(),
            "splat_top": self.splat_top.clone(),
            "index_snapshot": self.index._snapshot,
        }

    def set_extra_state(self, state: dict) -> None:
        self.built_step, self.built_version = int(state["nbr_step"]), int(state["nbr_version"])
        self.vocab_nbr = state["vocab_nbr"].clone()
        # Files from before the context term lack the top-token table: rebuilt on first use.
        self.splat_top = state["splat_top"].clone() if "splat_top" in state else self.splat_top[:0]
        if "splat_top" not in state and self.cfg.retrieves_splats:
            self.built_version = -1
        if state["index_snapshot"] is not None:
            self.index.build(state["index_snapshot"])
        else:
            self.index.invalidate()
