"""Sampling a span under energies added at generation time (docs/design.md, "Composition").

Every method here targets the same law over spans x of n tokens after a prompt:

    pi(x) ~ q0(x) * [hard constraints met] * exp(-sum_soft lambda_i C_i(x))

where q0 is p_E's sampling law: left to right, each token from softmax(logits / T) over the
top-k tokens plus the constraints' own tokens (so a keyword the model finds unlikely is not
excluded by the filter). Methods differ in how they propose and correct:

- "direct": q0 itself, constraints ignored (the unconstrained reference).
- "rejection": draws from q0 until one is accepted with probability [hard met] exp(-sum lambda C),
  exact because every soft energy is >= 0.
- "importance": N draws from q0, one resampled with weights [hard met] exp(-sum lambda C).
- "smc": sequential Monte Carlo, particles extended token by token; a token that would break an
  avoid constraint is never proposed (its mass enters the weight), a potential exp(-lambda
  missing keywords) lets particles that already hold a keyword multiply, resampling at ESS < N/2.
- "resample-move": importance resampling of q0's drafts, then the Metropolis moves that end
  "langevin" (below): what the moves do without the chains.
- "langevin": all n positions are points on the sphere, moved jointly by underdamped Riemannian
  Langevin (ebm.langevin) on the relaxed energy E(z) = sum_t U_t(z_t | z_<t) + sum_i lambda_i C_i(z),
  U_t the landscape energy of ebm.landscape with contexts read from the relaxed points themselves;
  then each chain's tokens are drawn left to right from q0's law tilted towards its points and
  down the constraints' gradient, r_t(w) ~ q0_t(w) exp(kappa e_w . z_t - g grad_t C . e_w) (a
  defensive share of chains draws from q0 itself), and one draft is resampled with importance
  weights pi(x) / r(x | z), so its output has pi as its stated target whatever the relaxation's
  bias. Rounds of chains, each started at drafts resampled from the pool, run until part of the
  budget is spent; then drafts resampled from the pool are moved by Metropolis-Hastings on the
  token sequence (`metropolis`), a kernel that leaves pi invariant, until the rest is spent
  (resample-move: the moves can only bring the output's law closer to pi).

Notation: K rows (chains or draws), n span tokens, P prompt tokens, R right-context tokens,
V vocabulary, D latent_dim.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .constraints import Constraint, SpanView, right_context_of
from .geometry import normalize
from .langevin import LangevinResult, langevin_sample
from .model import EBMModel

Tensor = torch.Tensor


@dataclass(frozen=True)
class Problem:
    """One constrained generation: the model, a prompt, the span length, the constraints and
    p_E's sampling law (temperature, top-k)."""

    model: EBMModel
    prompt: tuple[int, ...]
    n: int
    constraints: tuple[Constraint, ...] = ()
    temperature: float = 1.0
    top_k: int = 40

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("the span needs at least one token (--tokens 1 or more)")
        if self.temperature <= 0:
            raise ValueError("the sampling temperature must be above 0")
        room = self.model.cfg.context_global + 1 - self.n - len(self.right)
        if room < 1:
            raise ValueError(
                f"span of {self.n} tokens plus a right context of {len(self.right)} does not fit the model's "
                f"window of {self.model.cfg.context_global + 1} tokens: shorten one of them"
            )
        object.__setattr__(self, "prompt", (tuple(self.prompt) or (0,))[-room:])  # 0: as generate_stream does

    @property
    def right(self) -> tuple[int, ...]:
        return right_context_of(self.constraints)

    @property
    def extras(self) -> list[int]:
        return sorted({t for c in self.constraints for t in c.candidates()})


@dataclass(frozen=True)
class Budget:
    """Compute each sample may spend: wall-clock seconds and/or complete drafts of the span (a
    draft costs n model calls over one row). The first limit reached stops; at least one batch
    always runs, and with neither limit set only one."""

    seconds: float | None = None
    drafts: int | None = None
    batch: int = 16

    def spent(self, started: float, drafts: int) -> bool:
        if self.seconds is None and self.drafts is None:  # no limit given: one batch
            return True
        late = self.seconds is not None and time.perf_counter() - started >= self.seconds
        return late or (self.drafts is not None and drafts >= self.drafts)

    def share(self, fraction: float) -> Budget:
        """The same limits scaled by `fraction` (a part of the budget for one stage)."""
        return Budget(
            None if self.seconds is None else self.seconds * fraction,
            None if self.drafts is None else math.ceil(self.drafts * fraction),
            self.batch,
        )

    @property
    def limited(self) -> bool:
        return self.seconds is not None or self.drafts is not None


