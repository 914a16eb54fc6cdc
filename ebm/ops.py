"""Tensor ops shared by the model: gather_dot, gather_combine and the vocabulary heads.

    gather_dot(x, y, idx)[n, j]   = x[n] . y[idx[n, j]]
    gather_combine(w, y, idx)[n]  = sum_j w[n, j] y[idx[n, j]]
    row_scores(x, w, bias)        = x @ w.T + bias
    linear_cross_entropy(x, w, t, bias) = cross_entropy(row_scores(x, w, bias), t), blockwise

Autograd through a plain gather would store the (N, k, D) gathered rows: for the vocabulary
(N = 50,257, k = 64, D = 640) that is 8 GB, and in the sampler the copy is most of a step.
Two implementations sit under both autograd Functions:
  torch  chunked gathers + bmm (the reference; any device),
  numba  fused parallel loops on CPU float32 that never copy rows (docs/design-notes.md).
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
        d = x.shape[1]
        out = np.empty((n, k), dtype=x.dtype)
        for r in numba.prange(n):
            xr = x[r]
            for j in range(k):
                row = y[idx[r, j]]
                acc = x.dtype.type(0)
                for c in range(d):
                    acc += xr[c] * row[c]
                out[r, j] = acc
        return out

    # Explicit loops over D: numba allocates a temporary for every `out[r] += w * y[i]`,
    # which made the two kernels below 2.8x slower (bench/speed.py, gather_dot table).
    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _nb_grad_x(g, y, idx):  # pragma: no cover - compiled
        n, k = idx.shape
        d = y.shape[1]
        out = np.zeros((n, d), dtype=y.dtype)
        for r in numba.prange(n):
            acc = out[r]
            for j in range(k):
                w, row = g[r, j], y[idx[r, j]]
                for c in range(d):
                    acc[c] += w * row[c]
        return out

    @numba.njit(parallel=True, fastmath=True, cache=True)
    def _nb_grad_y(g, x, idx, m, n_parts):  # pragma: no cover - compiled
        n, k = idx.shape
        d = x.shape[1]
        partial = np.zeros((n_parts, m, d), dtype=x.dtype)
        step = (n + n_parts - 1) // n_parts
        for p in numba.prange(n_parts):  # one accumulator per worker: no write races
            part = partial[p]
            for r in range(p * step, min(n, (p + 1) * step)):
                xr = x[r]
                for j in range(k):
                    w, dst = g[r, j], part[idx[r, j]]
                    for c in range(d):
                        dst[c] += w * xr[c]
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


# The three primitives, each (numba | chunked torch). With W (N, M) the sparse matrix holding
# w[n, j] at (n, idx[n, j]):  dot_rows = rows of X Y^T on W's pattern,  combine_rows = W Y,
# scatter_rows = W^T X. Each Function's backward is made of the other two.
def _dot_rows(x: Tensor, y: Tensor, idx: Tensor, fused: bool) -> Tensor:
    """out[n, j] = x[n] . y[idx[n, j]]: (N, D), (M, D), (N, k) -> (N, k)."""
    if fused:
        return torch.from_numpy(_nb_forward(_np(x), _np(y), _np(idx)))
    n, k = idx.shape
    out = x.new_empty(n, k)
    for s in _chunks(n, k, x.shape[1]):
        out[s] = torch.bmm(y[idx[s]], x[s].unsqueeze(-1)).squeeze(-1)  # (n_s, k, D) rows
    return out


def _combine_rows(w: Tensor, y: Tensor, idx: Tensor, fused: bool) -> Tensor:
    """out[n] = sum_j w[n, j] y[idx[n, j]]: (N, k), (M, D), (N, k) -> (N, D)."""
    if fused:
        return torch.from_numpy(_nb_grad_x(_np(w.to(y.dtype)), _np(y), _np(idx)))
    n, k = idx.shape
    out = y.new_empty(n, y.shape[1])
    for s in _chunks(n, k, y.shape[1]):
        out[s] = torch.bmm(w[s].unsqueeze(1).to(y.dtype), y[idx[s]]).squeeze(1)
    return out


def _scatter_rows(w: Tensor, x: Tensor, idx: Tensor, m: int, fused: bool) -> Tensor:
    """out[i] = sum over (n, j) with idx[n, j] = i of w[n, j] x[n]: -> (M, D)."""
    if fused:
        parts = max(1, torch.get_num_threads())
        return torch.from_numpy(_nb_grad_y(_np(w.to(x.dtype)), _np(x), _np(idx), m, parts))
    n, k = idx.shape
    out = x.new_zeros(m, x.shape[1])
    for s in _chunks(n, k, x.shape[1]):
        contrib = w[s].unsqueeze(-1).to(x.dtype) * x[s].unsqueeze(1)  # (n_s, k, D)
        out.index_add_(0, idx[s].reshape(-1), contrib.reshape(-1, x.shape[1]))
    return out


class _GatherDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, idx: Tensor, fused: bool) -> Tensor:
        ctx.save_for_backward(x, y, idx)
        ctx.fused = fused
        return _dot_rows(x, y, idx, fused)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, y, idx = ctx.saved_tensors
        grad_x = _combine_rows(grad_out, y, idx, ctx.fused) if ctx.needs_input_grad[0] else None
        grad_y = _scatter_rows(grad_out, x, idx, y.shape[0], ctx.fused) if ctx.needs_input_grad[1] else None
        return grad_x, grad_y, None, None


class _GatherCombine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor, y: Tensor, idx: Tensor, fused: bool) -> Tensor:
        ctx.save_for_backward(w, y, idx)
        ctx.fused = fused
        return _combine_rows(w, y, idx, fused)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        w, y, idx = ctx.saved_tensors
        grad_w = _dot_rows(grad_out, y, idx, ctx.fused).to(w.dtype) if ctx.needs_input_grad[0] else None
        grad_y = _scatter_rows(w, grad_out, idx, y.shape[0], ctx.fused) if ctx.needs_input_grad[1] else None
        return grad_w, grad_y, None, None


def gather_dot(x: Tensor, y: Tensor, idx: Tensor, fused: bool | None = None) -> Tensor:
    """(N, D), (M, D), (N, k) long -> (N, k) with out[n, j] = x[n] . y[idx[n, j]].

    fused=None picks the numba kernel for CPU float32 inputs when numba is available.
    """
    if fused is None:
        fused = _use_numba(x, y, idx)
    return _GatherDot.apply(x, y, idx, fused)


def gather_combine(w: Tensor, y: Tensor, idx: Tensor, fused: bool | None = None) -> Tensor:
    """(N, k), (M, D), (N, k) long -> (N, D) with out[n] = sum_j w[n, j] y[idx[n, j]],
    without materialising the (N, k, D) rows; the adjoint of gather_dot in its first argument."""
    if fused is None:
        fused = _use_numba(y, y, idx)
    return _GatherCombine.apply(w, y, idx, fused)


def head_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype the training heads multiply in: "float32", "bfloat16", or "auto" = bfloat16
    where the hardware has native bf16 dot products (CUDA, x86 avx512_bf16 / AMX), else float32.
    Emulated bf16 is slower than float32, hence the check."""
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        native = (
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
        return torch.bfloat16 if native else torch.float32
    return torch.float32


def row_scores(x: Tensor, w: Tensor, bias: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """x (N, D) against every row of w (V, D), plus bias (V,): (N, V) in x's dtype.

    The product runs in `dtype` (bfloat16 is 4.5x faster than float32 on an avx512_bf16 CPU
    at N = 1024, V = 50,257, D = 640; docs/design-notes.md); the bias is added in x's dtype.
    """
    if dtype == x.dtype:
        return x @ w.T if bias is None else torch.addmm(bias, x, w.T)
    out = (x.to(dtype) @ w.to(dtype).T).to(x.dtype)
    return out if bias is None else out + bias


HEAD_BLOCK = 2048  # vocabulary columns per block; 8 MB of float32 logits at N = 1024


def _block_logits(xd: Tensor, w: Tensor, bias: Tensor | None, start: int, stop: int, out_dtype: torch.dtype) -> Tensor:
    """Logits of columns start:stop: xd (N, D) already in the head dtype -> (N, stop - start)."""
    logits = (xd @ w[start:stop].to(xd.dtype).T).to(out_dtype)
    return logits if bias is None else logits.add_(bias[start:stop])


class _LinearLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, bias, dtype, block):
        xd = x.detach().to(dtype)
        lse_blocks = [
            torch.logsumexp(
                _block_logits(xd, w.detach(), None if bias is None else bias.detach(), s, min(s + block, w.shape[0]), x.dtype), 1
            )
            for s in range(0, w.shape[0], block)
        ]
        lse = torch.logsumexp(torch.stack(lse_blocks, 1), 1)  # (N,)
        ctx.save_for_backward(x, w, bias, lse)
        ctx.dtype, ctx.block = dtype, block
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, w, bias, lse = ctx.saved_tensors
        xd = x.to(ctx.dtype)
        grad_x, grad_w = torch.zeros_like(x), torch.empty_like(w)
        grad_bias = None if bias is None else torch.empty_like(bias)
        for start in range(0, w.shape[0], ctx.block):  # recompute each block: d lse / d logits = softmax
            stop = min(start + ctx.block, w.shape[0])
            p = _block_logits(xd, w, bias, start, stop, x.dtype).sub_(lse[:, None]).exp_().mul_(grad[:, None])  # (N, block)
            pd = p.to(ctx.dtype)
            grad_x += (pd @ w[start:stop].to(ctx.dtype)).to(x.dtype)
            grad_w[start:stop] = (pd.T @ xd).to(w.dtype)
            if grad_bias is not None:
                grad_bias[start:stop] = p.sum(0)
        return grad_x, grad_w, grad_bias, None, None


def linear_logsumexp(
    x: Tensor, w: Tensor, bias: Tensor | None = None, dtype: torch.dtype = torch.float32, block: int = HEAD_BLOCK
) -> Tensor:
    """log sum_v exp(row_scores(x, w, bias, dtype))[n, v]: x (N, D), w (V, D), bias (V,) -> (N,),
    blockwise, the backward recomputing each block, so no (N, V) tensor exists."""
    return _LinearLogSumExp.apply(x, w, bias, dtype, block)


def rounded(x: Tensor, dtype: torch.dtype) -> Tensor:
    """x as the heads see it: rounded to `dtype`, kept in x's dtype (products of bf16 values are
    exact in float32, so dot products of rounded inputs match a bf16 matmul's float32 sums)."""
    return x if dtype == x.dtype else x.to(dtype).to(x.dtype)


def target_scores(
    x: Tensor, w: Tensor, targets: Tensor, bias: Tensor | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """row_scores(x, w, bias, dtype)[n, targets[n]] without the other columns: -> (N,)."""
    scores = (rounded(x, dtype) * rounded(w[targets], dtype)).sum(-1)
    return scores if bias is None else scores + bias[targets]


def linear_cross_entropy(
    x: Tensor, w: Tensor, targets: Tensor, bias: Tensor | None = None, dtype: torch.dtype = torch.float32, block: int = HEAD_BLOCK
) -> Tensor:
    """Mean cross-entropy of softmax(row_scores(x, w, bias, dtype)) at targets: x (N, D),
    w (V, D), targets (N,), bias (V,) -> ().

    The log-normaliser goes through the vocabulary in blocks of columns (linear_logsumexp), so
    no (N, V) tensor exists: for the training heads (N = 1,024, V = 50,257) each such tensor is
    206 MB of freshly mapped memory, and the step made a dozen of them.
    """
    return (linear_logsumexp(x, w, bias, dtype, block) - target_scores(x, w, targets, bias, dtype)).mean()
