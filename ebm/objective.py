"""The training loss, L = L_nll + lambda_dsm L_dsm + lambda_dec L_dec + lambda_bal L_balance,
built from small named terms that the benchmarks time one by one (docs/design.md, "Objective").

A window `tokens` (B, L) predicts its last T tokens; N = B * T targets. Each term reads one
`Targets` view of the batch, so the embeddings are normalised and the contexts encoded once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .attractors import attractor_energy_and_grad, log_normaliser, pair_points, target_gain
from .backend import TORCH, Backend
from .context import ContextOut
from .energy import context_energies, context_grad, splat_energy_and_grad, vocab_logit_terms
from .geometry import project
from .losses import dsm_loss, noisy_targets, sample_noise_levels
from .memory import in_batch_log_prob, mix
from .mixture import mixture_energy_and_grad, target_log_prob
from .model import EBMModel, Retrieval
from .ops import gather_dot, head_dtype, linear_cross_entropy, linear_logsumexp, rounded, target_scores
from .shard import SOLO, Shard

Tensor = torch.Tensor


class Targets(NamedTuple):
    """One batch as every term sees it."""

    emb: Tensor  # (V, D) unit embeddings, normalised once: the largest tensor of the step
    beta: Tensor  # ()
    g: Tensor  # (N, D) unit direction from context
    u: Tensor  # (N, D) compositional context vector
    h: Tensor  # (N, D) context summary for the decoder
    ids: Tensor  # (N,) target token ids
    splat_vocab: Tensor | None  # (V,) E_splat(e_w) of every token: the token term only
    retrieval: Retrieval | None  # the splats each context calls on: the context term only
    base_lse: Tensor | None = None  # (N,) log Z_base(c), once the NLL has computed it: the mixture's chains reuse it


class Noisy(NamedTuple):
    """Targets moved along geodesics by angles sigma: score matching's data."""

    x: Tensor  # (N, D) noisy points
    score: Tensor  # (N, D) target score at x
    sigma: Tensor  # (N, 1)


class StepResult(NamedTuple):
    loss: Tensor
    metrics: dict[str, Tensor]  # detached 0-d tensors, read on the host once per step by the caller
    target_points: Tensor  # (N, D) detached target embeddings, for the SOC buffer
    target_energy: Tensor  # (N,) detached total energy at each target
    target_nbr: Tensor  # (N, k) neighbour splat ids of each target, for usage statistics


def targets_of(model: EBMModel, tokens: Tensor, n_targets: int | None = None, backend: Backend = TORCH) -> Targets:
    """Encode the contexts of the last T positions of each window: (B, L) -> Targets."""
    cfg = model.cfg
    T = n_targets or cfg.targets_per_window
    emb, beta = model.embeddings, model.beta
    g, u, h = (x.reshape(-1, cfg.latent_dim) for x in encode(model, tokens[:, :-1], T, emb))
    splat_vocab = model.vocab_splat_energy(emb, backend) if cfg.splat_term == "token" else None
    retrieval = model.retrieve(beta * g + u, h) if cfg.retrieves_splats else None
    return Targets(emb, beta, g, u, h, tokens[:, -T:].reshape(-1), splat_vocab, retrieval)


def encode(model: EBMModel, inputs: Tensor, last: int, emb: Tensor) -> ContextOut:
    """The contexts of the last `last` positions of (B, L) inputs, as training computes them: in
    the heads' dtype (bf16 where native: encoder forward + backward 0.36 -> 0.28 s at the cpu
    preset), returned in float32. Scoring encodes in float32 (ebm.scoring)."""
    dtype = head_dtype(model.cfg.head_dtype, emb.device)
    with torch.autocast(emb.device.type, dtype=dtype, enabled=dtype != torch.float32):
        ctx = model.contexts(inputs, last, emb)
    return ContextOut(*(x.float() for x in ctx))


def energy_nll(model: EBMModel, t: Targets) -> Tensor:
    """-log p_E(w | c), exact over the whole vocabulary, blockwise (no (N, V) logits held):
    the base softmax, times 1 + B_w(c) over its normaliser under the context term."""
    return target_nll(model, t)[0].mean()


