"""Energies of every vocabulary token for a batch of contexts on Vulkan."""

from __future__ import annotations

import numpy as np
import torch

from .device import VulkanDevice, groups


def vocab_energies(dev: VulkanDevice, embeddings: torch.Tensor, splat_vocab: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """E(e_w; c_b) = E_splat(e_w) - c_b . e_w with c = beta g + u: (V, D), (V,), (B, D) -> (B, V)."""
    v, d = embeddings.shape
    b = ctx.shape[0]
    (out,) = dev.run(
        "vocab_energy",
        [np.ascontiguousarray(a.detach().float().numpy()) for a in (embeddings, splat_vocab, ctx)],
        [((b, v), np.float32)],
        (groups(v), b, 1),
        [v, d],
    )
    return torch.from_numpy(out)
