"""--device for the commands: cpu, cuda[:N] or vulkan[:N]."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    pass


def resolve_device(spec: str):
    """--device -> (torch device, Vulkan device or None). With vulkan[:N] the splat energy,
    vocabulary energies and Langevin sampling run on that Vulkan device and the rest of the
    model in torch on the CPU. No silent fallback: a missing device is an error."""
    if spec == "cpu":
        return torch.device("cpu"), None
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA device is visible to torch; use --device cpu")
        return torch.device(spec), None
    if spec == "vulkan" or spec.startswith("vulkan:"):
        from ebm.vulkan import VulkanError, get_device

        try:
            return torch.device("cpu"), get_device(spec)
        except VulkanError as err:
            raise DeviceError(f"--device {spec}: {err}") from None
    raise DeviceError(f"unknown --device {spec!r}: use cpu, cuda[:N] or vulkan[:N]")