def target_nll(model: EBMModel, t: Targets) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """-log p_E(w | c) at each target (N,); under a retrieving splat term also what the splats
    add to it and log Z_base(c) (retrieval_nll), else None for both."""
    cfg = model.cfg
    c, bias = vocab_logit_terms(t.beta * t.g + t.u, model.vocab_bias(t.splat_vocab), cfg.vocab_temperature)  # (N, D), (V,)
    if t.retrieval is not None:
        return retrieval_nll(model, t, c, bias)
    dtype = head_dtype(cfg.head_dtype, t.emb.device)
    return linear_logsumexp(c, t.emb, bias, dtype) - target_scores(c, t.emb, t.ids, bias, dtype), None, None


def memory_nll(model: EBMModel, t: Targets, nll: Tensor, per_window: int) -> Tensor:
    """TRIME's loss, -log((1 - lambda) p_E + lambda p_memory) with the batch's other windows as
    memory splats keyed as ebm.memory keys them: the evaluation-time mixture, trained, so that
    contexts sharing a next token point the same way (docs/design.md, "Memory splats").
    nll (N,): -log p_E at each target. Windows are this process's (or micro-batch's) own."""
    cfg = model.cfg
    window = torch.arange(nll.shape[0], device=nll.device) // per_window  # (N,)
    if nll.shape[0] <= per_window:  # one window: no memory to recall from
        log_memory = torch.full_like(nll, -math.inf)
    else:
        log_memory = in_batch_log_prob(model.energy_direction(t.g, t.u), t.ids, window, cfg.mem_kappa)
    return -mix(-nll, log_memory, cfg.mem_weight).mean()


