"""Energies of every vocabulary token for a batch of contexts on Vulkan."""

from __future__ import annotations

import numpy as np
import torch

from .device import MAX_BUFFER_BYTES, VulkanDevice, groups


def vocab_energies(dev: VulkanDevice, embeddings: torch.Tensor, splat_vocab: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """E(e_w; c_b) = E_splat(e_w) - c_b . e_w with c = beta g + u: (V, D), (V,), (B, D) -> (B, V)."""
    v, d = embeddings.shape
    emb, sv = (np.ascontiguousarray(a.detach().float().numpy()) for a in (embeddings, splat_vocab))
    rows = max(1, min(65535, MAX_BUFFER_BYTES // (4 * v)))  # contexts per dispatch: one output buffer each
    parts = []
    for chunk in torch.split(ctx.detach().float(), rows):
        b = chunk.shape[0]
        (out,) = dev.run("vocab_energy", [emb, sv, chunk.contiguous().numpy()], [((b, v), np.float32)], (groups(v), b, 1), [v, d])
        parts.append(torch.from_numpy(out))
    return torch.cat(parts)
