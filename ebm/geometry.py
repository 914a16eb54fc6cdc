"""Riemannian geometry of the unit sphere S^(d-1) (docs/design.md, "Geometry").

Notation: x, y points (|x| = 1), u ambient vectors, v tangent vectors (x.v = 0).
Every function works on the last dimension and broadcasts over leading ones: (..., D).
Small-angle limits use Taylor branches selected with torch.where, so values and
gradients stay finite at |v| -> 0 and y -> x (as in geoopt's sphere).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _eps(x: Tensor) -> float:
    return 1e-6 if x.dtype in (torch.float16, torch.bfloat16, torch.float32) else 1e-12


def inner(x: Tensor, y: Tensor) -> Tensor:
    return (x * y).sum(-1, keepdim=True)  # (..., 1)


def normalize(u: Tensor) -> Tensor:
    return u / u.norm(dim=-1, keepdim=True).clamp_min(_eps(u))


def project(x: Tensor, u: Tensor) -> Tensor:
    """Tangent projection u - (x.u) x; the Riemannian gradient of f is project(x, grad f)."""
    return u - inner(x, u) * x


def _sinc(theta: Tensor) -> Tensor:
    small = theta < 1e-4
    safe = torch.where(small, torch.ones_like(theta), theta)
    return torch.where(small, 1 - theta**2 / 6, torch.sin(safe) / safe)


def exp_map(x: Tensor, v: Tensor) -> Tensor:
    """cos|v| x + sin|v| v/|v|, renormalised against float drift."""
    theta = v.norm(dim=-1, keepdim=True)
    return normalize(torch.cos(theta) * x + _sinc(theta) * v)


def dist(x: Tensor, y: Tensor) -> Tensor:
    """Geodesic distance, computed with atan2 so it is accurate near 0 and pi."""
    cos = inner(x, y).squeeze(-1)
    sin = project(x, y).norm(dim=-1)
    return torch.atan2(sin, cos)


def log_map(x: Tensor, y: Tensor) -> Tensor:
    """theta (y - (x.y)x) / |y - (x.y)x|; at y = -x any direction is a geodesic and the
    result is an arbitrary tangent vector of length pi."""
    w = project(x, y)  # (..., D) tangent at x, |w| = sin(theta)
    theta = dist(x, y).unsqueeze(-1)
    sin = w.norm(dim=-1, keepdim=True)
    scale = torch.where(sin > _eps(x), theta / sin.clamp_min(_eps(x)), 1 + theta**2 / 6)
    out = scale * w
    antipodal = (theta > torch.pi - 1e-3) & (sin < 1e-3)
    if antipodal.any():
        out = torch.where(antipodal, torch.pi * _any_tangent(x), out)
    return out


def _any_tangent(x: Tensor) -> Tensor:
    # A unit tangent at x: project the basis vector least aligned with x.
    idx = x.abs().argmin(dim=-1, keepdim=True)
    e = torch.zeros_like(x).scatter_(-1, idx, 1.0)
    return normalize(project(x, e))


def transport(x: Tensor, y: Tensor, v: Tensor) -> Tensor:
    """Parallel transport of v in T_x along the minimising geodesic to T_y.

    Closed form v - (y.v)/(1 + x.y) (x + y); it is an isometry T_x -> T_y.
    At y = -x the geodesic is not unique and the formula is singular, so the
    denominator is clamped (the caller never steps by pi).
    """
    denom = (1 + inner(x, y)).clamp_min(_eps(x))
    return v - inner(y, v) / denom * (x + y)


def tangent_noise(x: Tensor, sigma: float | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """sigma * xi with xi ~ N(0, I) projected on T_x."""
    xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return project(x, xi) * sigma


def perturb(x: Tensor, sigma: float | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A point exp_x(eps) with eps tangent Gaussian noise of scale sigma."""
    return exp_map(x, tangent_noise(x, sigma, generator))


def random_points(
    n: int, d: int, generator: torch.Generator | None = None, dtype=torch.float32, device: torch.device | None = None
) -> Tensor:
    return normalize(torch.randn(n, d, generator=generator, dtype=dtype, device=device))  # (n, d) uniform on S^(d-1)
