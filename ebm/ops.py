"""Memory-bounded tensor ops with hand-written backward passes.

gather_dot(x, y, idx)[n, j] = x[n] . y[idx[n, j]]. Autograd through a plain gather would
store the (N, k, D) gathered rows: for the vocabulary (N = 50,257, k = 64, D = 640) that is
8 GB. Two implementations share one autograd Function:
  torch  chunked gathers + bmm (the reference; any device),
  numba  fused parallel loops on CPU float32 that never copy rows (at the default vocabulary,
         measured 4x faster forward and 2.3x forward + backward; docs/design-notes.md).
"""

from __future__ import annotations

import os

import numpy as np
import torch

Tensor = torch.Tensor

_CHUNK_ELEMENTS = 1 << 23  # ~32 MB of float32 gathered rows per chunk

try:  # numba comes with umap-learn; without it the torch path is used
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _nb_forward(x, y, idx):  # pragma: no cover - compiled
        n, k = idx.shape
        out = np.empty((n, k), dtype=x.dtype)
        for r in numba.prange(n):
            for j in range(k):
                out[r, j] = np.dot(x[r], y[idx[r, j]])
        return out

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _nb_grad_x(g, y, idx):  # pragma: no cover - compiled
        n, k = idx.shape
        out = np.zeros((n, y.shape[1]), dtype=y.dtype)
        for r in numba.prange(n):
            for j in range(k):
                out[r] += g[r, j] * y[idx[r, j]]
        return out

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _nb_grad_y(g, x, idx, m, n_parts):  # pragma: no cover - compiled
        n, k = idx.shape
        partial = np.zeros((n_parts, m, x.shape[1]), dtype=x.dtype)
        step = (n + n_parts - 1) // n_parts
        for p in numba.prange(n_parts):  # one accumulator per worker: no write races
            for r in range(p * step, min(n, (p + 1) * step)):
                for j in range(k):
                    partial[p, idx[r, j]] += g[r, j] * x[r]
        return partial.sum(axis=0)

    HAVE_NUMBA = os.environ.get("EBM_DISABLE_NUMBA", "") == ""
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False


def _chunks(n: int, k: int, d: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, k * d))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


_NUMBA_MIN_WORK = 1 << 20  # below ~1M multiply-adds thread start-up costs more than the copies saved


def _use_numba(x: Tensor, y: Tensor, idx: Tensor) -> bool:
    cpu32 = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (x, y))
    return HAVE_NUMBA and cpu32 and idx.numel() * x.shape[1] >= _NUMBA_MIN_WORK


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _GatherDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, idx: Tensor, fused: bool) -> Tensor:
        ctx.save_for_backward(x, y, idx)
        ctx.fused = fused
        if fused:
            return torch.from_numpy(_nb_forward(_np(x), _np(y), _np(idx)))
        n, k = idx.shape
        out = x.new_empty(n, k)
        for s in _chunks(n, k, x.shape[1]):
            rows = y[idx[s]]  # (n_s, k, D)
            out[s] = torch.bmm(rows, x[s].unsqueeze(-1)).squeeze(-1)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, y, idx = ctx.saved_tensors
        grad_x = grad_y = None
        n, k = idx.shape
        if ctx.fused:
            g = _np(grad_out.to(x.dtype))
            if ctx.needs_input_grad[0]:
                grad_x = torch.from_numpy(_nb_grad_x(g, _np(y), _np(idx)))
            if ctx.needs_input_grad[1]:
                parts = max(1, torch.get_num_threads())
                grad_y = torch.from_numpy(_nb_grad_y(g, _np(x), _np(idx), y.shape[0], parts))
            return grad_x, grad_y, None, None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x)
            for s in _chunks(n, k, x.shape[1]):
                rows = y[idx[s]]  # (n_s, k, D)
                grad_x[s] = torch.bmm(grad_out[s].unsqueeze(1), rows).squeeze(1)
        if ctx.needs_input_grad[1]:
            grad_y = torch.zeros_like(y)
            for s in _chunks(n, k, x.shape[1]):
                contrib = grad_out[s].unsqueeze(-1) * x[s].unsqueeze(1)  # (n_s, k, D)
                grad_y.index_add_(0, idx[s].reshape(-1), contrib.reshape(-1, x.shape[1]))
        return grad_x, grad_y, None, None


def gather_dot(x: Tensor, y: Tensor, idx: Tensor, fused: bool | None = None) -> Tensor:
    """(N, D), (M, D), (N, k) long -> (N, k) with out[n, j] = x[n] . y[idx[n, j]].

    fused=None picks the numba kernel for CPU float32 inputs when numba is available.
    """
    if fused is None:
        fused = _use_numba(x, y, idx)
    return _GatherDot.apply(x, y, idx, fused)
