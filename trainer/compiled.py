"""--compile: the context encoder through torch.compile (inductor).

The sphere transformer's normalisations, rotary and residual interpolations are many small
element-wise kernels that inductor fuses: 0.56x -> 0.67x the same-size transformer's targets/s
at the cpu preset (docs/benchmarks.md). Compiled in place (`Module.compile`), so the state dict
keeps its keys and checkpoints load with or without the flag."""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line checks --compile without loading torch
    from torch import nn

C_COMPILERS = ("cc", "gcc", "clang")


def compile_problem(device: str) -> str | None:
    """Why --compile cannot work on this machine, said before the run starts; None if it can.
    With --device vulkan the encoder runs in torch on the CPU, so a C compiler is what it needs."""
    if device.startswith("cuda"):
        if importlib.util.find_spec("triton") is None:
            return "--compile on CUDA needs triton (pip install triton), or leave out --compile"
        return None
    wanted = [os.environ["CC"]] if os.environ.get("CC") else list(C_COMPILERS)
    if not any(shutil.which(cc) for cc in wanted):
        return f"--compile needs a C compiler ({' or '.join(wanted)}) on PATH: install one, or leave out --compile"
    return None


def compile_encoder(encoder: nn.Module) -> nn.Module:
    """Compile in place the transformer encoder's backbone (what was measured to pay), or the
    whole encoder where it has none; returns the module compiled."""
    target = getattr(encoder, "backbone", encoder)
    target.compile()
    return target
