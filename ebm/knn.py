"""Nearest splats by inner product, through FAISS (docs/design.md, "Energy").

`SplatIndex` holds a FAISS index over a snapshot of the splat means. Callers search it for
neighbour *ids* only; kernel values are always computed from the current parameters, so a
slightly stale snapshot changes which splats are summed, never their values. The snapshot
is rebuilt when any mean has drifted below `rebuild_cos` of its indexed position, or after
the store is edited (merge / prune / spawn).
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

Tensor = torch.Tensor


class SplatIndex:
    def __init__(self, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 128, rebuild_cos: float = 0.99):
        if kind not in ("flat", "hnsw"):
            raise ValueError(f"unknown index kind {kind!r}; use 'flat' or 'hnsw'")
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.rebuild_cos = rebuild_cos
        self._index: faiss.Index | None = None
        self._snapshot: Tensor | None = None

    @property
    def size(self) -> int:
        return 0 if self._snapshot is None else self._snapshot.shape[0]

    @property
    def on_device(self) -> bool:
        """Means on a GPU are searched there by exact top-k (no host copy per search); FAISS
        serves the CPU."""
        return self._snapshot is not None and self._snapshot.device.type != "cpu"

    def build(self, mu: Tensor) -> None:
        """Index unit means (K, D)."""
        self._snapshot = mu.detach().clone()
        if self.on_device:
            self._index = None
            return
        data = _as_faiss(mu)
        d = data.shape[1]
        index: faiss.Index
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        else:
            hnsw = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efSearch = self.ef_search
            hnsw.hnsw.efConstruction = max(40, self.ef_search)
            index = hnsw
        index.add(data)
        self._index = index

    def invalidate(self) -> None:
        self._index = None
        self._snapshot = None

    def is_stale(self, mu: Tensor) -> bool:
        if self._snapshot is None or self._snapshot.shape != mu.shape or (self._index is None and not self.on_device):
            return True
        drift = (self._snapshot * mu.detach()).sum(-1).min().item()
        return drift < self.rebuild_cos

    def ensure(self, mu: Tensor) -> None:
        if mu.device.type != "cpu":  # exact search against the live means: nothing to rebuild, no host sync
            self._index, self._snapshot = None, mu.detach()
        elif self.is_stale(mu):
            self.build(mu)

    def search(self, queries: Tensor, k: int) -> Tensor:
        """(N, D) -> (N, min(k, K)) long ids, best first."""
        if self.on_device and self._snapshot is not None:
            return exact_knn(queries, self._snapshot, k)
        if self._index is None:
            raise RuntimeError("SplatIndex.search before build(); call ensure(mu) first")
        k = min(k, self._index.ntotal)
        _, found = self._index.search(_as_faiss(queries), k)
        ids = torch.from_numpy(found).to(queries.device)
        # HNSW pads with -1 when it finds fewer than k; repeat the best id (a duplicate
        # neighbour only re-weights a kernel that is already in the sum).
        if (ids < 0).any():
            ids = torch.where(ids < 0, ids[:, :1].expand_as(ids), ids)
        return ids


def exact_knn(queries: Tensor, mu: Tensor, k: int, chunk: int = 4096) -> Tensor:
    """Brute-force reference: top-k inner products by matmul, (N, D), (K, D) -> (N, k)."""
    k = min(k, mu.shape[0])
    out = []
    for start in range(0, queries.shape[0], chunk):
        scores = queries[start : start + chunk] @ mu.T  # (n, K)
        out.append(scores.topk(k, dim=-1).indices)
    return torch.cat(out)


def recall(found: Tensor, truth: Tensor) -> float:
    """Share of true neighbours found, averaged over queries."""
    hits = (found.unsqueeze(-1) == truth.unsqueeze(-2)).any(-1).float()  # (N, k)
    return hits.mean().item()


def _as_faiss(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
