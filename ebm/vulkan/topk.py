"""Exact inner-product top-k of points against all splat means on Vulkan (brute force): one
pass of scores (queries x splats), then a selection pass per range of at most 60,000 splats."""

from __future__ import annotations

import numpy as np
import torch

from .device import MAX_BUFFER_BYTES, VulkanDevice, groups
from .dots import record_row_dots

SELECT_RANGE = 60_000  # under lavapipe's 65,535-iteration loop limit


def record_topk(dev: VulkanDevice, seq, q_t, mu_t, scores_t, ids_t, vals_t, n: int, s: int, d: int, k: int) -> None:
    """Append the search to a kp sequence: tensors q (n, d), mu (s, d) -> ids, vals (n, k), with
    scores_t (n, s) a scratch buffer."""
    if k > 64:
        raise ValueError("the Vulkan top-k kernel returns at most 64 neighbours")
    kp = dev.kp
    record_row_dots(dev, seq, q_t, mu_t, scores_t, n, s, d)
    # llvmpipe counts every loop iteration of an invocation; a range of r splats costs at most r * k.
    step = max(1, 60_000 // k) if dev.software else SELECT_RANGE
    select = dev.algorithm("topk_select", [scores_t, ids_t, vals_t], (groups(n), 1, 1), [n, s, k, 0, min(s, step)])
    for first in range(0, s, step):
        seq.record(kp.OpAlgoDispatch(select, np.array([n, s, k, first, min(step, s - first)], np.float32)))


def topk_inner_product(
    dev: VulkanDevice, queries: torch.Tensor, means: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D), (S, D) -> ids (N, k) long and scores (N, k), best first."""
    s, d = means.shape
    k = min(k, s)
    mu_t = dev.tensor(means.detach().float().contiguous().numpy())
    rows = max(1, min(65535, MAX_BUFFER_BYTES // (4 * s)))  # queries per pass: one scores buffer each
    ids, vals = [], []
    for chunk in torch.split(queries.detach().float(), rows):
        n = chunk.shape[0]
        q_t = dev.tensor(chunk.contiguous().numpy())
        scores_t = dev.scratch((n, s))
        ids_t, vals_t = dev.tensor(np.zeros((n, k), np.uint32)), dev.tensor(np.zeros((n, k), np.float32))
        with dev.reusing():
            seq = dev.mgr.sequence().record(dev.upload([q_t, mu_t]))
            record_topk(dev, seq, q_t, mu_t, scores_t, ids_t, vals_t, n, s, d, k)
            seq.record(dev.download([ids_t, vals_t])).eval()
        ids.append(torch.from_numpy(ids_t.data().reshape(n, k).astype(np.int64)))
        vals.append(torch.from_numpy(vals_t.data().reshape(n, k).copy()))
    return torch.cat(ids), torch.cat(vals)
