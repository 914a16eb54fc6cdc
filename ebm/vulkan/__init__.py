"""Vulkan compute backend through Kompute (`kp`): splat energy and gradients, brute-force top-k,
fused Langevin steps and vocabulary energies as GLSL compute shaders (sources in shaders/).

Optional: `bash scripts/vulkan-setup.sh` installs Mesa's drivers (lavapipe, a CPU device) and
builds `kp`. Nothing here is imported by the rest of `ebm` unless a Vulkan device is asked for.
"""

from .device import VulkanDevice, VulkanError, get_device, list_devices

__all__ = ["VulkanDevice", "VulkanError", "get_device", "list_devices"]
