"""Row inner products on Vulkan, out[b, w] = bias[w] + sign * x_b . y_w: the kernel behind the
splat scores of a nearest-neighbour search and the vocabulary energies of contexts.

Two shaders compute it. On a GPU, shaders/row_dots.comp: a 16 x 16 tile of outputs per
workgroup, with slices of x and y staged in shared memory and read by consecutive invocations
along d (coalesced). On a CPU driver, shaders/row_dots_plain.comp: one invocation per output,
which llvmpipe runs several times faster (docs/benchmarks.md, "Vulkan kernels").
"""

from __future__ import annotations

import numpy as np

from .device import TILE, VulkanDevice, groups


def record_row_dots(dev: VulkanDevice, seq, x, y, out, rows: int, cols: int, d: int, sign: float = 1.0, bias=None) -> None:
    """Append out (rows, cols) = bias + sign * x (rows, d) . y (cols, d)^T to a kp sequence."""
    push = [rows, cols, d, sign, 0.0 if bias is None else 1.0]
    # Without a bias the kernel never reads binding 2; y, read-only as well, fills it.
    tensors = [x, y, y if bias is None else bias, out]
    # Callers pass at most 65,535 rows, a dispatch dimension's limit.
    shape = (groups(cols, TILE), groups(rows, TILE), 1) if dev.tiled else (groups(cols), rows, 1)
    algo = dev.algorithm("row_dots" if dev.tiled else "row_dots_plain", tensors, shape, push)
    seq.record(dev.kp.OpAlgoDispatch(algo, np.array(push, np.float32)))