def retrieval_nll(model: EBMModel, t: Targets, c: Tensor, bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """-log p_E(w | c) (N,) under a retrieving splat term, what the splats add to the target's
    log-probability, log p_E(w | c) - log p_base(w | c) (N,), and log Z_base(c) (N,): scaled
    logits c (N, D), bias (V,)."""
    assert t.retrieval is not None
    dtype = head_dtype(model.cfg.head_dtype, t.emb.device)
    lse = linear_logsumexp(c, t.emb, bias, dtype)  # (N,)
    e = model.attractor_entries(t.retrieval, t.emb)
    base_nll = lse - target_scores(c, t.emb, t.ids, bias, dtype)
    if t.retrieval.log_rest is not None:  # the mixture: pi_0 p_base + sum_i pi_i q_i
        nll = -target_log_prob(t.retrieval.log_rest, -base_nll, e, t.ids)
    else:
        base_logp = gather_dot(rounded(c, dtype), rounded(t.emb, dtype), e.ids) + bias[e.ids] - lse[:, None]  # (N, M)
        nll = base_nll - target_gain(e, t.ids) + log_normaliser(base_logp, e)
    return nll, base_nll - nll, lse


def noisy_targets_of(model: EBMModel, t: Targets, generator: torch.Generator | None = None, shard: Shard = SOLO) -> Noisy:
    """Noisy copies of the target embeddings (data: no gradient flows through them)."""
    n, device = t.ids.shape[0] * shard.slices, t.emb.device  # draws for the global batch (ebm.shard)
    sigma = shard.take(sample_noise_levels(n, model.cfg.noise_levels, generator, device))
    xi = shard.take(torch.randn(n, t.emb.shape[1], generator=generator, device=device))
    x, score = noisy_targets(t.emb[t.ids].detach(), sigma, xi)
    return Noisy(x, score, sigma)


def score_matching(model: EBMModel, t: Targets, noisy: Noisy, shard: Shard = SOLO) -> Tensor:
    """Denoising score matching of -grad_R E / T at the noisy points (ebm.losses)."""
    grad = splat_grad(model, t, noisy.x) + context_grad(t.g, t.beta, t.u)
    return dsm_loss(project(noisy.x, grad), noisy.score, noisy.sigma, max(model.cfg.langevin_T, 1e-6), shard)


def splat_grad(model: EBMModel, t: Targets, x: Tensor) -> Tensor:
    """Euclidean gradient of the splat term at points x (N, D) near each context's target."""
    s, cfg = model.splats, model.cfg
    if t.retrieval is not None and t.retrieval.log_rest is not None:
        return mixture_grad(model, t, x)
    if t.retrieval is not None:
        r = t.retrieval
        return attractor_energy_and_grad(x, s.mu, s.kappa, float(s.tau), r.log_match, r.idx, cfg.vocab_temperature)[1]
    if t.splat_vocab is not None:
        return splat_energy_and_grad(x, s.mu, s.log_alpha, s.kappa, float(s.tau), model.neighbours.search(s, x))[1]
    return torch.zeros_like(x)


def mixture_grad(model: EBMModel, t: Targets, x: Tensor) -> Tensor:
    """Euclidean gradient of the mixture's splat part at points x (N, D) (ebm.mixture)."""
    s, r = model.splats, t.retrieval
    assert r is not None
    log_match = model.continuous_match(r, t.beta * t.g + t.u, t.base_lse)
    geo, comp = context_energies(x, t.g, t.beta, t.u)
    base = (geo + comp, context_grad(t.g, t.beta, t.u))
    return mixture_energy_and_grad(x, base, s.mu, s.kappa, float(s.tau), log_match, r.idx, model.cfg.vocab_temperature)[1]


def decoder_latents(noisy: Noisy, t: Targets, generator: torch.Generator | None = None, shard: Shard = SOLO) -> Tensor:
    """Half the rows decode noisy targets, half decode g(c): the sampler's start point,
    near where noise-free sampling ends (docs/design.md, "Decoder")."""
    draw = torch.rand(noisy.x.shape[0] * shard.slices, 1, generator=generator, device=noisy.x.device)
    use_g = shard.take(draw) < 0.5
    return torch.where(use_g, t.g.detach(), noisy.x)


def decoder_nll(model: EBMModel, t: Targets, latents: Tensor, shard: Shard = SOLO) -> tuple[Tensor, Tensor]:
    """-log p_D(w | z, c) and the router's load-balancing loss. The decoder reads the energy
    model without training it: no gradient reaches the embeddings, the token prior or the
    context encoder, which its loss cost p_E 9% at 300 steps (docs/design-notes.md section 4)."""
    mixed = model.decoder.mix(latents.detach(), t.h.detach(), shard)
    heads = head_dtype(model.cfg.head_dtype, t.emb.device)
    nll = linear_cross_entropy(mixed.output, t.emb.detach(), t.ids, model.log_prior.detach(), dtype=heads)
    return nll, mixed.balance


def thinned(t: Targets, stride: int, per_window: int, shard: Shard = SOLO) -> Targets:
    """Every stride-th target of each window, at offset -window (mod stride), so that a batch of
    stride or more windows covers every position: (N rows) -> (N / stride rows). Score matching
    and the decoder train on these (aux_stride); p_E's NLL keeps every target. Windows are counted
    across the global batch (ebm.shard), so the rows kept, and the noise drawn for them, do not
    depend on how the batch is split."""
    if stride == 1:
        return t
    n = t.ids.shape[0]
    row = torch.arange(n, device=t.ids.device)
    first_window = (shard.rank * shard.parts + shard.part) * (n // per_window)
    keep = row[(row // per_window + first_window + row % per_window) % stride == 0]  # (N / stride,)
    r = t.retrieval
    if r is not None:
        r = r._replace(
            q=r.q[keep], idx=r.idx[keep], log_match=r.log_match[keep], log_rest=None if r.log_rest is None else r.log_rest[keep]
        )
    lse = None if t.base_lse is None else t.base_lse[keep]
    return t._replace(g=t.g[keep], u=t.u[keep], h=t.h[keep], ids=t.ids[keep], retrieval=r, base_lse=lse)


def training_loss(
    model: EBMModel,
    tokens: Tensor,
    generator: torch.Generator | None = None,
    n_targets: int | None = None,
    backend: Backend = TORCH,
    shard: Shard = SOLO,
) -> StepResult:
    """The whole objective for one batch of windows (B, L), or for this process's rows of a
    global batch split over data-parallel processes (`shard`, ebm.shard)."""
    cfg = model.cfg
    t = targets_of(model, tokens, n_targets, backend)
    per_window = cfg.targets_per_window if n_targets is None else n_targets
    nll_t, splat_gain, lse = target_nll(model, t)
    nll, t = nll_t.mean(), t._replace(base_lse=lse)
    aux = thinned(t, cfg.aux_stride, per_window, shard)
    noisy = noisy_targets_of(model, aux, generator, shard)
    dsm = score_matching(model, aux, noisy, shard)
    dec, balance = decoder_nll(model, aux, decoder_latents(noisy, aux, generator, shard), shard)
    loss = nll + cfg.lambda_dsm * dsm + cfg.lambda_dec * dec + cfg.lambda_bal * balance
    extra = {}
    if cfg.lambda_mem > 0:
        extra["mem_nll"] = memory_nll(model, t, nll_t, per_window)
        loss = loss + cfg.lambda_mem * extra["mem_nll"]

    e_t = t.emb[t.ids].detach()
    geo_t, comp_t = context_energies(e_t, t.g, t.beta, t.u)
    splat_t, points, nbr = splat_at_targets(model, t, e_t, splat_gain)
    total_t = (splat_t + geo_t + comp_t).detach()
    terms = {"loss": loss, "nll": nll, "dsm": dsm, "dec": dec, "balance": balance, "beta": t.beta} | extra
    means = {"energy": total_t, "energy_splat": splat_t, "energy_geo": geo_t, "energy_comp": comp_t}
    metrics = {k: v.detach() for k, v in terms.items()} | {k: v.detach().mean() for k, v in means.items()}
    return StepResult(loss, metrics, points, total_t, nbr)


@torch.no_grad()
def splat_at_targets(model: EBMModel, t: Targets, e_t: Tensor, splat_gain: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """For the splat upkeep: the splat energy at each target (N,), the point a splat should sit
    at to explain it (N, D), and the splats it used (N, k). Under a retrieving term the energy
    is -T (log p_E(w | c) - log p_base(w | c)) = -T splat_gain: what the splats, normaliser
    included, do to the target's log-probability."""
    if t.retrieval is not None:
        assert splat_gain is not None
        return -model.cfg.vocab_temperature * splat_gain.detach(), pair_points(t.retrieval.q.detach(), e_t), t.retrieval.idx
    if t.splat_vocab is not None:
        return t.splat_vocab[t.ids].detach(), e_t, model.neighbours.vocab_nbr[t.ids]
    return torch.zeros_like(t.ids, dtype=e_t.dtype), e_t, t.ids.new_zeros(t.ids.shape[0], 0)


def combine(parts: list[StepResult]) -> StepResult:
    """Micro-batches of one step (gradient accumulation) as one result: mean losses and
    metrics, the per-target tensors concatenated in batch order."""
    if len(parts) == 1:
        return parts[0]
    metrics = {name: _mean([p.metrics[name] for p in parts]) for name in parts[0].metrics}
    per_target = (torch.cat([getattr(p, f) for p in parts]) for f in ("target_points", "target_energy", "target_nbr"))
    return StepResult(_mean([p.loss.detach() for p in parts]), metrics, *per_target)


def _mean(values: list[Tensor]) -> Tensor:
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total / len(values)


def host_metrics(metrics: dict[str, Tensor], reduce: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
    """The step's scalars as floats in one device-to-host copy, plus ppl = exp(nll); `reduce`
    maps the stacked (n,) vector first (the mean over data-parallel replicas)."""
    names = list(metrics)
    values = torch.stack([metrics[k].float() for k in names])
    out = dict(zip(names, (values if reduce is None else reduce(values)).tolist()))
    return {"loss": out.pop("loss"), "nll": out["nll"], "ppl": math.exp(min(out["nll"], 50.0)), **out}
