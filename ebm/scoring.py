"""Exact likelihoods of held-out text: log p_E from the energy and log p_D from the decoder.

Both score the last T tokens of each window (B, L) -> (B, T). p_E is normalised over the whole
vocabulary in float32 whatever dtype the training heads use (docs/design.md, "Objective").
"""

from __future__ import annotations

import torch

from .backend import TORCH, Backend
from .memory import SplatMemory
from .model import EBMModel
from .sampler import SamplerSettings, sample

Tensor = torch.Tensor


@torch.no_grad()
def token_logprobs(
    model: EBMModel, tokens: Tensor, n_targets: int | None = None, backend: Backend = TORCH, memory: SplatMemory | None = None
) -> Tensor:
    """log p_E(target | c) for the last T tokens of each window: (B, L) -> (B, T); with `memory`,
    of p_E mixed with its memory splats (ebm.memory)."""
    cfg = model.cfg
    T = n_targets or cfg.targets_per_window
    ctx = model.contexts(tokens[:, :-1], T)
    g, u, h = (x.reshape(-1, cfg.latent_dim) for x in ctx)
    targets = tokens[:, -T:].reshape(-1)
    logp = target_logprobs(model, g, u, h, targets, backend)
    if memory is not None:
        logp = memory.log_prob(model.energy_direction(g, u), targets, logp)
    return logp.view(tokens.shape[0], T)


def target_logprobs(model: EBMModel, g: Tensor, u: Tensor, h: Tensor, targets: Tensor, backend: Backend = TORCH) -> Tensor:
    """log p_E(target | c) from contexts (N, D) x3 and targets (N,) -> (N,)."""
    logits = model.energy_logits(g, u, h, backend)  # (N, V)
    return torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)


@torch.no_grad()
def decoder_logprobs(
    model: EBMModel, tokens: Tensor, n_targets: int | None = None, steps: int | None = None, backend: Backend = TORCH
) -> Tensor:
    """log p_D(target | z*, c), z* the end of a noise-free run from g(c): (B, L) -> (B, T)."""
    cfg = model.cfg
    T = n_targets or cfg.targets_per_window
    g, u, h = (x.reshape(-1, cfg.latent_dim) for x in model.contexts(tokens[:, :-1], T))
    run = sample(model, g, g, u, SamplerSettings.flow(cfg, steps), h=h, backend=backend)
    logits = model.decoder(run.z, h, model.embeddings, bias=model.log_prior).logits
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, -T:].reshape(-1, 1))
    return logp.view(tokens.shape[0], T)
