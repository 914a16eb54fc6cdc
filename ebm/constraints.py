"""Constraint energies added at generation time (docs/design.md, "Composition").

A span of n tokens is n points on the sphere, exact token embeddings or the relaxed points of a
Langevin chain. Each constraint is an energy C(view) of the span's points, differentiable in
them, so the chain can follow its Riemannian gradient, and the same formula scores a finished
token sequence (its embeddings as the points). The sampler's target law over token sequences is

    pi(x) ~ p_E(x | prompt) * [every hard constraint met] * exp(-sum_soft lambda_i C_i(x))

Hard constraints (keywords, avoid) act through their indicator there; their weight only sets
how hard the chain is pulled. Soft ones (right context, topic) enter with their weight, and every
soft energy is >= 0, so exp(-lambda C) <= 1 and rejection sampling of pi is exact.

Notation: K rows (chains or samples), n span positions, R right-context tokens, V vocabulary,
D latent_dim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch

from .geometry import inner, normalize, project

Tensor = torch.Tensor


class SpanView(NamedTuple):
    """What a constraint reads of a span: its points and, when a right context is set, the
    model's logits at the right context's positions given prompt and span."""

    points: Tensor  # (K, n, D) unit vectors
    right_logits: Tensor | None = None  # (K, R, V)


class Constraint(Protocol):
    @property
    def kind(self) -> str: ...  # "keyword", "avoid", "right_context", "topic"
    @property
    def label(self) -> str: ...  # what the user asked for, for reports
    @property
    def weight(self) -> float: ...  # lambda
    @property
    def hard(self) -> bool: ...

    def energy(self, view: SpanView) -> Tensor: ...  # (K,)
    def met(self, tokens: Tensor, energy: Tensor) -> Tensor: ...  # (K, n) ids, (K,) energies -> (K,) bool
    def candidates(self) -> tuple[int, ...]: ...  # token ids the discrete draw must be able to pick
    def banned_next(self, prefix: list[int]) -> list[int]: ...  # ids that would break the constraint next


def right_context_of(constraints: Sequence[Constraint]) -> tuple[int, ...]:
    """The token ids the span must lead into (empty without a right-context constraint)."""
    return next((c.tokens for c in constraints if isinstance(c, RightContext)), ())


def half_sq_dist(x: Tensor, y: Tensor) -> Tensor:
    """theta^2 / 2 with theta the geodesic distance; smooth at theta = 0 (its Riemannian gradient
    is -log_x(y)), unlike theta itself: (..., D) x (..., D) -> (...)."""
    cos = inner(x, y).squeeze(-1)
    sin = project(x, y).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    return 0.5 * torch.atan2(sin, cos) ** 2


def soft_min(x: Tensor, temperature: float, dim: int = -1) -> Tensor:
    """-t log sum exp(-x / t): below min(x) by at most t log(count), differentiable everywhere."""
    return -temperature * torch.logsumexp(-x / temperature, dim)


def contains(tokens: Tensor, form: tuple[int, ...]) -> Tensor:
    """Whether each row of (K, n) ids holds `form` as a contiguous run: -> (K,) bool."""
    m = len(form)
    if m == 0 or m > tokens.shape[1]:
        return torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    runs = tokens.unfold(1, m, 1)  # (K, n - m + 1, m)
    return (runs == torch.tensor(form, device=tokens.device)).all(-1).any(-1)


def _forms(forms: tuple[tuple[int, ...], ...], what: str) -> tuple[tuple[int, ...], ...]:
    forms = tuple(tuple(int(t) for t in f) for f in forms if len(f) > 0)
    if not forms:
        raise ValueError(f"{what} has no tokens: give a non-empty word or phrase")
    return forms


@dataclass(frozen=True)
class Keyword:
    """A word or phrase that must appear somewhere in the span: a user-placed attractor. Its
    energy is the soft minimum over start positions t of sum_j theta(z_(t+j), e_(k_j))^2 / 2, times
    kappa so that weight 1 pulls about as hard as one token's basin in the landscape."""

    forms: tuple[tuple[int, ...], ...]  # token ids of each surface form (" word", "word"); the first attracts
    embeddings: Tensor  # (V, D)
    label: str = ""
    weight: float = 1.0
    kappa: float = 32.0
    temperature: float = 0.1  # of the soft minimum over positions, in units of theta^2 / 2
    kind = "keyword"
    hard = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "forms", _forms(self.forms, f"keyword {self.label!r}"))

    def energy(self, view: SpanView) -> Tensor:
        z, form = view.points, self.forms[0]
        m = len(form)
        if m > z.shape[1]:
            raise ValueError(f"keyword {self.label!r} is {m} tokens, longer than the span of {z.shape[1]}")
        target = self.embeddings[list(form)]  # (m, D)
        windows = z.unfold(1, m, 1).transpose(-1, -2)  # (K, n - m + 1, m, D)
        cost = half_sq_dist(windows, target).sum(-1)  # (K, n - m + 1)
        return self.weight * self.kappa * soft_min(cost, self.temperature)

    def met(self, tokens: Tensor, energy: Tensor) -> Tensor:
        return torch.stack([contains(tokens, f) for f in self.forms]).any(0)

    def candidates(self) -> tuple[int, ...]:
        return tuple(sorted({t for f in self.forms for t in f}))

    def banned_next(self, prefix: list[int]) -> list[int]:
        return []


