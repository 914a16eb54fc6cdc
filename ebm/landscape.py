"""The sampler's landscape: a latent on the sphere whose Gibbs law gives back p_E's tokens.

Each candidate token w of a context is the centre of a vMF basin of concentration kappa,
weighted by its tempered, filtered logit l_w (temperature, top-k, top-p as in direct sampling):

    p(w, z | c)  ~  exp(l_w + kappa e_w . z)

Every e_w is a unit vector, so the vMF normalisers are equal and three things are exact:

    the token marginal   p(w | c) = softmax(l)_w            direct sampling's law
    the latent marginal  p(z | c) ~ sum_w exp(l_w + kappa e_w . z)   a vMF mixture
    the token at z       p(w | z, c) = softmax(l + kappa E z)_w     "the energy at z*"

So Langevin on U(z) = -log sum_w exp(l_w - kappa (1 - e_w . z)), the soft minimum over
candidates of a token's energy plus kappa times its distance from z, followed by a draw from
p(w | z*, c), samples p_E exactly once the chain has mixed; a chain temperature below 1
sharpens the choice among basins and leaves the draw within a basin alone. The Euclidean
gradient of U is -kappa times the posterior mean of the candidates' embeddings.

Why this and not the model's own latent energy: the end point of a chain on that energy
carries no information p_E lacks, so a decoder reading it draws from a weaker estimate of the
same conditional (docs/design-notes.md, sections 4 and 14).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

Tensor = torch.Tensor


class Landscape(NamedTuple):
    tokens: Tensor  # (B, K) candidate ids
    logits: Tensor  # (B, K) tempered, filtered logits l; -inf pads rows with fewer candidates
    points: Tensor  # (B, K, D) their embeddings
    kappa: float  # concentration of every basin


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Temperature, then top-k and nucleus filtering of (..., V) logits; dropped tokens get -inf.
    Temperature 0 keeps the argmax alone."""
    if temperature <= 0:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.argmax(-1, keepdim=True), True)
        return torch.zeros_like(logits).masked_fill(~keep, float("-inf"))
    logits = logits / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix with mass >= top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return logits


def landscape(filtered: Tensor, embeddings: Tensor, kappa: float) -> Landscape:
    """The landscape of filtered logits (B, V) over embeddings (V, D): only candidates that
    survived the filter are basins."""
    k = int(torch.isfinite(filtered).sum(-1).max())
    top = filtered.topk(k, -1)
    return Landscape(top.indices, top.values, embeddings[top.indices], kappa)


def posterior_logits(z: Tensor, land: Landscape) -> Tensor:
    """log p(w | z, c) up to a constant: (B, D) -> (B, K)."""
    return land.logits + land.kappa * torch.einsum("bkd,bd->bk", land.points, z)


def landscape_energy_and_grad(z: Tensor, land: Landscape) -> tuple[dict[str, Tensor], Tensor]:
    """U at z (B, D) with its parts, and its Euclidean gradient (B, D). Parts, each (B,):
    total U; token, the posterior's mean of -l; distance, its mean of kappa (1 - e_w . z)."""
    scores = posterior_logits(z, land) - land.kappa  # (B, K): l_w - kappa (1 - e_w . z)
    post = torch.softmax(scores, -1)
    finite = torch.isfinite(land.logits)  # -inf pads have weight 0 but would make 0 * inf

    def mean(x: Tensor) -> Tensor:
        return (post * torch.where(finite, x, torch.zeros_like(x))).sum(-1)

    terms = {"total": -torch.logsumexp(scores, -1), "token": mean(-land.logits), "distance": mean(land.logits - scores)}
    return terms, -land.kappa * torch.einsum("bk,bkd->bd", post, land.points)


def draw(z: Tensor, land: Landscape, generator: torch.Generator | None = None) -> Tensor:
    """One token id per row from p(w | z, c): (B, D) -> (B,)."""
    pick = torch.multinomial(torch.softmax(posterior_logits(z, land), -1), 1, generator=generator)  # (B, 1)
    return land.tokens.gather(-1, pick).squeeze(-1)