@dataclass(frozen=True)
class ChainSettings:
    """The sequence chain: chains per sample, steps, step size, friction, temperature per degree
    of freedom, the basin strength of its landscape (kappa = strength sqrt(d - 1)), and how
    strongly the final draw follows the chain's points: at the constraints' own tokens with
    `strength`, at every other token with `draw_strength` (0: those follow q0 alone), plus
    `gradient_draw` times the first-order change of the constraints' energy if z_t moved to e_w."""

    # Measured on the keyword task (docs/design-notes.md, "Composition"): at chain temperature 1
    # the points wander at cosine ~0.1 from every token, the encoder reads noise and no keyword
    # lands; at 0.1 they stay near tokens. A weaker draw elsewhere (1 against 3) rewrites less of
    # the text around a keyword; 16 chains give the resampling a better choice than 8. On infilling
    # (section 15 there) 5 steps beat 15 and 30, and the gradient draw at 2 took the right
    # context's NLL from a clear loss against importance resampling at equal time to a win on one
    # checkpoint and a tie on another; the chain alone moves the points too little for the
    # encoder's reading of them to matter.
    chains: int = 16
    steps: int = 5
    dt: float = 0.2
    gamma: float = 0.2
    temperature: float = 0.1
    strength: float = 3.0
    draw_strength: float = 1.0
    gradient_draw: float = 2.0
    # A `defensive` share of chains draws from q0 untilted and every weight is taken against the
    # mixture: weights are then at most potential / defensive, and spans every chain's points
    # turn away from keep their draws. Undefended, 3,000 chains started at one toy span never
    # wrote spans holding 43% of pi, and with the gradient draw the weights' ESS fell from 52 to
    # 16 as the chains went from 3,000 to 12,000 (heavy tails; tests/test_composition.py). On
    # infilling it costs: 0.25 took 5.5 nats of right-context NLL (design-notes, section 15).
    defensive: float = 0.25
    # The share of the budget spent moving resampled drafts by Metropolis-Hastings, and how many
    # drafts are moved side by side (one of them is the output). Without a budget limit no moves
    # run. Measured in docs/design-notes.md, section 15, "Moves on the token sequence".
    move_share: float = 0.75
    move_chains: int = 1
    informed_moves: bool = True  # proposals from the gradient (metropolis), not q0 at a random position


@dataclass
class ComposedSample:
    tokens: list[int]
    energies: dict[str, float]  # constraint label -> its energy at the output
    met: dict[str, bool]  # constraint label -> met
    log_weight: float  # the output's importance log weight (relative; 0 for direct and rejection)
    drafts: int  # complete spans drawn for this sample
    seconds: float
    trace: dict[str, list[float]] = field(default_factory=dict)  # Langevin: term -> energy per chain step
    accepted: float | None = None  # Langevin: the share of Metropolis-Hastings moves accepted (None: no moves)


class Scores(NamedTuple):
    energies: Tensor  # (K, C) each constraint's weighted energy
    met: Tensor  # (K, C) bool
    log_potential: Tensor  # (K,) log([hard met] exp(-sum_soft energies)); -inf where a hard one fails


# ----------------------------------------------------------------------------- p_E's law, left to right


def next_logits(model: EBMModel, seqs: Tensor) -> Tensor:
    """Unnormalised log p_E of the next token after each row of ids (K, L) -> (K, V)."""
    window = seqs[:, -(model.cfg.context_global + 1) :]
    g, u, h = (x[:, -1] for x in model.contexts(window, 1))
    return model.energy_logits(g, u, h)


def base_logprobs(problem: Problem, logits: Tensor) -> Tensor:
    """log q0_t over the vocabulary: softmax(logits / T) over the top-k plus the constraints'
    tokens, -inf elsewhere: (K, V) -> (K, V)."""
    scaled = logits.float() / problem.temperature
    keep = torch.zeros_like(scaled, dtype=torch.bool)
    if 0 < problem.top_k < scaled.shape[-1]:
        keep.scatter_(-1, scaled.topk(problem.top_k, -1).indices, True)
        keep[:, problem.extras] = True
    else:
        keep[:] = True
    return torch.log_softmax(scaled.masked_fill(~keep, float("-inf")), -1)


def banned_mask(problem: Problem, prefixes: Tensor, vocab: int) -> Tensor:
    """Tokens that would break a hard constraint if drawn next: (K, L) ids -> (K, V) bool."""
    mask = torch.zeros(prefixes.shape[0], vocab, dtype=torch.bool, device=prefixes.device)
    if any(c.kind == "avoid" for c in problem.constraints):
        for row, prefix in enumerate(prefixes.tolist()):
            for c in problem.constraints:
                mask[row, c.banned_next(prefix)] = True
    return mask


def prompt_rows(problem: Problem, rows: int, device: torch.device) -> Tensor:
    return torch.tensor(problem.prompt, device=device).expand(rows, -1)


Tilt = Callable[[int, Tensor], Tensor]  # (position t, span so far (K, t)) -> log factors (K, V)


