"""Mixture-of-experts decoder p_D(w | z, c) (docs/design.md, "Decoder").

Notation: N inputs, D latent_dim, E experts, A active experts per input, V vocabulary.
Input [z; h(c)] (N, 2D); a linear router picks the top-A experts and renormalises their
gates; each expert is an MLP 2D -> hidden -> D whose output o is scored against the tied,
unit token embeddings: logits = o . e_w.
Load balancing (Switch Transformer, Fedus et al. 2021): E * sum_e f_e P_e, where f_e is the
share of routed slots that go to expert e and P_e the mean router probability; it is 1 when
routing is uniform.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .config import EBMConfig
from .ops import row_scores
from .shard import SOLO, Shard

Tensor = torch.Tensor


class DecoderOut(NamedTuple):
    logits: Tensor  # (N, V)
    balance: Tensor  # () load-balancing loss


class MixOut(NamedTuple):
    output: Tensor  # (N, D) gated expert output, before the vocabulary head
    balance: Tensor  # () load-balancing loss


def balance_loss(router_probs: Tensor, chosen: Tensor, n_experts: int, shard: Shard = SOLO) -> tuple[Tensor, Tensor]:
    """(N, E) probabilities, (N, A) chosen expert ids -> (loss, load (E,)), both statistics of
    the global batch when it is split over data-parallel processes."""
    counts = shard.total(torch.bincount(chosen.reshape(-1), minlength=n_experts).to(router_probs.dtype))
    load = counts / counts.sum().clamp_min(1)
    mean_probs = shard.total(router_probs.sum(0)) / (router_probs.shape[0] * shard.world)  # (E,)
    return n_experts * (load * mean_probs).sum(), load


class MoEDecoder(nn.Module):
    def __init__(self, cfg: EBMConfig):
        super().__init__()
        d = cfg.latent_dim
        self.n_experts, self.active = cfg.moe_experts, cfg.moe_active
        self.norm = nn.LayerNorm(2 * d)
        self.router = nn.Linear(2 * d, cfg.moe_experts)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * d, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, d))
            for _ in range(cfg.moe_experts)
        )

    def forward(
        self, z: Tensor, h: Tensor, embeddings: Tensor, head_dtype: torch.dtype = torch.float32, bias: Tensor | None = None
    ) -> DecoderOut:
        """z (N, D), h (N, D), embeddings (V, D), bias (V,) the token prior -> logits (N, V);
        head_dtype: see ebm.ops.row_scores."""
        out = self.mix(z, h)
        return DecoderOut(row_scores(out.output, embeddings, bias, dtype=head_dtype), out.balance)

    def mix(self, z: Tensor, h: Tensor, shard: Shard = SOLO) -> MixOut:
        """z (N, D), h (N, D) -> the gated expert output o (N, D), scored as logits = o . e_w."""
        x = self.norm(torch.cat([z * z.shape[-1] ** 0.5, h], dim=-1))  # (N, 2D)
        probs = torch.softmax(self.router(x), dim=-1)  # (N, E)
        gates, chosen = probs.topk(self.active, dim=-1)  # (N, A)
        gates = gates / gates.sum(-1, keepdim=True)
        out = x.new_zeros(x.shape[0], z.shape[1])  # (N, D)
        # Rows grouped by expert with one host sync for all experts (the group sizes), where a
        # `nonzero` per expert would stall a GPU stream once per expert.
        order = chosen.reshape(-1).argsort(stable=True)  # (N A)
        sizes = torch.bincount(chosen.reshape(-1), minlength=self.n_experts).tolist()
        for expert, rows, slot in zip(self.experts, (order // self.active).split(sizes), (order % self.active).split(sizes)):
            if rows.numel():
                out.index_add_(0, rows, gates[rows, slot, None] * expert(x[rows]))
        loss, _ = balance_loss(probs, chosen, self.n_experts, shard)
        return MixOut(output=out, balance=loss)
