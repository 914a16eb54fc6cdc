"""Underdamped Riemannian Langevin dynamics on the sphere (docs/design.md, "Sampling").

With momentum v in T_z, friction gamma, temperature T and step dt, one step is

    v <- v - dt grad_R E(z)                                   (kick)
    v <- e^(-gamma dt) v + sqrt((1 - e^(-2 gamma dt)) T) xi   (exact Ornstein-Uhlenbeck, xi tangent)
    z' <- exp_z(dt v);  v <- transport(z, z', v)              (geodesic drift)

whose stationary law is proportional to exp(-E(z) / T) up to O(dt). With T = 0 it is a
damped gradient flow (used for ppl_decoder). The energy callback returns a dict of named
terms (at least "total") and the Euclidean gradient; the sampler keeps every term's trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .geometry import exp_map, project, tangent_noise, transport

Tensor = torch.Tensor
EnergyFn = Callable[[Tensor, int], tuple[dict[str, Tensor], Tensor]]  # (z, step) -> (terms (B,), grad (B, D))


class LangevinResult(NamedTuple):
    z: Tensor  # (B, D) final points
    v: Tensor  # (B, D) final momenta
    energies: dict[str, Tensor]  # name -> (steps + 1, B), energy before each step and at the end
    path: Tensor | None = None  # (steps + 1, B, D) every point visited, when asked for


def langevin_step(
    z: Tensor, v: Tensor, grad: Tensor, dt: float, gamma: float, temperature: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """One step from (z, v) given the Euclidean gradient at z; returns (z', v')."""
    v = v - dt * project(z, grad)
    decay = math.exp(-gamma * dt)
    if temperature > 0:
        v = decay * v + tangent_noise(z, math.sqrt((1 - decay**2) * temperature), generator)
    else:
        v = decay * v
    z_new = exp_map(z, dt * v)
    v = project(z_new, transport(z, z_new, v))  # re-project against float drift
    return z_new, v


def langevin_sample(
    z0: Tensor,
    energy_fn: EnergyFn,
    steps: int,
    dt: float,
    gamma: float,
    temperature: float,
    generator: torch.Generator | None = None,
    v0: Tensor | None = None,
    keep_path: bool = False,
) -> LangevinResult:
    """Run `steps` steps from z0 (B, D); momenta start at v0 or at equilibrium N(0, T) on T_z."""
    z = z0
    if v0 is not None:
        v = project(z, v0)
    elif temperature > 0:
        v = tangent_noise(z, math.sqrt(temperature), generator)
    else:
        v = torch.zeros_like(z)
    traces: dict[str, list[Tensor]] = {}
    path = [z] if keep_path else None
    for step in range(steps + 1):
        terms, grad = energy_fn(z, step)
        for name, value in terms.items():
            traces.setdefault(name, []).append(value.detach())
        if step == steps:
            break
        z, v = langevin_step(z, v, grad, dt, gamma, temperature, generator)
        if path is not None:
            path.append(z)
    energies = {k: torch.stack(vals) for k, vals in traces.items()}
    return LangevinResult(z=z, v=v, energies=energies, path=torch.stack(path) if path is not None else None)