def draw_spans(
    problem: Problem, rows: int, gen: torch.Generator, tilt: Tilt | None = None, defensive: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Spans drawn left to right from q0 with banned tokens removed, each token's law tilted by
    log factors when given, a `defensive` share of the rows drawn untilted: -> ids (K, n),
    log q0(x) (K,), log r(x) (K,) of the law drawn from (the mixture, when defensive > 0)."""
    model = problem.model
    seqs = prompt_rows(problem, rows, model.embeddings.device)
    plain = torch.rand(rows, generator=gen, device=seqs.device) < defensive  # (K,)
    log_q0 = log_r = log_plain = seqs.new_zeros(rows, dtype=torch.float)
    for t in range(problem.n):
        base = base_logprobs(problem, next_logits(model, seqs))
        banned = banned_mask(problem, seqs, base.shape[-1])
        untilted = _allowed(base, base, banned)
        proposal = untilted if tilt is None else _allowed(base + tilt(t, seqs[:, seqs.shape[1] - t :]), base, banned)
        law = torch.where(plain[:, None], untilted, proposal)
        x = torch.multinomial(law.exp(), 1, generator=gen)  # (K, 1)
        log_q0, log_r = log_q0 + base.gather(-1, x)[:, 0], log_r + proposal.gather(-1, x)[:, 0]
        log_plain = log_plain + untilted.gather(-1, x)[:, 0]
        seqs = torch.cat([seqs, x], 1)
    if defensive > 0:
        log_r = torch.logaddexp(math.log(defensive) + log_plain, math.log1p(-defensive) + log_r)
    return seqs[:, -problem.n :], log_q0, log_r


def _allowed(logits: Tensor, base: Tensor, banned: Tensor) -> Tensor:
    """log softmax of logits (K, V) with banned tokens removed; a row with every allowed token
    banned falls back to base (the draw fails later)."""
    allowed = logits.masked_fill(banned, float("-inf"))
    dead = torch.isinf(allowed).all(-1, keepdim=True)
    return torch.log_softmax(torch.where(dead, base, allowed), -1)


def right_logits(problem: Problem, inputs: Tensor) -> Tensor | None:
    """The model's logits at the right context's positions given prompt and span, from the span's
    input embeddings (K, n, D), exact or relaxed: -> (K, R, V), None without a right context."""
    model, right = problem.model, problem.right
    if not right:
        return None
    return _logits(model, framed(problem, inputs)[:, :-1], len(right))


def framed(problem: Problem, span: Tensor) -> Tensor:
    """Input embeddings of prompt, span and right context: span (K, n, D) -> (K, P + n + R, D)."""
    emb, K = problem.model.embeddings, span.shape[0]
    return torch.cat([emb[list(problem.prompt)].expand(K, -1, -1), span, emb[list(problem.right)].expand(K, -1, -1)], 1)


def _logits(model: EBMModel, inputs: Tensor, last: int) -> Tensor:
    """Logits after each of the last `last` positions of input embeddings (K, L, D) -> (K, last, V)."""
    ctx = model.context(inputs, last)
    g, u, h = (x.reshape(-1, x.shape[-1]) for x in ctx)
    return model.energy_logits(g, u, h).view(inputs.shape[0], last, -1)


@torch.no_grad()
def score(problem: Problem, tokens: Tensor, right: Tensor | None = None) -> Scores:
    """Every constraint's energy and verdict on finished spans (K, n); `right`, the right
    context's logits (K, R, V) when already computed."""
    emb = problem.model.embeddings
    view = SpanView(emb[tokens], right if right is not None else right_logits(problem, emb[tokens]))
    if not problem.constraints:
        zeros = tokens.new_zeros(tokens.shape[0], dtype=torch.float)
        return Scores(zeros[:, None][:, :0], zeros[:, None][:, :0].bool(), zeros)
    energies = torch.stack([c.energy(view).float() for c in problem.constraints], -1)  # (K, C)
    met = torch.stack([c.met(tokens, energies[:, i]) for i, c in enumerate(problem.constraints)], -1)
    hard = torch.tensor([c.hard for c in problem.constraints], device=tokens.device)
    ok = (met | ~hard).all(-1)
    soft = (energies * ~hard).sum(-1)
    return Scores(energies, met, torch.where(ok, -soft, torch.full_like(soft, float("-inf"))))


def span_logprobs(problem: Problem, inputs: Tensor) -> tuple[Tensor, Tensor | None]:
    """q0's law at every position of a span and the right context's logits, from one pass over
    prompt, span and right context: the span's input embeddings (K, n, D) -> log q0_t (K, n, V),
    (K, R, V) or None."""
    n = problem.n
    logits = _logits(problem.model, framed(problem, inputs)[:, :-1], n + len(problem.right))
    K, _, V = logits.shape
    logp = base_logprobs(problem, logits[:, :n].reshape(K * n, V)).view(K, n, V)
    return logp, (logits[:, n:] if problem.right else None)


class MoveState(NamedTuple):
    """A span under Metropolis moves: log pi(x) up to its constant (K,), its scores, and the log
    probabilities of the next proposal over (position, token) (K, n, V)."""

    log_pi: Tensor
    scores: Scores
    proposal: Tensor


def move_state(problem: Problem, tokens: Tensor, informed: bool) -> MoveState:
    """One pass over prompt, span and right context (a backward pass too when informed). The
    proposal picks a position t that holds no keyword's only occurrence, then w ~ q0_t(. | x_<t)
    without banned tokens; informed, it picks (t, w) by softmax(d / 2) instead, d the change of
    log pi if x_t became w: exact in q0_t's own factor, first order (the gradient at the span's
    input embeddings) in the later tokens' factors and the soft energies (Grathwohl et al., 2021,
    "Oops I took a gradient"): ids (K, n) -> MoveState."""
    emb, n = problem.model.embeddings, problem.n
    K, V = tokens.shape[0], emb.shape[0]
    z = emb[tokens].detach().requires_grad_(informed)  # (K, n, D)
    with torch.set_grad_enabled(informed):
        logp, right = span_logprobs(problem, z)
        view = SpanView(z, right)
        soft = sum((c.energy(view) for c in problem.constraints if not c.hard), z.new_zeros(K))
        picked = logp.gather(-1, tokens[..., None])[..., 0]  # (K, n)
        if informed:
            (grad,) = torch.autograd.grad((picked.sum(-1) - soft).sum(), z)
    scores = score(problem, tokens, None if right is None else right.detach())
    logp, picked = logp.detach(), picked.detach()
    allowed = logp.masked_fill(_banned_everywhere(problem, tokens, V), float("-inf"))
    fixed = _keyword_holders(problem, tokens)  # (K, n)
    if informed:
        first_order = torch.einsum("knd,vd->knv", grad, emb) - (grad * z.detach()).sum(-1, keepdim=True)
        d = (allowed - picked[..., None] + first_order).scatter(-1, tokens[..., None], float("-inf"))
        proposal = torch.log_softmax((d / 2).masked_fill(fixed[..., None], float("-inf")).flatten(1), -1).view(K, n, V)
    else:
        free = (~fixed).sum(-1, keepdim=True).clamp_min(1)  # (K, 1)
        law = torch.log_softmax(allowed, -1) - free.log()[..., None]
        proposal = law.masked_fill(fixed[..., None], float("-inf"))
    return MoveState(picked.sum(-1) + scores.log_potential, scores, proposal)


def _banned_everywhere(problem: Problem, tokens: Tensor, vocab: int) -> Tensor:
    """banned_mask at each position, after the row's own prefix: (K, n) -> (K, n, V) bool."""
    if not any(c.kind == "avoid" for c in problem.constraints):
        return torch.zeros(*tokens.shape, vocab, dtype=torch.bool, device=tokens.device)
    seqs = torch.cat([prompt_rows(problem, tokens.shape[0], tokens.device), tokens], 1)
    P = len(problem.prompt)
    return torch.stack([banned_mask(problem, seqs[:, : P + t], vocab) for t in range(tokens.shape[1])], 1)


def _keyword_holders(problem: Problem, tokens: Tensor) -> Tensor:
    """Positions whose change would drop a keyword the span holds only there: (K, n) -> (K, n) bool."""
    fixed = torch.zeros_like(tokens, dtype=torch.bool)
    keywords = [c for c in problem.constraints if c.kind == "keyword"]
    if keywords:
        none = tokens.new_zeros(tokens.shape[0], dtype=torch.float)
        held = [c.met(tokens, none) for c in keywords]
        for t in range(tokens.shape[1]):
            blanked = tokens.clone()
            blanked[:, t] = -1
            for c, was in zip(keywords, held):
                fixed[:, t] |= was & ~c.met(blanked, none)
    return fixed


@torch.no_grad()
def metropolis(
    problem: Problem, tokens: Tensor, gen: torch.Generator, done: Callable[[int], bool], informed: bool = False
) -> tuple[Tensor, Scores, int, float]:
    """Metropolis-Hastings on token spans (K, n), each row its own chain, invariant for pi: a step
    draws (t, w) from move_state's proposal and accepts x' (x with x_t = w) with probability
    min(1, pi(x') q(t, x_t | x') / (pi(x) q(t, w | x))). Under the plain proposal, x_<t unchanged,
    q0's factor at t cancels the proposal's, leaving [hard met] exp(-soft energy change)
    prod_(s > t) q0_s(x'_s | x'_<s) / q0_s(x_s | x_<s): a word before a keyword changes when the
    keyword reads better after the new one. Runs until done(steps taken): -> rows, their scores,
    steps taken, share accepted. A row that breaks a hard constraint accepts any proposal that
    does not."""
    K, n = tokens.shape
    rows = torch.arange(K, device=tokens.device)
    state = move_state(problem, tokens, informed)
    taken = accepted = 0
    while not done(taken):
        flat = torch.multinomial(_drawable(state.proposal.flatten(1)), 1, generator=gen)[:, 0]
        t, w = flat // state.proposal.shape[-1], flat % state.proposal.shape[-1]
        proposal = tokens.clone()
        proposal[rows, t] = w
        new = move_state(problem, proposal, informed)
        log_alpha = new.log_pi - state.log_pi + new.proposal[rows, t, tokens[rows, t]] - state.proposal[rows, t, w]
        stuck = torch.isneginf(state.log_pi) & ~torch.isneginf(new.log_pi)
        u = torch.rand(K, generator=gen, device=tokens.device)
        possible = torch.isfinite(state.proposal[rows, t, w])  # false where _drawable had nothing to draw
        accept = possible & (stuck | (u.log() < log_alpha.nan_to_num(float("-inf"))))
        tokens = torch.where(accept[:, None], proposal, tokens)
        state = MoveState(*(_where_rows(accept, b, a) for a, b in zip(state, new)))
        taken, accepted = taken + 1, accepted + int(accept.sum())
    return tokens, state.scores, taken, accepted / max(taken * K, 1)


def _drawable(log_p: Tensor) -> Tensor:
    """Probabilities from log probabilities (K, M); a row with nothing to propose draws its first
    entry, which metropolis then refuses."""
    p = log_p.exp().nan_to_num(0.0)
    p[p.sum(-1) == 0, 0] = 1.0
    return p


def _where_rows(pick: Tensor, new, old):
    """Row-wise choice between two tensors, or two Scores, by pick (K,)."""
    if isinstance(old, Scores):
        return Scores(*(_where_rows(pick, b, a) for a, b in zip(old, new)))
    return torch.where(pick.view(-1, *[1] * (old.ndim - 1)), new, old)


def resample_one(log_w: Tensor, gen: torch.Generator) -> int:
    """An index drawn with probability ~ exp(log_w); all -inf: uniform."""
    return int(_resampled(log_w, 1, gen))


def _sample(
    problem: Problem, tokens: Tensor, scores: Scores, row: int, log_w: float, drafts: int, started: float
) -> ComposedSample:
    labels = [c.label or c.kind for c in problem.constraints]
    return ComposedSample(
        tokens=tokens[row].tolist(),
        energies={k: float(v) for k, v in zip(labels, scores.energies[row])},
        met={k: bool(v) for k, v in zip(labels, scores.met[row])},
        log_weight=log_w,
        drafts=drafts,
        seconds=time.perf_counter() - started,
    )


# ----------------------------------------------------------------------------- the methods

Composer = Callable[[Problem, Budget, ChainSettings, torch.Generator], ComposedSample]


def direct(problem: Problem, budget: Budget, chain: ChainSettings, gen: torch.Generator) -> ComposedSample:
    """One draw from q0 with top-k alone: the constraints are scored, not used."""
    started = time.perf_counter()
    plain = Problem(problem.model, problem.prompt, problem.n, (), problem.temperature, problem.top_k)
    tokens, _, _ = draw_spans(plain, 1, gen)
    return _sample(problem, tokens, score(problem, tokens), 0, 0.0, 1, started)


def rejection(problem: Problem, budget: Budget, chain: ChainSettings, gen: torch.Generator) -> ComposedSample:
    """Batches from q0 until a draw is accepted with probability exp(log potential); out of budget,
    the draw of highest potential (reported unmet)."""
    started, drafts, best = time.perf_counter(), 0, None
    while True:
        tokens, _, _ = draw_spans(problem, budget.batch, gen)
        scores = score(problem, tokens)
        drafts += budget.batch
        u = torch.rand(budget.batch, generator=gen, device=tokens.device)
        accepted = (u.log() < scores.log_potential).nonzero()
        if len(accepted):
            return _sample(problem, tokens, scores, int(accepted[0]), 0.0, drafts, started)
        row = int(scores.log_potential.argmax())
        if best is None or scores.log_potential[row] > best[1].log_potential[best[2]]:
            best = (tokens, scores, row)
        if budget.spent(started, drafts):
            return _sample(problem, *best, float("-inf"), drafts, started)


def importance(problem: Problem, budget: Budget, chain: ChainSettings, gen: torch.Generator) -> ComposedSample:
    """Draws from q0 until the budget is spent, one resampled with weights exp(log potential)."""
    started = time.perf_counter()
    tokens, scores, drafts = _q0_pool(problem, budget, started, gen)
    row = resample_one(scores.log_potential, gen)
    return _sample(problem, tokens, scores, row, float(scores.log_potential[row]), drafts, started)


def resample_move(problem: Problem, budget: Budget, chain: ChainSettings, gen: torch.Generator) -> ComposedSample:
    """Importance resampling of q0's drafts for (1 - move_share) of the budget, then Langevin's
    Metropolis moves for the rest: the moves without the chains, to tell what each part adds."""
    started = time.perf_counter()
    tokens, scores, drafts = _q0_pool(problem, _before_moves(budget, chain), started, gen)
    sample, _ = _output(problem, tokens, scores.log_potential, scores, budget, chain, gen, started, drafts)
    return sample


def _q0_pool(problem: Problem, budget: Budget, started: float, gen: torch.Generator) -> tuple[Tensor, Scores, int]:
    """Batches of drafts from q0 until the budget is spent (at least one): ids, scores, drafts."""
    drafts, pool = 0, list[tuple[Tensor, Scores]]()
    while not pool or not budget.spent(started, drafts):
        tokens, _, _ = draw_spans(problem, budget.batch, gen)
        pool.append((tokens, score(problem, tokens)))
        drafts += budget.batch
    return torch.cat([p[0] for p in pool]), Scores(*(torch.cat([p[1][i] for p in pool]) for i in range(3))), drafts


def smc(problem: Problem, budget: Budget, chain: ChainSettings, gen: torch.Generator) -> ComposedSample:
    """Sequential Monte Carlo over as many particles as the budget's drafts allow (by time: one
    batch, timed, then as many as fit)."""
    started = time.perf_counter()
    particles = budget.drafts or budget.batch
    if budget.seconds is not None and budget.drafts is None:
        probe = time.perf_counter()
        draw_spans(problem, budget.batch, gen)
        per_draft = (time.perf_counter() - probe) / budget.batch
        particles = max(budget.batch, int(max(budget.seconds - (time.perf_counter() - started), 0) / per_draft))
    tokens, log_w = smc_particles(problem, particles, gen)
    scores = score(problem, tokens)
    log_w = log_w + scores.log_potential
    row = resample_one(log_w, gen)
    return _sample(problem, tokens, scores, row, float(log_w[row]), particles, started)


def smc_particles(problem: Problem, particles: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Particles (N, n) and their log weights before the final potential. The intermediate target
    is q0 with avoid constraints met so far, times exp(-sum of the weights of keywords still missing)."""
    model = problem.model
    seqs = prompt_rows(problem, particles, model.embeddings.device)
    log_w = seqs.new_zeros(particles, dtype=torch.float)
    missing = _missing_keywords(problem, seqs[:, :0])
    for _ in range(problem.n):
        base = base_logprobs(problem, next_logits(model, seqs))
        allowed = base.masked_fill(banned_mask(problem, seqs, base.shape[-1]), float("-inf"))
        log_mass = torch.logsumexp(allowed, -1)  # (N,) q0's mass that keeps the avoid constraints
        proposal = torch.where(torch.isinf(log_mass)[:, None], base, allowed - log_mass[:, None])
        seqs = torch.cat([seqs, torch.multinomial(proposal.exp(), 1, generator=gen)], 1)
        now = _missing_keywords(problem, seqs[:, len(problem.prompt) :])
        log_w = log_w + log_mass - (now - missing)
        missing = now
        if _ess(log_w) < particles / 2:
            keep = _resampled(log_w, particles, gen)
            seqs, missing, log_w = seqs[keep], missing[keep], torch.full_like(log_w, float(torch.logsumexp(log_w, -1)))
    return seqs[:, -problem.n :], log_w + missing  # the potential comes off again at the end


def _missing_keywords(problem: Problem, tokens: Tensor) -> Tensor:
    """(N, t) -> (N,) the summed weights of the keywords a span prefix does not hold yet."""
    missing = tokens.new_zeros(tokens.shape[0], dtype=torch.float)
    for c in problem.constraints:
        if c.kind == "keyword":
            missing = missing + c.weight * (~c.met(tokens, missing)).float()
    return missing


def _ess(log_w: Tensor) -> float:
    w = torch.softmax(log_w, -1)
    return float(1.0 / (w * w).sum())


# ----------------------------------------------------------------------------- Langevin on the span


def relaxed_energy(problem: Problem, z: Tensor, strength: float) -> dict[str, Tensor]:
    """The chain's energy of relaxed spans z (K, n, D) with its parts, each (K,): "model", the
    landscape energies sum_t U_t(z_t | prompt, z_<t), one per constraint, and "total"."""
    model, emb = problem.model, problem.model.embeddings
    K, n, D = z.shape
    kappa = strength * math.sqrt(max(D - 1, 1))
    R = len(problem.right)
    logits = _logits(model, framed(problem, z)[:, :-1], n + R)  # (K, n + R, V)
    logp = torch.log_softmax(logits[:, :n] / problem.temperature, -1)
    basins = logp + kappa * (torch.einsum("knd,vd->knv", z, emb) - 1)  # (K, n, V)
    terms = {"model": -torch.logsumexp(basins, -1).sum(-1)}
    view = SpanView(z, logits[:, n:] if R else None)
    for c in problem.constraints:
        terms[c.label or c.kind] = c.energy(view)
    terms["total"] = torch.stack(list(terms.values())).sum(0)
    return terms


def chain_energy(problem: Problem, strength: float):
    """(z, step) -> (terms, Euclidean gradient (K, n, D)) for ebm.langevin, the gradient per degree
    of freedom like the chain's temperature (ebm.sampler)."""
    dof = max(problem.model.cfg.latent_dim - 1, 1)

    def fn(z: Tensor, step: int) -> tuple[dict[str, Tensor], Tensor]:
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            terms = relaxed_energy(problem, z, strength)
            (grad,) = torch.autograd.grad(terms["total"].sum(), z)
        return {k: v.detach() for k, v in terms.items()}, grad / dof

    return fn


def constraint_gradient(problem: Problem, z: Tensor, strength: float) -> Tensor:
    """The constraints' summed energy's Euclidean gradient at relaxed spans: (K, n, D) -> (K, n, D)."""
    if not problem.constraints:  # nothing to differentiate: skip the encoder's pass
        return torch.zeros_like(z)
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        terms = relaxed_energy(problem, z, strength)
        total = torch.stack([terms[c.label or c.kind] for c in problem.constraints]).sum()
        (grad,) = torch.autograd.grad(total, z)
    return grad


def draw_tilt(problem: Problem, z: Tensor, chain: ChainSettings, grad: Tensor | None = None) -> Tilt:
    """log factors kappa_w e_w . z_t - gradient_draw grad_t . e_w that the final draw adds to q0 at
    position t: kappa from `draw_strength`, and from `strength` at a keyword's tokens until the
    span holds that keyword (so a keyword the chain pulled several points towards is not written
    several times); grad (K, n, D) from constraint_gradient, when given."""
    emb = problem.model.embeddings
    root = math.sqrt(max(emb.shape[1] - 1, 1))
    cos = torch.einsum("knd,vd->knv", z, emb)  # (K, n, V)
    first_order = None if grad is None else -chain.gradient_draw * torch.einsum("knd,vd->knv", grad, emb)
    keywords = [(c, list(c.candidates())) for c in problem.constraints if c.kind == "keyword"]
    extra = (chain.strength - chain.draw_strength) * root

    def tilt(t: int, span: Tensor) -> Tensor:
        out = chain.draw_strength * root * cos[:, t]
        if first_order is not None:
            out = out + first_order[:, t]
        for c, ids in keywords:
            wanted = ~c.met(span, out[:, 0]) if span.shape[1] else torch.ones_like(out[:, 0], dtype=torch.bool)
            out[:, ids] += extra * cos[:, t, ids] * wanted[:, None]
        return out

    return tilt


CHAINS_PER_START = 4  # a start draft costs n model calls; chains from one start still spread


def langevin_drafts(
    problem: Problem, chain: ChainSettings, gen: torch.Generator, starts: Tensor | None = None
) -> tuple[Tensor, Tensor, Scores, LangevinResult]:
    """chain.chains chains on the relaxed span, CHAINS_PER_START from each of `starts` (ids (S, n);
    default: fresh drafts of q0), then a tilted draw of tokens from each chain's end: ids (K, n),
    log importance weights pi(x) / r(x | z) (K,) up to a constant, their scores, and the chains."""
    model = problem.model
    K, D = chain.chains, model.cfg.latent_dim
    if starts is None:  # a few drafts, not K: each costs n model calls
        starts, _, _ = draw_spans(problem, math.ceil(K / CHAINS_PER_START), gen)
    start = starts.repeat_interleave(math.ceil(K / len(starts)), 0)[:K]
    z0 = normalize(model.embeddings[start] + 0.01 * torch.randn(K, problem.n, D, generator=gen, device=start.device))
    run = langevin_sample(
        z0, chain_energy(problem, chain.strength), chain.steps, chain.dt, chain.gamma, chain.temperature / max(D - 1, 1), gen
    )
    grad = constraint_gradient(problem, run.z, chain.strength) if chain.gradient_draw else None
    with torch.no_grad():
        tokens, log_q0, log_r = draw_spans(problem, K, gen, draw_tilt(problem, run.z, chain, grad), chain.defensive)
        scores = score(problem, tokens)
    return tokens, log_q0 - log_r + scores.log_potential, scores, run


def langevin(problem: Problem, budget: Budget, chain: ChainSettings, gen: torch.Generator) -> ComposedSample:
    """Rounds of Langevin drafts until (1 - move_share) of the budget is spent, each round's chains
    started at drafts resampled from the pool so far (population Monte Carlo: a draft keeps the
    weight pi(x) / r(x | z) of the law it was drawn from, unbiased whatever the past chose z by,
    so the pool's target stays pi). Then move_chains drafts resampled by weight are moved by
    `metropolis` for the rest of the budget, and one of them is the output. Rounds go on into the
    moves' share while no draft meets the hard constraints: a move changes one token, so it
    cannot write three missing keywords."""
    started = time.perf_counter()
    rounds = _before_moves(budget, chain)
    tokens, log_w, scores, run = langevin_drafts(problem, chain, gen)
    runs = [(run, 0)]  # each round's chains and its first row in the pool
    drafts = 2 * chain.chains  # a chain and its draw
    while not rounds.spent(started, drafts) or (torch.isneginf(log_w).all() and not budget.spent(started, drafts)):
        starts = tokens[_resampled(log_w, math.ceil(chain.chains / CHAINS_PER_START), gen)]
        new_tokens, new_w, new_scores, run = langevin_drafts(problem, chain, gen, starts)
        runs.append((run, len(tokens)))
        tokens, log_w = torch.cat([tokens, new_tokens]), torch.cat([log_w, new_w])
        scores = Scores(*(torch.cat([a, b]) for a, b in zip(scores, new_scores)))
        drafts += 2 * chain.chains
    sample, row = _output(problem, tokens, log_w, scores, budget, chain, gen, started, drafts)
    run, first = next((r, f) for r, f in reversed(runs) if f <= row)
    sample.trace = {k: v[:, row - first].tolist() for k, v in run.energies.items()}
    return sample


def _moving(budget: Budget, chain: ChainSettings) -> bool:
    return chain.move_share > 0 and chain.move_chains > 0 and budget.limited


def _before_moves(budget: Budget, chain: ChainSettings) -> Budget:
    """The part of the budget for drafting: all of it without moves."""
    return budget.share(1 - chain.move_share) if _moving(budget, chain) else budget


def _output(
    problem: Problem,
    tokens: Tensor,
    log_w: Tensor,
    scores: Scores,
    budget: Budget,
    chain: ChainSettings,
    gen: torch.Generator,
    started: float,
    drafts: int,
) -> tuple[ComposedSample, int]:
    """The output of a weighted pool of drafts (K, n): one resampled by weight, or, when moving,
    move_chains resampled and moved by `metropolis` for the rest of the budget, the first of them
    the output; no moves where no draft meets the hard constraints. -> the sample and the pool
    row it started from."""
    if not _moving(budget, chain) or torch.isneginf(log_w).all():
        row = resample_one(log_w, gen)
        log_weight = float(log_w[row] - torch.logsumexp(log_w, -1))
        return _sample(problem, tokens, scores, row, log_weight, drafts, started), row
    picked = _resampled(log_w, chain.move_chains, gen)
    # a step scores move_chains spans in one pass: counted as that many drafts, though a draft costs more
    moved, moved_scores, steps, accepted = metropolis(
        problem,
        tokens[picked],
        gen,
        lambda taken: budget.spent(started, drafts + taken * chain.move_chains),
        chain.informed_moves,
    )
    sample = _sample(problem, moved, moved_scores, 0, 0.0, drafts + steps * chain.move_chains, started)
    sample.accepted = accepted
    return sample, int(picked[0])


def _resampled(log_w: Tensor, count: int, gen: torch.Generator) -> Tensor:
    """`count` indices drawn with replacement with probability ~ exp(log_w); all -inf: uniform."""
    w = torch.softmax(log_w, -1) if not torch.isinf(log_w).all() else torch.ones_like(log_w)
    return torch.multinomial(w, count, replacement=True, generator=gen)


COMPOSERS: dict[str, Composer] = {
    "langevin": langevin,
    "direct": direct,
    "rejection": rejection,
    "importance": importance,
    "smc": smc,
    "resample-move": resample_move,
}


def compose(
    model: EBMModel,
    prompt: Sequence[int],
    n: int,
    constraints: Sequence[Constraint] = (),
    method: str = "langevin",
    samples: int = 1,
    budget: Budget | None = None,
    chain: ChainSettings | None = None,
    temperature: float = 1.0,
    top_k: int = 40,
    seed: int = 0,
) -> list[ComposedSample]:
    """`samples` spans of n tokens after `prompt` under the constraints, by the named method
    (module docstring), each within `budget` (default: 4 batches of drafts)."""
    if method not in COMPOSERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(COMPOSERS)}")
    problem = Problem(model, tuple(prompt), n, tuple(constraints), temperature, top_k)
    gen = torch.Generator(device=model.embeddings.device).manual_seed(seed)
    budget = budget or Budget(drafts=64)
    chain = chain or ChainSettings()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [COMPOSERS[method](problem, budget, chain, gen) for _ in range(samples)]
    finally:
        model.train(was_training)
