"""Energies of every vocabulary token for a batch of contexts on Vulkan."""

from __future__ import annotations

import numpy as np
import torch

from .device import MAX_BUFFER_BYTES, VulkanDevice
from .dots import record_row_dots


def vocab_energies(dev: VulkanDevice, embeddings: torch.Tensor, splat_vocab: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """E(e_w; c_b) = E_splat(e_w) - c_b . e_w with c = beta g + u: (V, D), (V,), (B, D) -> (B, V)."""
    v, d = embeddings.shape
    emb, sv = (np.ascontiguousarray(a.detach().float().numpy()) for a in (embeddings, splat_vocab))
    rows = max(1, min(65535, MAX_BUFFER_BYTES // (4 * v)))  # contexts per dispatch: one output buffer each
    emb_t, sv_t, parts = dev.tensor(emb), dev.tensor(sv), []
    with dev.reusing():
        for i, chunk in enumerate(torch.split(ctx.detach().float(), rows)):
            b = chunk.shape[0]
            ctx_t, out_t = dev.tensor(chunk.contiguous().numpy()), dev.tensor(np.zeros((b, v), np.float32))
            seq = dev.mgr.sequence().record(dev.upload([ctx_t, emb_t, sv_t] if i == 0 else [ctx_t]))
            record_row_dots(dev, seq, ctx_t, emb_t, out_t, b, v, d, sign=-1.0, bias=sv_t)
            seq.record(dev.download([out_t])).eval()
            parts.append(torch.from_numpy(out_t.data().reshape(b, v).copy()))
    return torch.cat(parts)