@dataclass(frozen=True)
class Avoid:
    """A word that must not appear: a repulsor, sum over positions of a vMF bump
    exp(kappa (z . e_w - 1)) at the word's tokens, and in the discrete draw the token that would
    complete one of its forms is never picked."""

    forms: tuple[tuple[int, ...], ...]
    embeddings: Tensor  # (V, D)
    label: str = ""
    weight: float = 1.0
    kappa: float = 32.0
    kind = "avoid"
    hard = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "forms", _forms(self.forms, f"avoid word {self.label!r}"))

    def energy(self, view: SpanView) -> Tensor:
        ids = sorted({t for f in self.forms for t in f})
        cos = torch.einsum("knd,ad->kna", view.points, self.embeddings[ids])  # (K, n, A)
        return self.weight * torch.exp(self.kappa * (cos - 1)).sum((1, 2))

    def met(self, tokens: Tensor, energy: Tensor) -> Tensor:
        return ~torch.stack([contains(tokens, f) for f in self.forms]).any(0)

    def candidates(self) -> tuple[int, ...]:
        return ()

    def banned_next(self, prefix: list[int]) -> list[int]:
        return [f[-1] for f in self.forms if len(f) == 1 or list(f[:-1]) == prefix[len(prefix) - len(f) + 1 :]]


@dataclass(frozen=True)
class RightContext:
    """Text that must follow the span (infilling): its NLL under p_E given prompt and span, in
    nats. Weight 1 makes pi the exact posterior p_E(x | prompt, right context)."""

    tokens: tuple[int, ...]
    label: str = ""
    weight: float = 1.0
    kind = "right_context"
    hard = False
    threshold: float | None = None  # NLL per token under which the join counts as met; None: always met

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("the right context has no tokens: give some text, or leave it out")

    def energy(self, view: SpanView) -> Tensor:
        if view.right_logits is None:
            raise ValueError("a right context needs the model's logits at its positions (SpanView.right_logits)")
        right = torch.tensor(self.tokens, device=view.right_logits.device)
        logp = torch.log_softmax(view.right_logits, -1)  # (K, R, V)
        return self.weight * -logp.gather(-1, right.expand(logp.shape[0], -1)[..., None]).squeeze(-1).sum(-1)

    def met(self, tokens: Tensor, energy: Tensor) -> Tensor:
        if self.threshold is None:
            return torch.ones_like(energy, dtype=torch.bool)
        return energy / max(self.weight, 1e-12) <= self.threshold * len(self.tokens)

    def candidates(self) -> tuple[int, ...]:
        return ()

    def banned_next(self, prefix: list[int]) -> list[int]:
        return []


