"""Context encoders (docs/design.md, "Context encoder"): the sphere transformer (the default)
and the original multi-scale encoder, kept as the small baseline (`context_encoder`).

Notation: B batch, L tokens in a window (history + targets), T positions whose context is
wanted (the last T of the window), D latent_dim, W = context_local, M = context_medium,
G = context_global.

For position p an encoder reads tokens <= p only. The multi-scale encoder:
  local   a self-attention block over tokens p-W+1..p with learned relative positions,
  medium  a causal mean over tokens p-M+1..p, then an MLP,
  global  a causal mean over tokens p-G+1..p, then an MLP.
Outputs: g(c) (unit direction for E_geo), u(c) = sum_s W_s h_s (for E_comp) and a summary
h(c) that the decoder reads.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import EBMConfig
from .geometry import normalize
from .sphere_transformer import SphereTransformer

Tensor = torch.Tensor


class ContextOut(NamedTuple):
    g: Tensor  # (B, T, D) unit vectors
    u: Tensor  # (B, T, D)
    h: Tensor  # (B, T, D)


def causal_window_mean(x: Tensor, window: int, last: int) -> Tensor:
    """Mean of x over positions p-window+1..p for the last `last` positions: (B, L, D) -> (B, T, D)."""
    L = x.shape[1]
    csum = F.pad(x.cumsum(1), (0, 0, 1, 0))  # (B, L+1, D); csum[:, p+1] = sum_{q<=p} x_q
    ends = torch.arange(L - last, L, device=x.device) + 1
    starts = (ends - window).clamp_min(0)
    counts = (ends - starts).to(x.dtype).view(1, -1, 1)
    return (csum[:, ends] - csum[:, starts]) / counts


def _mlp(d: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))


class LocalAttention(nn.Module):
    """One pre-norm attention block whose queries see only the last W tokens."""

    def __init__(self, d: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.norm = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.rel_pos = nn.Parameter(torch.zeros(window, d))  # offset 0 = the query's own token
        self.out = nn.Linear(d, d)
        self.mlp = _mlp(d, 2 * d)

    def forward(self, x: Tensor, last: int) -> Tensor:
        B, L, D = x.shape
        W, H = self.window, self.heads
        first = max(0, L - last - W + 1)  # earliest token any query can see
        xn = self.norm(x[:, first:])  # (B, L', D)
        positions = torch.arange(L - last, L, device=x.device) - first  # (T,) in the tail
        src = positions[:, None] - torch.arange(W, device=x.device)[None, :]  # (T, W) token of each slot
        valid = src >= 0
        # kv is linear: project each token once, then add the projected relative positions.
        kv_tokens = self.kv(xn)  # (B, L', 2D)
        kv_pos = self.rel_pos @ self.kv.weight.T  # (W, 2D)
        k, v = (kv_tokens[:, src.clamp_min(0)] + kv_pos).chunk(2, dim=-1)  # (B, T, W, D) each
        q = self.q(xn[:, positions]).view(B, last, H, D // H)
        k = k.view(B, last, W, H, D // H)
        v = v.view(B, last, W, H, D // H)
        scores = torch.einsum("bthe,btwhe->bthw", q, k) / (D // H) ** 0.5  # (B, T, H, W)
        scores = scores.masked_fill(~valid[None, :, None, :], float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        mixed = torch.einsum("bthw,btwhe->bthe", attn, v).reshape(B, last, D)
        h = x[:, L - last :] + self.out(mixed)
        return h + self.mlp(h)


class MultiScaleEncoder(nn.Module):
    def __init__(self, cfg: EBMConfig):
        super().__init__()
        d = cfg.latent_dim
        self.cfg = cfg
        self.input_scale = d**0.5  # unit embeddings have entries ~ 1/sqrt(d)
        self.local = LocalAttention(d, cfg.context_heads, cfg.context_local)
        self.medium = _mlp(d, 2 * d)
        self.glob = _mlp(d, 2 * d)
        self.to_g = nn.Linear(3 * d, d)
        self.to_u = nn.ModuleDict({s: nn.Linear(d, d) for s in ("local", "medium", "global")})
        self.summary_norm = nn.LayerNorm(d)

    def forward(self, emb: Tensor, last: int) -> ContextOut:
        """emb (B, L, D) unit token embeddings -> contexts of the last `last` positions."""
        x = emb * self.input_scale
        h_local = self.local(x, last)  # (B, T, D)
        h_medium = self.medium(causal_window_mean(x, self.cfg.context_medium, last))
        h_global = self.glob(causal_window_mean(x, self.cfg.context_global, last))
        scales = {"local": h_local, "medium": h_medium, "global": h_global}
        g = normalize(self.to_g(torch.cat([h_local, h_medium, h_global], dim=-1)))
        u = sum(self.to_u[s](h) for s, h in scales.items())
        h = self.summary_norm(h_local + h_medium + h_global)
        return ContextOut(g=g, u=u, h=h)


class TransformerEncoder(nn.Module):
    """g(c) is the last hidden state of the sphere transformer itself, a unit vector on the
    tokens' sphere; u(c) and the decoder's summary are read from it."""

    def __init__(self, cfg: EBMConfig):
        super().__init__()
        d = cfg.latent_dim
        self.backbone = SphereTransformer(cfg)
        self.to_u = nn.Linear(d, d)
        self.summary_norm = nn.LayerNorm(d)
        self.input_scale = d**0.5

    def forward(self, emb: Tensor, last: int) -> ContextOut:
        """emb (B, L, D) unit token embeddings -> contexts of the last `last` positions."""
        h = self.backbone(emb, last)  # (B, T, D) unit
        # Read at entries of order one (as the multi-scale encoder's inputs): u(c) then starts near
        # the logit scale a tied softmax needs; from the unit state, 100 steps gave 392 against 287.
        scaled = h * self.input_scale
        return ContextOut(g=h, u=self.to_u(scaled), h=self.summary_norm(scaled))


def context_encoder(cfg: EBMConfig) -> nn.Module:
    """The encoder the config names."""
    return TransformerEncoder(cfg) if cfg.context_encoder == "transformer" else MultiScaleEncoder(cfg)
