"""EBMModel: token embeddings on the sphere, context encoder, energy, decoder, sampler.

Notation: B batch, L window length, T targets per window (the last T tokens), N = B*T,
V vocabulary, D latent_dim, k knn_k.

A window `tokens` (B, L) predicts its last T tokens; the context at input position p reads
tokens <= p and predicts token p + 1. The exact next-token law is
    p_E(w | c) = softmax_w(-E(e_w; c) / T_vocab),
with E_splat(e_w) computed once per call for all V tokens from a cached neighbour table
(refreshed every knn_refresh_interval steps or when the store is edited).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from .config import EBMConfig
from .context import ContextEncoder, ContextOut
from .decoder import MoEDecoder
from .energy import context_energies, context_grad, splat_energy_and_grad, vocab_logit_terms, vocab_logits
from .geometry import normalize, project
from .knn import SplatIndex
from .langevin import EnergyFn, LangevinResult, langevin_sample
from .losses import dsm_loss, noisy_targets, sample_noise_levels
from .ops import head_dtype, linear_cross_entropy
from .splats import SplatStore

Tensor = torch.Tensor


class ModelOutput(NamedTuple):
    loss: Tensor
    metrics: dict[str, float]
    target_points: Tensor  # (N, D) detached target embeddings, for the SOC buffer
    target_energy: Tensor  # (N,) detached total energy at each target
    target_nbr: Tensor  # (N, k) neighbour splat ids of each target, for usage statistics


class SamplerSettings(NamedTuple):
    steps: int
    dt: float
    gamma: float
    temperature: float


class GeneratedToken(NamedTuple):
    token: int
    z: Tensor  # (D,) final latent
    energies: dict[str, Tensor]  # term -> (steps + 1,) trace
    cosine_to_token: float  # cosine of z to the chosen token's embedding
    path: Tensor | None = None  # (steps + 1, D) the Langevin path, when asked for


def initial_splat_means(embeddings: Tensor, n: int, token_freq: Tensor | None = None, seed: int = 0) -> Tensor:
    """Splat means at the embeddings of the n most frequent tokens, else k-means centroids."""
    if token_freq is not None and n <= embeddings.shape[0]:
        return embeddings[torch.argsort(token_freq, descending=True, stable=True)[:n]].clone()
    gen = torch.Generator().manual_seed(seed)
    if embeddings.shape[0] >= 40 * n:  # enough points per centroid for k-means to mean something
        from .pretrained import kmeans_centroids

        return kmeans_centroids(embeddings, n, seed=seed)
    if n <= embeddings.shape[0]:
        return embeddings[torch.randperm(embeddings.shape[0], generator=gen)[:n]].clone()
    extra = torch.randn(n - embeddings.shape[0], embeddings.shape[1], generator=gen)
    return torch.cat([embeddings, normalize(extra)])


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
        self.context = ContextEncoder(cfg)
        self.log_beta = nn.Parameter(torch.tensor(math.log(cfg.geo_beta)))
        self.decoder = MoEDecoder(cfg)
        self.index = SplatIndex(cfg.knn_index)
        self.register_buffer("vocab_nbr", torch.zeros(cfg.vocab_size, 1, dtype=torch.long), persistent=False)
        self._nbr_version = -1
        self._nbr_step = -(10**9)
        self.vulkan = None  # a VulkanDevice once use_vulkan() is called; not part of the state

    def use_vulkan(self, device) -> EBMModel:
        """Run the splat energy (training and scoring), vocabulary energies and Langevin
        sampling on a Vulkan device (ebm.vulkan.get_device); the rest stays in torch on CPU."""
        self.vulkan = device
        return self

    # --- exact resume: the neighbour table and index snapshot are part of the state
    def get_extra_state(self) -> dict:
        return {
            "nbr_step": self._nbr_step,
            "nbr_version": self._nbr_version,
            "store_version": self.splats.version,
            "vocab_nbr": self.vocab_nbr.clone(),
            "index_snapshot": self.index._snapshot,
        }

    def set_extra_state(self, state: dict) -> None:
        self.splats.version = int(state["store_version"])
        self._nbr_step, self._nbr_version = int(state["nbr_step"]), int(state["nbr_version"])
        self.vocab_nbr = state["vocab_nbr"].clone()
        if state["index_snapshot"] is not None:
            self.index.build(state["index_snapshot"])
        else:
            self.index.invalidate()

    # --- views
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

    # --- neighbours
    @torch.no_grad()
    def refresh_neighbours(self, step: int | None = None, force: bool = False) -> bool:
        """Rebuild the index and the vocabulary's neighbour table when due; True if rebuilt."""
        due = step is None or step - self._nbr_step >= self.cfg.knn_refresh_interval
        if not (force or due or self._nbr_version != self.splats.version):
            return False
        self.index.build(self.splats.mu)
        self.vocab_nbr = self.index.search(self.embeddings, self.cfg.knn_k)
        self._nbr_version = self.splats.version
        self._nbr_step = self._nbr_step if step is None else step
        return True

    def _ensure_neighbours(self) -> None:
        if self._nbr_version != self.splats.version or self.vocab_nbr.shape[1] == 1 and self.cfg.knn_k > 1:
            self.refresh_neighbours(force=True)

    def vocab_splat_energy(self, embeddings: Tensor | None = None) -> Tensor:
        """E_splat(e_w) for every token, (V,), differentiable in embeddings and splats."""
        self._ensure_neighbours()
        emb = self.embeddings if embeddings is None else embeddings
        if self.vulkan is not None:
            from .vulkan.splat import splat_energy as vulkan_splat_energy

            s = self.splats
            return vulkan_splat_energy(self.vulkan, emb, s.mu, s.log_alpha, s.kappa, float(s.tau), self.vocab_nbr)
        return self.splats.energy(emb, self.vocab_nbr)

    # --- training
    def forward(self, tokens: Tensor, n_targets: int | None = None, generator: torch.Generator | None = None) -> ModelOutput:
        cfg = self.cfg
        T = n_targets or cfg.seq_length
        emb, beta = self.embeddings, self.beta  # normalised once: (V, D) is the largest tensor here
        heads = head_dtype(cfg.head_dtype, emb.device)
        ctx = self.contexts(tokens[:, :-1], T, emb)
        g, u, h = (x.reshape(-1, cfg.latent_dim) for x in ctx)  # (N, D) each
        targets = tokens[:, -T:].reshape(-1)  # (N,)
        splat_vocab = self.vocab_splat_energy(emb)  # (V,)
        c, bias = vocab_logit_terms(splat_vocab, g, beta, u, cfg.vocab_temperature)  # (N, D), (V,)
        nll = linear_cross_entropy(c, emb, targets, bias, heads)  # = cross_entropy(vocab_logits(...), targets)

        e_t = emb[targets]  # (N, D)
        geo_t, comp_t = context_energies(e_t, g, beta, u)
        splat_t = splat_vocab[targets]

        # Score matching and decoder training on noisy targets (data: no gradient through x~).
        sigma = sample_noise_levels(targets.shape[0], cfg.noise_levels, generator)
        x_noisy, s_star = noisy_targets(e_t.detach(), sigma, generator)
        self.index.ensure(self.splats.mu)
        nbr_noisy = self.index.search(x_noisy, cfg.knn_k)
        _, grad_splat = splat_energy_and_grad(
            x_noisy, self.splats.mu, self.splats.log_alpha, self.splats.kappa, float(self.splats.tau), nbr_noisy
        )
        grad = grad_splat + context_grad(g, beta, u)
        dsm = dsm_loss(project(x_noisy, grad), s_star, sigma, max(cfg.langevin_T, 1e-6))

        dec_in = self._decoder_latents(x_noisy, g, generator)
        dec_out = self.decoder.mix(dec_in, h)
        dec = linear_cross_entropy(dec_out.output, emb, targets, dtype=heads)

        loss = nll + cfg.lambda_dsm * dsm + cfg.lambda_dec * dec + cfg.lambda_bal * dec_out.balance
        total_t = (splat_t + geo_t + comp_t).detach()
        metrics = {
            "loss": loss.item(),
            "nll": nll.item(),
            "ppl": math.exp(min(nll.item(), 50.0)),
            "dsm": dsm.item(),
            "dec": dec.item(),
            "balance": dec_out.balance.item(),
            "energy": total_t.mean().item(),
            "energy_splat": splat_t.mean().item(),
            "energy_geo": geo_t.mean().item(),
            "energy_comp": comp_t.mean().item(),
            "beta": beta.item(),
        }
        return ModelOutput(loss, metrics, e_t.detach(), total_t, self.vocab_nbr[targets])

    def _decoder_latents(self, x_noisy: Tensor, g: Tensor, generator: torch.Generator | None) -> Tensor:
        """Half the rows decode noisy targets, half decode g(c): the sampler's start point,
        near where noise-free sampling ends (see docs/design-notes.md)."""
        use_g = torch.rand(x_noisy.shape[0], 1, generator=generator) < 0.5
        return torch.where(use_g, g.detach(), x_noisy)

    # --- exact likelihoods
    @torch.no_grad()
    def token_logprobs(self, tokens: Tensor, n_targets: int | None = None) -> Tensor:
        """log p_E(target | c) for the last T tokens of each window: (B, L) -> (B, T)."""
        T = n_targets or self.cfg.seq_length
        emb = self.embeddings
        ctx = self.contexts(tokens[:, :-1], T, emb)
        if self.vulkan is not None:
            from .vulkan.vocab import vocab_energies

            c = (self.beta * ctx.g + ctx.u).reshape(-1, self.cfg.latent_dim)
            energies = vocab_energies(self.vulkan, emb, self.vocab_splat_energy(emb), c)
            logits = (-energies / self.cfg.vocab_temperature).view(*ctx.g.shape[:2], -1)
        else:  # scoring stays in float32 whatever the training heads use
            logits = vocab_logits(emb, self.vocab_splat_energy(emb), ctx.g, self.beta, ctx.u, self.cfg.vocab_temperature)
        return torch.log_softmax(logits, -1).gather(-1, tokens[:, -T:, None]).squeeze(-1)

    @torch.no_grad()
    def decoder_logprobs(self, tokens: Tensor, n_targets: int | None = None, steps: int | None = None) -> Tensor:
        """log p_D(target | z*, c), z* the end of a noise-free run from g(c): (B, L) -> (B, T)."""
        cfg = self.cfg
        T = n_targets or cfg.seq_length
        ctx = self.contexts(tokens[:, :-1], T)
        g, u, h = (x.reshape(-1, cfg.latent_dim) for x in ctx)
        run = self.sample(
            g, g, u, SamplerSettings(cfg.eval_flow_steps if steps is None else steps, cfg.langevin_dt, cfg.langevin_gamma, 0.0)
        )
        logits = self.decoder(run.z, h, self.embeddings).logits
        logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, -T:].reshape(-1, 1))
        return logp.view(tokens.shape[0], T)

    # --- sampling
    def energy_fn(self, g: Tensor, u: Tensor) -> EnergyFn:
        """Energy and gradient at z (B, D) for fixed contexts g, u (B, D); neighbours are
        searched every langevin_knn_refresh steps."""
        splats, k, refresh = self.splats, self.cfg.knn_k, self.cfg.langevin_knn_refresh
        mu, log_alpha, kappa, tau, beta = splats.mu, splats.log_alpha, splats.kappa, float(splats.tau), self.beta
        self.index.ensure(mu)
        cache: dict[str, Tensor] = {}

        def fn(z: Tensor, step: int) -> tuple[dict[str, Tensor], Tensor]:
            if step % refresh == 0 or "idx" not in cache:
                cache["idx"] = self.index.search(z, k)
            e_splat, grad = splat_energy_and_grad(z, mu, log_alpha, kappa, tau, cache["idx"])
            geo, comp = context_energies(z, g, beta, u)
            terms = {"total": e_splat + geo + comp, "splat": e_splat, "geo": geo, "comp": comp}
            return terms, grad + context_grad(g, beta, u)

        return fn

    @torch.no_grad()
    def sample(
        self,
        z0: Tensor,
        g: Tensor,
        u: Tensor,
        settings: SamplerSettings,
        generator: torch.Generator | None = None,
        keep_path: bool = False,
    ) -> LangevinResult:
        if self.vulkan is not None and not keep_path:
            return self._sample_vulkan(z0, g, u, settings, generator)
        fn = self.energy_fn(g, u)
        return langevin_sample(
            z0, fn, settings.steps, settings.dt, settings.gamma, settings.temperature, generator, keep_path=keep_path
        )

    def _sample_vulkan(self, z0: Tensor, g: Tensor, u: Tensor, settings: SamplerSettings, generator) -> LangevinResult:
        from .vulkan.langevin import langevin_sample as vulkan_langevin

        s, cfg = self.splats, self.cfg
        seed = int(torch.randint(1 << 24, (1,), generator=generator))  # the device's noise stream, from the caller's RNG
        return vulkan_langevin(
            self.vulkan,
            z0,
            g,
            float(self.beta),
            u,
            s.mu,
            s.log_alpha,
            s.kappa,
            float(s.tau),
            cfg.knn_k,
            settings.steps,
            settings.dt,
            settings.gamma,
            settings.temperature,
            seed,
            cfg.langevin_knn_refresh,
            generator,
        )

    @torch.no_grad()
    def generate_stream(
        self,
        prompt_ids: list[int],
        n: int,
        settings: SamplerSettings | None = None,
        sample_temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        keep_path: bool = False,
    ) -> Iterator[GeneratedToken]:
        """Yield n tokens one by one: Langevin from g(c) + noise, then decode and sample."""
        cfg = self.cfg
        settings = settings or SamplerSettings(cfg.langevin_steps, cfg.langevin_dt, cfg.langevin_gamma, cfg.langevin_T)
        gen = torch.Generator().manual_seed(seed)
        ids = list(prompt_ids) or [0]
        emb = self.embeddings
        for _ in range(n):
            window = torch.tensor([ids[-(cfg.context_global + 1) :] + [0]])  # dummy last token: target slot
            ctx = self.contexts(window[:, :-1], 1)
            g, u, h = (x.reshape(1, -1) for x in ctx)
            z0 = normalize(g + 0.01 * torch.randn(g.shape, generator=gen))
            run = self.sample(z0, g, u, settings, gen, keep_path=keep_path)
            logits = self.decoder(run.z, h, emb).logits[0]
            token = sample_token(logits, sample_temperature, top_k, top_p, gen)
            ids.append(token)
            cos = float((run.z[0] * emb[token]).sum())
            path = run.path[:, 0] if run.path is not None else None
            yield GeneratedToken(token, run.z[0], {k: v[:, 0] for k, v in run.energies.items()}, cos, path)

    def generate(self, prompt_ids: list[int], n: int, **kwargs) -> tuple[list[int], list[GeneratedToken]]:
        steps = list(self.generate_stream(prompt_ids, n, **kwargs))
        return [s.token for s in steps], steps

    # --- training-time maintenance
    def parameter_groups(self) -> list[dict]:
        """Weight decay on matrices of the encoder and decoder only, never on the sphere's points,
        splat weights or concentrations (decay would drag them towards the origin or zero)."""
        no_decay_ids = {id(p) for p in (self.token_raw, self.log_beta, *self.splats.parameters())}
        decay, plain = [], []
        for p in self.parameters():
            (plain if id(p) in no_decay_ids or p.dim() < 2 else decay).append(p)
        return [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": plain, "weight_decay": 0.0}]


def sample_token(
    logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, generator: torch.Generator | None = None
) -> int:
    """Sample one id from (V,) logits with temperature, top-k and nucleus filtering."""
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(descending=True)
        probs = torch.softmax(sorted_logits, -1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix with mass >= top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
