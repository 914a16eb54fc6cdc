"""The baseline this project did not write: Hugging Face transformers' GPT2LMHeadModel, configured
to the EBM's width, depth, heads and window, behind the same two methods as bench/transformer.py's
GPT (loss, target_logprobs), so bench/ppl.py trains and scores both the same way."""

from __future__ import annotations

import torch
from torch import nn

from bench.transformer import GPTConfig, NextTokenLM


class HFGPT2(NextTokenLM):
    def __init__(self, cfg: GPTConfig, log_prior: torch.Tensor | None = None):
        """`log_prior` (V,): a learned output bias started there, else none (GPT-2 has no output bias)."""
        from transformers import GPT2Config, GPT2LMHeadModel

        super().__init__()
        self.cfg = cfg
        config = GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.block_size,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            bos_token_id=None,  # GPT-2's 50256 lies outside a smaller vocabulary; nothing here uses them
            eos_token_id=None,
        )
        self.gpt2 = GPT2LMHeadModel(config)
        self.out_bias = nn.Parameter(log_prior.float().clone()) if log_prior is not None else None

    def non_embedding_params(self) -> int:
        embeddings = self.gpt2.transformer.wte.weight.numel() + self.gpt2.transformer.wpe.weight.numel()
        return sum(p.numel() for p in self.parameters()) - embeddings

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, V) logits of the next token at each position."""
        logits = self.gpt2(input_ids=idx).logits
        return logits if self.out_bias is None else logits + self.out_bias
