"""Exact inner-product top-k of points against all splat means on Vulkan (brute force)."""

from __future__ import annotations

import numpy as np
import torch

from .device import VulkanDevice, groups


def topk_inner_product(
    dev: VulkanDevice, queries: torch.Tensor, means: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D), (K, D) -> ids (N, k) long and scores (N, k), best first."""
    n, d = queries.shape
    k = min(k, means.shape[0])
    if k > 64:
        raise ValueError("the Vulkan top-k kernel returns at most 64 neighbours")
    ids, vals = dev.run(
        "topk_ip",
        [queries.detach().float().contiguous().numpy(), means.detach().float().contiguous().numpy()],
        [((n, k), np.uint32), ((n, k), np.float32)],
        (groups(n), 1, 1),
        [n, means.shape[0], d, k],
    )
    return torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(vals)
