"""Where the energy's heavy kernels run: torch (CPU or CUDA) or a Vulkan device.

A backend is a value passed to the objective, the scorers and the sampler, never a switch on
the model, so one model can serve two callers on two backends at once (two dashboard
sessions, say). Three kernels differ per backend:

    splat_energy(store, points, nbr)    E_splat at given points, (N,), differentiable
    vocab_logits(emb, bias, c)          logits of p_E for contexts c = (beta g + u), (N, V)
    langevin(model, z0, g, u, h, ...)   a whole sampling chain, when the backend runs chains

The torch backend runs on whatever device the tensors are on. The Vulkan backend keeps the
rest of the model in torch on the CPU (docs/design.md, "Backends").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .attractors import as_splat_energy
from .energy import vocab_logit_terms
from .ops import row_scores

if TYPE_CHECKING:
    from .model import EBMModel
    from .splats import SplatStore

Tensor = torch.Tensor


class TorchBackend:
    """Every kernel in torch; chains run step by step in ebm.sampler."""

    runs_chains = False

    def __repr__(self) -> str:
        return "torch"

    def splat_energy(self, store: SplatStore, points: Tensor, nbr: Tensor) -> Tensor:
        """(N, D), (N, k) -> (N,)."""
        return store.energy(points, nbr)

    def vocab_logits(self, embeddings: Tensor, bias: Tensor, c: Tensor, temperature: float) -> Tensor:
        """(V, D), (V,) model.vocab_bias, (N, D) -> (N, V) in float32: scoring stays exact whatever
        the heads use."""
        c, bias = vocab_logit_terms(c, bias, temperature)
        return row_scores(c, embeddings, bias, torch.float32)


class VulkanBackend:
    """Splat energy, vocabulary energies and whole Langevin chains on a Vulkan device."""

    runs_chains = True

    def __init__(self, device):
        self.device = device  # an ebm.vulkan.VulkanDevice

    def __repr__(self) -> str:
        return str(self.device)

    def splat_energy(self, store: SplatStore, points: Tensor, nbr: Tensor) -> Tensor:
        from .vulkan.splat import splat_energy as vulkan_splat_energy

        return vulkan_splat_energy(self.device, points, store.mu, store.log_alpha, store.kappa, float(store.tau), nbr)

    def vocab_logits(self, embeddings: Tensor, bias: Tensor, c: Tensor, temperature: float) -> Tensor:
        from .vulkan.vocab import vocab_energies

        # The kernel adds a per-token energy to -c . e_w; -T * bias is that energy.
        return -vocab_energies(self.device, embeddings, -temperature * bias, c) / temperature

    def langevin(self, model: EBMModel, z0: Tensor, g: Tensor, u: Tensor, h: Tensor, settings, generator):
        """The chain of ebm.sampler.sample, on the device; the noise stream is seeded from `generator`.
        The context term runs as each chain's own splats (ebm.attractors.as_splat_energy)."""
        from .vulkan.chain import ChainContext, DeviceChain, SplatField, langevin_sample

        seed = int(torch.randint(1 << 24, (1,), generator=generator))  # host: the Vulkan kernel's seed
        cfg, s, beta = model.cfg, model.splats, float(model.beta)
        landscape: tuple[Tensor, Tensor, Tensor, float, Tensor | None] = (s.mu, s.log_alpha, s.kappa, float(s.tau), None)
        if cfg.splat_term != "token":
            idx, log_match = model.chain_splats(beta * g + u, h)
            landscape = as_splat_energy(s.mu, s.kappa, float(s.tau), log_match, idx, cfg.vocab_temperature)
        mu, log_alpha, kappa, tau, fixed = landscape
        field = SplatField(mu, log_alpha, kappa, tau, cfg.knn_k, cfg.langevin_knn_refresh, fixed)
        chain = DeviceChain(settings.steps, settings.dt, settings.gamma, settings.temperature, seed)
        return langevin_sample(self.device, z0, ChainContext(g, beta, u), field, chain, generator)


Backend = TorchBackend | VulkanBackend
TORCH = TorchBackend()


def backend_for(vulkan_device=None) -> Backend:
    """The Vulkan backend on that device, else torch."""
    return TORCH if vulkan_device is None else VulkanBackend(vulkan_device)


__all__ = ["TORCH", "Backend", "TorchBackend", "VulkanBackend", "backend_for"]
