"""Host overhead of the Vulkan sampler: one generated token's Langevin chain with pipelines
built once per chain (the default) against a new pipeline and SPIR-V read per dispatch (the
former behaviour, `VulkanDevice.reuse = False`), side by side in one run.

    python bench/vulkan_host.py [--steps 200] [--splats 4096] [--points 1] [--repeats 7]

On a software driver (llvmpipe) the time includes the shaders' own work, run on the CPU; the
ratio is a lower bound on the host saving a hardware GPU sees.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ebm.geometry import random_points  # noqa: E402
from ebm.vulkan import get_device  # noqa: E402
from ebm.vulkan.chain import ChainContext, DeviceChain, SplatField, langevin_sample  # noqa: E402


def one_chain(dev, case: dict, steps: int) -> tuple[float, int]:
    """Seconds and pipelines built for one chain."""
    built = dev.pipelines_built
    t = time.perf_counter()
    langevin_sample(dev, **case, chain=DeviceChain(steps, 0.05, 0.5, 0.01, 1))
    return time.perf_counter() - t, dev.pipelines_built - built


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--splats", type=int, default=4096)
    p.add_argument("--points", type=int, default=1, help="chains sampled together (the Generate page: 1)")
    p.add_argument("--dim", type=int, default=640)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    dev = get_device("vulkan")
    gen = torch.Generator().manual_seed(0)
    g = random_points(args.points, args.dim, gen)
    field = SplatField(
        random_points(args.splats, args.dim, gen), torch.zeros(args.splats), torch.full((args.splats,), 20.0), 1.0, 16
    )
    case = dict(z0=g.clone(), context=ChainContext(g, 1.0, 0.1 * torch.randn(args.points, args.dim, generator=gen)), splats=field)
    rows = {}
    for reuse in (False, True, False, True):  # interleaved, so drift in the machine's speed hits both
        dev.reuse = reuse
        one_chain(dev, case, 5)  # warm-up: SPIR-V compiled and cached on disk
        for _ in range(args.repeats):
            rows.setdefault(reuse, []).append(one_chain(dev, case, args.steps))
    print(
        f"device {dev}; {args.steps}-step chain, {args.points} point(s), {args.splats} splats, D = {args.dim}; "
        f"median of {2 * args.repeats} chains each"
    )
    print(f"{'pipelines':<28}{'built per chain':>16}{'seconds per chain':>20}{'ratio':>8}")
    base = statistics.median(t for t, _ in rows[False])
    for reuse, label in ((False, "new per dispatch (before)"), (True, "built once per chain")):
        med = statistics.median(t for t, _ in rows[reuse])
        print(f"{label:<28}{rows[reuse][0][1]:>16}{med:>20.4f}{med / base:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
