"""Splat energy on Vulkan: forward E_splat, weights and gradient in one dispatch; backward in
closed form, with the splat-mean gradient as a CSR row-sum dispatch (no atomics).

With w = softmax_j(log k_j), c_j = mu_j . z and upstream gradient g_n of E_n:
    dE/dz        = -sum_j w_j kappa_j mu_j          (from the forward dispatch)
    dE/dmu_s     = -sum_{(n,j): idx=s} g_n w_nj kappa_s z_n
    dE/dlog a_s  = -tau sum g_n w_nj,    dE/dkappa_s = -sum g_n w_nj (c_nj - 1)
"""

from __future__ import annotations

import numpy as np
import torch

from .device import MAX_DIM, VulkanDevice, groups

SCATTER_PASS = 60_000  # entries of one splat summed per pass: under lavapipe's 65,535-iteration loop limit

Tensor = torch.Tensor


def _np(t: Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def splat_forward(
    dev: VulkanDevice, z: Tensor, mu: Tensor, log_alpha: Tensor, kappa: Tensor, tau: float, idx: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(N, D), (K, D), (K,), (K,), (N, k) -> energy (N,), weights (N, k), cosines (N, k), grad (N, D)."""
    n, d = z.shape
    k = idx.shape[1]
    ins = [dev.tensor(_np(z)), dev.tensor(_np(mu)), dev.tensor(_np(log_alpha)), dev.tensor(_np(kappa))]
    ins.append(dev.tensor(idx.numpy().astype(np.uint32)))
    outs = [dev.tensor(np.zeros(shape, np.float32)) for shape in ((n,), (n, k), (n, k), (n, d))]
    with dev.reusing():
        seq = dev.mgr.sequence().record(dev.upload(ins))
        z_t, mu_t, log_alpha_t, kappa_t, idx_t = ins
        energy, weights, cosines, grad = outs
        record_splat(dev, seq, z_t, mu_t, log_alpha_t, kappa_t, idx_t, energy, weights, cosines, grad, n, k, d, tau, 0)
        seq.record(dev.download(outs)).eval()
    shapes = ((n,), (n, k), (n, k), (n, d))
    e, w, c, g = (torch.from_numpy(t.data().reshape(shape).copy()) for t, shape in zip(outs, shapes))
    return e, w, c, g


def record_splat(dev: VulkanDevice, seq, z, mu, log_alpha, kappa, idx, energy, weight, cosine, grad, n, k, d, tau, offset):
    """Append energy (at energy[offset:offset + n]), weights, cosines and gradient to a kp sequence."""
    if k > 65:  # 64 neighbours, plus the flat splat of the context term (ebm.attractors.as_splat_energy)
        raise ValueError("the Vulkan splat kernel takes at most 64 neighbours (knn_k <= 64)")
    if d > MAX_DIM:
        raise ValueError(f"the Vulkan splat kernel takes latent_dim <= {MAX_DIM}, not {d}")
    kp = dev.kp
    for first in range(0, n, 65535):  # a dispatch dimension's limit
        count = min(65535, n - first)
        push = [k, d, tau, offset, first]
        algo = dev.algorithm("splat_energy", [z, mu, log_alpha, kappa, idx, energy, weight, cosine], (count, 1, 1), push)
        seq.record(kp.OpAlgoDispatch(algo, np.array(push, np.float32)))
        grad_algo = dev.algorithm("splat_grad", [mu, kappa, idx, weight, grad], (groups(d), count, 1), [k, d, first])
        seq.record(kp.OpAlgoDispatch(grad_algo, np.array([k, d, first], np.float32)))


def scatter_rows(dev: VulkanDevice, x: Tensor, idx: Tensor, coef: Tensor, n_rows: int) -> Tensor:
    """out[s] = sum over (n, j) with idx[n, j] = s of coef[n, j] * x[n]: (N, D), (N, k), (N, k) -> (S, D)."""
    d = x.shape[1]
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=n_rows)
    offsets = torch.zeros(n_rows + 1, dtype=torch.long, device=idx.device)
    offsets[1:] = torch.cumsum(counts, 0)
    rows = order // idx.shape[1]  # the point each (n, j) pair belongs to
    kp = dev.kp
    ts = [dev.tensor(_np(x)), dev.tensor(offsets.numpy().astype(np.uint32)), dev.tensor(rows.numpy().astype(np.uint32))]
    ts += [dev.tensor(_np(coef.reshape(-1)[order])), dev.tensor(np.zeros((n_rows, d), np.float32))]
    longest = int(counts.max()) if n_rows else 0
    with dev.reusing():  # the result is written by the first pass, not uploaded
        seq = dev.mgr.sequence().record(dev.upload(ts[:-1]))
        for first in range(0, n_rows, 65535):  # the y dispatch dimension's limit
            count = min(65535, n_rows - first)
            algo = dev.algorithm("scatter_rows", ts, (groups(d), count, 1), [first, d, 0, SCATTER_PASS])
            for p_first in range(0, max(longest, 1), SCATTER_PASS):
                seq.record(kp.OpAlgoDispatch(algo, np.array([first, d, p_first, SCATTER_PASS], np.float32)))
        seq.record(dev.download(ts[-1:])).eval()
    return torch.from_numpy(ts[-1].data().reshape(n_rows, d).copy())


class SplatEnergy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, mu, log_alpha, kappa, tau: float, idx: Tensor, dev: VulkanDevice):
        energy, weights, cosines, grad_z = splat_forward(dev, z, mu, log_alpha, kappa, tau, idx)
        ctx.save_for_backward(z, kappa, idx, weights, cosines, grad_z)
        ctx.tau, ctx.dev, ctx.n_splats = tau, dev, mu.shape[0]
        return energy

    @staticmethod
    def backward(ctx, grad_e: Tensor):
        z, kappa, idx, weights, cosines, grad_z = ctx.saved_tensors
        gw = grad_e[:, None] * weights  # (N, k)
        k_splats = ctx.n_splats
        grad_mu = grad_log_alpha = grad_kappa = None
        if ctx.needs_input_grad[1]:
            grad_mu = scatter_rows(ctx.dev, z, idx, -gw * kappa[idx], k_splats)
        if ctx.needs_input_grad[2]:
            grad_log_alpha = torch.zeros(k_splats, device=z.device).index_add_(0, idx.reshape(-1), (-ctx.tau * gw).reshape(-1))
        if ctx.needs_input_grad[3]:
            grad_kappa = torch.zeros(k_splats, device=z.device).index_add_(0, idx.reshape(-1), (-gw * (cosines - 1)).reshape(-1))
        grad_z_out = grad_e[:, None] * grad_z if ctx.needs_input_grad[0] else None
        return grad_z_out, grad_mu, grad_log_alpha, grad_kappa, None, None, None


def splat_energy(dev: VulkanDevice, z: Tensor, mu: Tensor, log_alpha: Tensor, kappa: Tensor, tau: float, idx: Tensor) -> Tensor:
    """E_splat (N,) differentiable in z, mu, log_alpha and kappa; the same function as
    ebm.energy.splat_energy(splat_log_kernels(...)) computed on the Vulkan device."""
    return SplatEnergy.apply(z, mu, log_alpha, kappa, float(tau), idx, dev)
