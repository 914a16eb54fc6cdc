"""EBMModel: the learned parts. Token embeddings on the sphere, the context encoder, the
splat store with its neighbour table, beta of E_geo and the mixture-of-experts decoder.

What is done with them lives beside it: the training loss in ebm.objective, exact
likelihoods in ebm.scoring, sampling and generation in ebm.sampler; where the heavy kernels
run is an ebm.backend value passed to each (docs/design.md, "Module map").

Notation: B batch, L window length, T targets per window, V vocabulary, D latent_dim.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .attractors import Entries, entries, log_matches, pair_points, target_gain, top_cosines, vocab_gains
from .backend import TORCH, Backend
from .config import EBMConfig
from .context import ContextOut, context_encoder
from .decoder import MoEDecoder
from .energy import splat_log_kernels
from .geometry import normalize
from .mixture import (
    MixtureWeights,
    component_log_probs,
    component_logits,
    continuous_log_match,
    mixture_entries,
    mixture_weights,
    target_responsibility,
    vocab_log_probs,
)
from .neighbours import NeighbourTable
from .ops import linear_logsumexp
from .splats import SplatStore

Tensor = torch.Tensor


class Retrieval(NamedTuple):
    """The splats a context calls on (ebm.attractors)."""

    q: Tensor  # (N, D) unit query
    idx: Tensor  # (N, k) retrieved splat ids
    log_match: Tensor  # (N, k) log gamma r_i(c), or log pi_i(c) under the mixture; differentiable
    log_rest: Tensor | None = None  # (N,) log pi_0(c), the base softmax's weight: the mixture only


def initial_splat_means(embeddings: Tensor, n: int, token_freq: Tensor | None = None, seed: int = 0) -> Tensor:
    """Splat means at the embeddings of the n most frequent tokens, else k-means centroids."""
    if token_freq is not None and n <= embeddings.shape[0]:
        return embeddings[torch.argsort(token_freq, descending=True, stable=True)[:n]].clone()
    gen = torch.Generator().manual_seed(seed)
    if embeddings.shape[0] >= 40 * n:  # enough points per centroid for k-means to mean something
        from .pretrained import kmeans_centroids

        return kmeans_centroids(embeddings, n, seed=seed)
    if n <= embeddings.shape[0]:
        return embeddings[torch.randperm(embeddings.shape[0], generator=gen)[:n]].clone()  # host: before the model moves
    extra = torch.randn(n - embeddings.shape[0], embeddings.shape[1], generator=gen)  # host: before the model moves
    return torch.cat([embeddings, normalize(extra)])


def initial_log_null(cfg: EBMConfig) -> float:
    """log k_0 at the start. Boost: -3, so that contexts that match no key well stay unboosted.
    Mixture: log k + 3, so that the base softmax starts with pi_0 >= 0.95 whatever the k kernels
    (each <= alpha = 1) say: untrained components that took most of the mass cost the first
    mixture run 13% perplexity at 300 steps (docs/benchmarks.md, "Splat mixture")."""
    return math.log(cfg.knn_k) + 3.0 if cfg.splat_term == "mixture" else -3.0


def unigram_log_prior(token_freq: Tensor | None, vocab_size: int) -> Tensor:
    """Add-one smoothed log unigram probabilities (V,); zeros (a uniform prior) without counts."""
    if token_freq is None:
        return torch.zeros(vocab_size)  # host: built before the model moves
    counts = token_freq.double()[:vocab_size] + 1.0
    return (counts / counts.sum()).log().float()


class EBMModel(nn.Module):
    def __init__(
        self,
        cfg: EBMConfig,
        n_splats: int | None = None,
        token_init: Tensor | None = None,
        splat_init: Tensor | None = None,
        token_freq: Tensor | None = None,
        seed: int | None = None,
    ):
        """Splats start at `splat_init`, else at the embeddings of the most frequent tokens
        (`token_freq`), else at k-means centroids of the embeddings."""
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
        n_splats = n_splats or cfg.n_splats_init
        if token_init is None:
            token_init = torch.randn(cfg.vocab_size, cfg.latent_dim, generator=gen)
        self.token_raw = nn.Parameter(normalize(token_init.float()).clone())
        if splat_init is None:
            splat_init = initial_splat_means(self.embeddings.detach(), n_splats, token_freq, seed=cfg.seed)
        self.splats = SplatStore(cfg, n_splats, splat_init)
        self.context = context_encoder(cfg)
        self.log_beta = nn.Parameter(torch.tensor(math.log(cfg.geo_beta)))
        # log pi_w, the token prior of both heads: from training-split frequencies, so step 0
        # predicts at unigram perplexity instead of ~V (docs/design.md, "Token prior").
        self.log_prior = nn.Parameter(unigram_log_prior(token_freq, cfg.vocab_size))
        self.decoder = MoEDecoder(cfg)
        self.neighbours = NeighbourTable(cfg)
        # The query starts at the direction of the context's own energy, beta g + u; this learned
        # correction from the context summary lets a context call splats away from it.
        self.query = nn.Linear(cfg.latent_dim, cfg.latent_dim, bias=False)
        nn.init.zeros_(self.query.weight)
        self.log_strength = nn.Parameter(torch.zeros(()))  # log gamma of the attractors (ebm.attractors)
        self.log_null = nn.Parameter(torch.tensor(initial_log_null(cfg)))
        self._register_load_state_dict_pre_hook(_split_legacy_extra_state)

    @property
    def embeddings(self) -> Tensor:
        return normalize(self.token_raw)  # (V, D)

    @property
    def beta(self) -> Tensor:
        return self.log_beta.exp()

    def contexts(self, inputs: Tensor, last: int, embeddings: Tensor | None = None) -> ContextOut:
        """inputs (B, L) token ids -> contexts of the last `last` positions, each (B, last, D)."""
        emb = self.embeddings if embeddings is None else embeddings
        return self.context(emb[inputs], last)

    def refresh_neighbours(self, step: int | None = None, force: bool = False) -> bool:
        """Rebuild the vocabulary's neighbour table when due (every knn_refresh_interval steps)."""
        return self.neighbours.refresh(self.splats, self.embeddings, step, force)

    def vocab_bias(self, splat_vocab: Tensor | None) -> Tensor:
        """Logit bias of p_E(w | c) = softmax_w(log pi_w - E(e_w; c) / T): (V,) -> (V,); the
        context-free splat energy of every token under the token term, else the prior alone."""
        return self.log_prior if splat_vocab is None else self.log_prior - splat_vocab / self.cfg.vocab_temperature

    def energy_direction(self, g: Tensor, u: Tensor) -> Tensor:
        """normalize(beta g + u) (N, D): where a context's energy points, the key of its memory splat."""
        return normalize(self.beta * g + u)

    def retrieve(self, c: Tensor, h: Tensor) -> Retrieval:
        """The splats each context calls on: c = beta g + u (N, D), h (N, D) -> Retrieval."""
        s = self.splats
        q = normalize(c + self.query(h))  # (N, D)
        # (q, 0) against positions (key, mu) / sqrt 2 ranks the splats by key . q alone
        idx = self.neighbours.search(s, torch.cat([q.detach(), torch.zeros_like(q)], -1))
        log_kernels = splat_log_kernels(q, s.key, s.log_alpha, s.kappa, float(s.tau), idx)
        if self.cfg.splat_term == "mixture":
            w = mixture_weights(log_kernels, self.log_null)
            return Retrieval(q, idx, w.log_pi, w.log_rest)
        return Retrieval(q, idx, log_matches(log_kernels, self.log_strength, self.log_null))

    def chain_splats(self, c: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """What a Langevin chain of each context sums: retrieved ids and log_match (B, k) each,
        log gamma r_i under the boost and ebm.mixture.continuous_log_match under the mixture;
        none (k = 0) with the splats off."""
        if not self.cfg.retrieves_splats:
            return torch.zeros(c.shape[0], 0, dtype=torch.long, device=c.device), c.new_zeros(c.shape[0], 0)
        r = self.retrieve(c, h)
        return r.idx, r.log_match if r.log_rest is None else self.continuous_match(r, c)

    def continuous_match(self, r: Retrieval, c: Tensor, base_lse: Tensor | None = None) -> Tensor:
        """The mixture's log_match (N, k) for the continuous energy of contexts c (N, D)
        (ebm.mixture); base_lse (N,) where the caller has log Z_base(c) already."""
        assert r.log_rest is not None
        emb, s, T = self.embeddings, self.splats, self.cfg.vocab_temperature
        top = self.neighbours.current(s, emb).splat_top
        log_norm = torch.logsumexp(component_logits(s.kappa, float(s.tau), top_cosines(s.mu, emb, top)), -1)  # (K,)
        if base_lse is None:
            base_lse = linear_logsumexp(c / T, emb, self.vocab_bias(None))  # (N,), blockwise
        return continuous_log_match(MixtureWeights(r.log_rest, r.log_match), log_norm, r.idx, base_lse)

    @torch.no_grad()
    def splat_points(self, tokens: Tensor, n_targets: int) -> Tensor:
        """The last n_targets targets of windows (B, L) where splats live: their embeddings, or
        under the context term the (query, embedding) pairs -> (N, splat_dim)."""
        e = self.embeddings[tokens[:, -n_targets:].reshape(-1)]
        if not self.splats.paired:
            return e
        g, u, h = (x.reshape(-1, self.cfg.latent_dim) for x in self.contexts(tokens[:, :-1], n_targets))
        return pair_points(self.retrieve(self.beta * g + u, h).q, e)

    def attractor_entries(self, r: Retrieval, embeddings: Tensor | None = None) -> Entries:
        """The (splat, top token) pairs of each context and their log gains (ebm.attractors)."""
        emb = self.embeddings if embeddings is None else embeddings
        s, top = self.splats, self.neighbours.current(self.splats, emb).splat_top
        top_cos = top_cosines(s.mu, emb, top)
        if self.cfg.splat_term == "mixture":
            return mixture_entries(r.log_match, component_log_probs(s.kappa, float(s.tau), top_cos), top, r.idx)
        return entries(r.log_match, s.kappa, float(s.tau), top, top_cos, r.idx)

    def vocab_splat_energy(self, embeddings: Tensor | None = None, backend: Backend = TORCH) -> Tensor:
        """E_splat(e_w) for every token, (V,), differentiable in embeddings and splats."""
        emb = self.embeddings if embeddings is None else embeddings
        return backend.splat_energy(self.splats, emb, self.neighbours.current(self.splats, emb).vocab_nbr)

    def energy_logits(self, g: Tensor, u: Tensor, h: Tensor, backend: Backend = TORCH) -> Tensor:
        """Unnormalised log p_E(w | c) = log pi_w - E(e_w; c) / T of every token, in float32 whatever
        the training heads use: contexts (N, D) x3 -> (N, V)."""
        cfg, emb = self.cfg, self.embeddings
        c = self.beta * g + u
        splat_vocab = self.vocab_splat_energy(emb, backend) if cfg.splat_term == "token" else None
        logits = backend.vocab_logits(emb, self.vocab_bias(splat_vocab), c, cfg.vocab_temperature)
        if cfg.splat_term == "context":
            logits = logits + vocab_gains(self.attractor_entries(self.retrieve(c, h), emb), cfg.vocab_size)
        if cfg.splat_term == "mixture":
            r = self.retrieve(c, h)
            assert r.log_rest is not None
            logits = vocab_log_probs(r.log_rest, torch.log_softmax(logits, -1), self.attractor_entries(r, emb))
        return logits

    @torch.no_grad()
    def splat_share(self, tokens: Tensor, n_targets: int) -> Tensor:
        """The share of p_E(w | c) that the splats give each of the last n_targets targets of
        windows (B, L) -> (N,): 1 - pi_0 p_base(w) / p_E(w) under the mixture, B_w / (1 + B_w)
        under the boost, 0 otherwise."""
        ids = tokens[:, -n_targets:].reshape(-1)
        if not self.cfg.retrieves_splats:
            return torch.zeros(ids.shape[0], device=ids.device)
        emb = self.embeddings
        g, u, h = (x.reshape(-1, self.cfg.latent_dim) for x in self.contexts(tokens[:, :-1], n_targets, emb))
        c = self.beta * g + u
        r = self.retrieve(c, h)
        e = self.attractor_entries(r, emb)
        if r.log_rest is None:
            return -torch.expm1(-target_gain(e, ids))
        base_logp = torch.log_softmax(TORCH.vocab_logits(emb, self.vocab_bias(None), c, self.cfg.vocab_temperature), -1)
        return target_responsibility(r.log_rest, base_logp.gather(1, ids[:, None]).squeeze(1), e, ids)

    def parameter_groups(self) -> list[dict]:
        """Weight decay on matrices of the encoder and decoder only, never on the sphere's points,
        splat weights or concentrations (decay would drag them towards the origin or zero)."""
        no_decay_ids = {id(p) for p in (self.token_raw, self.log_beta, self.log_prior, *self.splats.parameters())}
        # decay would pull every query back to beta g + u
        no_decay_ids |= {id(self.query.weight), id(self.log_strength), id(self.log_null)}
        decay: list[nn.Parameter] = []
        plain: list[nn.Parameter] = []
        for p in self.parameters():
            (plain if id(p) in no_decay_ids or p.dim() < 2 else decay).append(p)
        return [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]


def _split_legacy_extra_state(state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before the neighbour table was its own module kept its state, and the
    store's edit counter, in the model's own extra state; move them where they live now. Those
    written before the token prior get a uniform one."""
    if prefix + "token_raw" in state_dict:  # before the token prior: a uniform one gives the same model
        raw = state_dict[prefix + "token_raw"]
        state_dict.setdefault(prefix + "log_prior", torch.zeros(raw.shape[0], device=raw.device))
        d = raw.shape[1]  # before the context term: a zero query correction
        state_dict.setdefault(prefix + "query.weight", torch.zeros(d, d, device=raw.device))
        state_dict.setdefault(prefix + "log_strength", torch.zeros((), device=raw.device))
        state_dict.setdefault(prefix + "log_null", torch.tensor(-3.0, device=raw.device))
    legacy = state_dict.pop(prefix + "_extra_state", None)
    if legacy is None:
        return
    state_dict.setdefault(prefix + "neighbours._extra_state", legacy)
    state_dict.setdefault(prefix + "splats._extra_state", {"version": legacy["store_version"]})