@dataclass(frozen=True)
class Topic:
    """Stay near a set of directions (words' embeddings or splat means): the span's mean over
    positions of the soft minimum over directions of 1 - cos. Met when some token of the span lies
    within cosine `threshold` of a direction."""

    directions: Tensor  # (M, D) unit vectors
    embeddings: Tensor  # (V, D)
    label: str = ""
    weight: float = 1.0
    temperature: float = 0.05
    threshold: float = 0.5
    kind = "topic"
    hard = False

    def __post_init__(self) -> None:
        if self.directions.ndim != 2 or self.directions.shape[0] == 0:
            raise ValueError("a topic needs at least one direction (a word or a splat)")

    def energy(self, view: SpanView) -> Tensor:
        cos = torch.einsum("knd,md->knm", view.points, self.directions)  # (K, n, M)
        return self.weight * soft_min(1 - cos, self.temperature).mean(-1).clamp_min(0)

    def met(self, tokens: Tensor, energy: Tensor) -> Tensor:
        cos = self.embeddings[tokens] @ self.directions.T  # (K, n, M)
        return cos.flatten(1).max(-1).values >= self.threshold

    def candidates(self) -> tuple[int, ...]:
        return ()

    def banned_next(self, prefix: list[int]) -> list[int]:
        return []


def riemannian_grad(constraint: Constraint, view: SpanView) -> tuple[Tensor, Tensor]:
    """(energy (K,), its Riemannian gradient at the points (K, n, D)) by autograd, projected."""
    z = view.points.detach().requires_grad_(True)
    with torch.enable_grad():
        e = constraint.energy(view._replace(points=z))
        (grad,) = torch.autograd.grad(e.sum(), z)
    return e.detach(), project(z.detach(), grad)


KINDS = ("keyword", "avoid", "right_context", "topic")
DEFAULT_WEIGHTS = {"keyword": 2.0, "avoid": 1.0, "right_context": 1.0, "topic": 1.0}


def word_forms(word: str, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str]) -> tuple[tuple[int, ...], ...]:
    """The ids of a word or phrase as it reads inside a text (" word") and at its start ("word").
    A word the tokenizer cannot write back is refused: its characters are unknown to it."""
    word = word.strip()
    if not word:
        raise ValueError("an empty word was given: remove the extra comma or give a word")
    forms = []
    for text in (" " + word, word):
        ids = tuple(encode(text))
        if decode(list(ids)) != text:
            raise ValueError(f"{word!r} is not in the model's vocabulary: its tokenizer cannot write it back")
        if ids not in forms:
            forms.append(ids)
    return tuple(forms)


def from_text(
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    embeddings: Tensor,
    keywords: Sequence[str] = (),
    avoid: Sequence[str] = (),
    right_context: str = "",
    topic: Sequence[str] = (),
    topic_directions: Tensor | None = None,
    weights: dict[str, float] | None = None,
) -> list[Constraint]:
    """Constraints from what a user typed, with each kind's weight (DEFAULT_WEIGHTS otherwise).
    Topic words and topic_directions (splat means, say) form one topic."""
    unknown = set(weights or {}) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown constraint {sorted(unknown)[0]!r} in the weights; use {', '.join(KINDS)}")
    w = DEFAULT_WEIGHTS | dict(weights or {})
    emb = embeddings.detach()
    out: list[Constraint] = [Keyword(word_forms(k, encode, decode), emb, label=k.strip(), weight=w["keyword"]) for k in keywords]
    out += [Avoid(word_forms(a, encode, decode), emb, label=a.strip(), weight=w["avoid"]) for a in avoid]
    if right_context.strip():
        out.append(RightContext(tuple(encode(right_context)), label="right context", weight=w["right_context"]))
    directions = [emb[list(word_forms(t, encode, decode)[0])] for t in topic]
    if topic_directions is not None:
        directions.append(normalize(topic_directions.detach().to(emb)))
    if directions:
        label = "topic: " + ", ".join(t.strip() for t in topic) if topic else "topic"
        out.append(Topic(torch.cat(directions), emb, label=label, weight=w["topic"]))
    return out
