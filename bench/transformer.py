"""The neural baseline of bench/ppl.py that this project wrote: a small causal transformer in the
style of nanoGPT (pre-norm blocks, tied input/output embeddings, dropout as nanoGPT places it,
AdamW with warm-up and cosine decay). bench/hf_gpt2.py is the one it did not write."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 545
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    dropout: float = 0.0


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd))
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, L, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True).transpose(1, 2).reshape(B, L, C)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.mlp(self.ln2(x)))


class NextTokenLM(nn.Module):
    """What bench/ppl.py trains and scores: a module whose forward maps (B, L) ids to (B, L, V)
    next-token logits. This project's GPT and bench/hf_gpt2.py's HFGPT2 share it."""

    def loss(self, window: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over every position of (B, L + 1) windows."""
        logits = self(window[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), window[:, 1:].reshape(-1))

    @torch.no_grad()
    def target_logprobs(self, window: torch.Tensor, n_targets: int) -> torch.Tensor:
        """log p(target) of the last n_targets tokens of (B, L + 1) windows: (B, n_targets)."""
        logits = self(window[:, :-1])[:, -n_targets:].float()
        return torch.log_softmax(logits, -1).gather(-1, window[:, -n_targets:, None]).squeeze(-1)


class GPT(NextTokenLM):
    def __init__(self, cfg: GPTConfig, log_prior: torch.Tensor | None = None):
        """`log_prior` (V,): a learned output bias started there (the EBM's token prior), else none."""
        super().__init__()
        self.cfg = cfg
        self.out_bias = nn.Parameter(log_prior.float().clone()) if log_prior is not None else None
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def non_embedding_params(self) -> int:
        return sum(p.numel() for p in self.parameters()) - self.wte.weight.numel() - self.wpe.weight.numel()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, V) logits of the next token at each position."""
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T  # tied output embedding
        return logits if self.out_bias is None else logits + self.out_bias


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
