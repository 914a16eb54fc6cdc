"""Underdamped Riemannian Langevin sampling on Vulkan: every step is three dispatches recorded
in one command sequence (neighbour search when due, splat energy + gradient, fused step), so a
200-step run uploads once, stays on the device and reads back once."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ..geometry import tangent_noise
from ..langevin import LangevinResult
from .device import VulkanDevice, groups
from .splat import record_splat
from .topk import record_topk


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().numpy())


class ChainContext(NamedTuple):
    """The fixed contexts of N chains: E_geo + E_comp = -(beta g + u) . z."""

    g: torch.Tensor  # (N, D)
    beta: float
    u: torch.Tensor  # (N, D)


class SplatField(NamedTuple):
    """The splats every chain sums: each point's knn_k nearest, searched every knn_refresh steps,
    or with fixed_idx (N, k) the same ones throughout."""

    mu: torch.Tensor  # (S, D)
    log_alpha: torch.Tensor  # (S,)
    kappa: torch.Tensor  # (S,)
    tau: float
    knn_k: int
    knn_refresh: int = 10
    fixed_idx: torch.Tensor | None = None


class DeviceChain(NamedTuple):
    """The chain's settings; the noise stream is a hash of (seed, step, point, coordinate)."""

    steps: int
    dt: float
    gamma: float
    temperature: float
    seed: int = 0


def langevin_sample(
    dev: VulkanDevice,
    z0: torch.Tensor,
    context: ChainContext,
    splats: SplatField,
    chain: DeviceChain,
    generator: torch.Generator | None = None,
) -> LangevinResult:
    """Sample from exp(-E/T) with E = E_splat + E_geo + E_comp for N points z0 (N, D); the same
    chain as ebm.langevin.langevin_sample with the model's energy_fn, except the noise, which
    comes from the device's counter-based hash. `generator` draws the start velocity."""
    # long: one command sequence is recorded and run whole; helpers would only pass its dozen device tensors around
    n, d = z0.shape
    (g, beta, u), (mu, log_alpha, kappa, tau, knn_k, knn_refresh, fixed_idx) = context, splats
    steps, dt, gamma, temperature, seed = chain
    k = min(knn_k, mu.shape[0]) if fixed_idx is None else fixed_idx.shape[1]
    kp = dev.kp
    v0 = tangent_noise(z0, math.sqrt(temperature), generator) if temperature > 0 else torch.zeros_like(z0)
    z_t, v_t = dev.tensor(_f32(z0)), dev.tensor(_f32(v0))
    mu_t, la_t, ka_t = dev.tensor(_f32(mu)), dev.tensor(_f32(log_alpha)), dev.tensor(_f32(kappa))
    bg_t, u_t = dev.tensor(_f32(beta * g)), dev.tensor(_f32(u))
    inputs = [z_t, v_t, mu_t, la_t, ka_t, bg_t, u_t]
    if fixed_idx is None:
        idx_t = dev.scratch((n, k), np.uint32)
    else:
        idx_t = dev.tensor(fixed_idx.numpy().astype(np.uint32))
        inputs.append(idx_t)
    # Scratch lives on the device only; the traces are written at every step, read back, never uploaded.
    best_t, w_t, cos_t = (dev.scratch((n, k)) for _ in range(3))
    scores_t, grad_t = dev.scratch((n, mu.shape[0])), dev.scratch((n, d))
    splat_t, geo_t, comp_t = (dev.tensor(np.zeros((steps + 1, n), np.float32)) for _ in range(3))
    with dev.reusing():  # five pipelines for the whole chain
        step_algo = dev.algorithm(
            "langevin_step",
            [z_t, v_t, grad_t, bg_t, u_t, geo_t, comp_t],
            (groups(n), 1, 1),
            [n, d, dt, gamma, temperature, seed, 0, 1],
        )
        seq = dev.mgr.sequence().record(dev.upload(inputs))
        for step in range(steps + 1):
            if fixed_idx is None and step % knn_refresh == 0:
                record_topk(dev, seq, z_t, mu_t, scores_t, idx_t, best_t, n, mu.shape[0], d, k)
            record_splat(dev, seq, z_t, mu_t, la_t, ka_t, idx_t, splat_t, w_t, cos_t, grad_t, n, k, d, tau, step * n)
            move = 1.0 if step < steps else 0.0
            seq.record(kp.OpAlgoDispatch(step_algo, np.array([n, d, dt, gamma, temperature, seed, step, move], np.float32)))
        seq.record(dev.download([z_t, v_t, splat_t, geo_t, comp_t])).eval()

    def read(t, shape):
        return torch.from_numpy(t.data().reshape(shape).copy())

    splat, geo, comp = (read(t, (steps + 1, n)) for t in (splat_t, geo_t, comp_t))
    energies = {"total": splat + geo + comp, "splat": splat, "geo": geo, "comp": comp}
    return LangevinResult(z=read(z_t, (n, d)), v=read(v_t, (n, d)), energies=energies)


def langevin_step(
    dev: VulkanDevice, z: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, dt: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One noise-free step given the full Euclidean gradient (N, D): the kernel against
    ebm.langevin.langevin_step at temperature 0 (the parity test's entry point)."""
    n, d = z.shape
    zero = np.zeros((n, d), np.float32)
    z_t, v_t = dev.tensor(_f32(z)), dev.tensor(_f32(v))
    ts = [z_t, v_t, dev.tensor(_f32(grad)), dev.tensor(zero), dev.tensor(zero)]
    ts += [dev.tensor(np.zeros((1, n), np.float32)), dev.tensor(np.zeros((1, n), np.float32))]
    algo = dev.algorithm("langevin_step", ts, (groups(n), 1, 1), [n, d, dt, gamma, 0.0, 0, 0, 1])
    seq = dev.mgr.sequence().record(dev.upload(ts[:5])).record(dev.kp.OpAlgoDispatch(algo))
    seq.record(dev.download([z_t, v_t])).eval()
    return torch.from_numpy(z_t.data().reshape(n, d).copy()), torch.from_numpy(v_t.data().reshape(n, d).copy())
