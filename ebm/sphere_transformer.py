"""A causal transformer whose hidden states live on the sphere (docs/design.md, "Context encoder").

In the spirit of the normalised transformer (nGPT, Loshchilov et al. 2024): the hidden state
of every position is a unit vector, on the same sphere S^(D-1) as the token embeddings; each
block moves it towards the normalised output of attention (then of the MLP) by a learned
per-dimension step alpha and projects back onto the sphere; queries and keys are unit vectors
with a learned scale; weight matrices are read normalised along the model dimension.

The original design's multi-scale context becomes attention spans: the heads are split into
three groups that see the last context_local, context_medium and context_global tokens.

Notation: B batch, L tokens in the window, T positions whose context is wanted (the last T),
D latent_dim, H heads, E = D / H per head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EBMConfig
from .geometry import normalize

Tensor = torch.Tensor


def head_spans(cfg: EBMConfig) -> list[int]:
    """Tokens each head sees: the heads split in three groups, local, medium and global."""
    spans = (cfg.context_local, cfg.context_medium, cfg.context_global)
    return [spans[h * 3 // cfg.context_heads] for h in range(cfg.context_heads)]


def span_mask(spans: list[int], length: int, device: torch.device | None = None) -> Tensor:
    """(H, L, L) bool: query i may see key j when i - span < j <= i."""
    offset = torch.arange(length, device=device)[:, None] - torch.arange(length, device=device)[None, :]  # (L, L) i - j
    spans_t = torch.tensor(spans, device=device).view(-1, 1, 1)
    return (offset >= 0) & (offset < spans_t)


def rotary(x: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding over the L axis of (B, H, L, E): relative positions in q . k."""
    L, E = x.shape[-2], x.shape[-1]
    freq = base ** (-torch.arange(0, E, 2, device=x.device, dtype=torch.float32) / E)  # (E/2,)
    angle = torch.arange(L, device=x.device, dtype=torch.float32)[:, None] * freq  # (L, E/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class SphereLinear(nn.Linear):
    """A bias-free linear map whose weight is read unit-norm along the model dimension: rows for
    maps out of the sphere (`into_model=False`), columns for maps back into it."""

    def __init__(self, d_in: int, d_out: int, into_model: bool = False):
        super().__init__(d_in, d_out, bias=False)
        self.norm_dim = 0 if into_model else 1

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, F.normalize(self.weight, dim=self.norm_dim))


class SphereBlock(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int, alpha_init: float):
        super().__init__()
        self.heads = heads
        self.qkv = SphereLinear(d, 3 * d)
        self.attn_out = SphereLinear(d, d, into_model=True)
        self.up = SphereLinear(d, 2 * hidden)
        self.down = SphereLinear(hidden, d, into_model=True)
        self.qk_scale = nn.Parameter(torch.ones(d))  # s_qk: unit q, k reweighted per dimension
        self.gate_scale = nn.Parameter(torch.ones(2 * hidden))  # s_u, s_v of the gated MLP
        self.alpha_attn = nn.Parameter(torch.full((d,), alpha_init))  # step towards the attention output
        self.alpha_mlp = nn.Parameter(torch.full((d,), alpha_init))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """h (B, L, D) unit -> (B, L, D) unit; mask (H, L, L) bool, True where attention may look."""
        B, L, D = h.shape
        H, E = self.heads, D // self.heads
        q, k, v = (t.view(B, L, H, E).transpose(1, 2) for t in self.qkv(h).split(D, dim=-1))  # (B, H, L, E) each
        scale = self.qk_scale.view(H, 1, E)
        q, k = normalize(rotary(q)) * scale, normalize(rotary(k)) * scale
        # Unit q and k: a dot product lies in [-1, 1], so the softmax needs sqrt(E), not 1/sqrt(E).
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=E**0.5)
        h = normalize(h + self.alpha_attn * (normalize(self.attn_out(mixed.transpose(1, 2).reshape(B, L, D))) - h))
        u, gate = (self.up(h) * self.gate_scale).chunk(2, dim=-1)
        mlp = self.down(u * F.silu(gate * D**0.5))
        return normalize(h + self.alpha_mlp * (normalize(mlp) - h))


class SphereTransformer(nn.Module):
    """The context encoder: unit token embeddings in, the last T unit hidden states out."""

    def __init__(self, cfg: EBMConfig):
        super().__init__()
        d = cfg.latent_dim
        self.spans = head_spans(cfg)
        # A gated MLP of width 3D: with the attention's 4D^2, 13D^2 weights per block, about
        # a GPT block's 12D^2.
        alpha = 1.0 / cfg.context_layers  # nGPT's step size: deeper stacks take smaller steps
        self.blocks = nn.ModuleList(SphereBlock(d, cfg.context_heads, 3 * d, alpha) for _ in range(cfg.context_layers))

    def forward(self, emb: Tensor, last: int) -> Tensor:
        """emb (B, L, D) unit -> (B, T, D) unit hidden states of the last T positions."""
        mask = span_mask(self.spans, emb.shape[1], emb.device)
        h = emb
        for block in self.blocks:
            h = block(h, mask)
        return h[:, -last:]
