"""EleutherAI's lm-evaluation-harness on a checkpoint: a model named "ebm".

    ebm-lm-eval run --model ebm --model_args checkpoint=checkpoints/<run_id> \
        --tasks ebm_builtin_rolling --include_path bench/lm_eval_tasks

lm-eval 0.4 finds a model outside its own package only when the module that registers it has
been imported in its process, so `ebm-lm-eval` imports this module and hands its arguments to
lm-eval's own command line. p_E is an exact softmax over the vocabulary, so every request type is
answered exactly:

  loglikelihood          log p_E(continuation | context), and whether each continuation token is
                         p_E's argmax; the context is cut to the window's last context_global tokens
  loglikelihood_rolling  a whole text scored as ebm-evaluate scores it (an end-of-text token first,
                         windows of context_global tokens, stride half of it)
  generate_until         tokens drawn from p_E (greedy unless do_sample), stopped at `until`

The Langevin and constrained samplers stay this project's own API (ebm.sampler, ebm.composition).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from ebm import token_logprobs
from ebm.composition import next_logits
from ebm.sampler import sample_token
from trainer.evaluation import sliding_sums
from trainer.loading import load_run


@register_model("ebm")
class EBMEvalModel(LM):
    """A checkpoint (a run folder or a .pt file beside its tokenizer.json) for lm-eval."""

    def __init__(self, checkpoint: str, device: str = "cpu", batch_size: int | str = 16, stride: int = 0, **_: object):
        super().__init__()
        _, self.model, self.tokenizer = load_run(checkpoint)
        if str(device).startswith("cuda") and not torch.cuda.is_available():  # lm-eval's default device
            print(f"ebm-lm-eval: no CUDA device for --device {device}; scoring on the CPU", file=sys.stderr)
            device = "cpu"
        self.model.to(device).eval()
        self.context = self.model.cfg.context_global
        self.stride = int(stride) or max(1, self.context // 2)
        self.rows = int(batch_size) if str(batch_size).isdigit() else 16
        self.eot = self.tokenizer.tokenizer.token_to_id("<|endoftext|>")

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def _split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of context (after an end-of-text token) and continuation, encoded together so
        a word split across the boundary keeps the tokens the whole text has."""
        head = [self.eot] if self.eot is not None else []
        whole, ctx = self._encode(context + continuation), self._encode(context)
        if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
            return head + ctx, whole[len(ctx) :]
        return head + ctx, self._encode(continuation)

    @torch.no_grad()
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        out = []
        device = self.model.embeddings.device
        for request in requests:
            ctx, cont = self._split(*request.args)
            ids = (ctx + cont)[-(self.context + 1) :]
            prefixes = torch.stack([torch.tensor(ids[:-1], device=device)])  # (1, L)
            logits = self._position_logits(prefixes, len(cont))  # (n, V)
            target = torch.tensor(cont, device=device)
            logp = torch.log_softmax(logits, -1).gather(-1, target[:, None]).squeeze(-1)
            out.append((float(logp.sum()), bool((logits.argmax(-1) == target).all())))
        return out

    def _position_logits(self, inputs: torch.Tensor, n: int) -> torch.Tensor:
        """Unnormalised log p_E of the next token at each of the last n positions of (1, L) inputs: (n, V)."""
        g, u, h = (x[0] for x in self.model.contexts(inputs, n))  # each (n, D)
        return self.model.energy_logits(g, u, h)

    @torch.no_grad()
    def loglikelihood_rolling(self, requests) -> list[float]:
        out = []
        for request in requests:
            (text,) = request.args
            tokens = np.asarray(([self.eot] if self.eot is not None else []) + self._encode(text), dtype=np.int64)
            total = sliding_sums(self._window_logprob, tokens, self.context, self.stride, self.rows)
            out.append(float(total[0]))
        return out

    def _window_logprob(self, rows: torch.Tensor, new: int) -> np.ndarray:
        """log p_E of the last `new` tokens of each window, summed: what ebm-evaluate sums."""
        return np.array([token_logprobs(self.model, rows.to(self.model.embeddings.device), new).double().sum().item()])

    @torch.no_grad()
    def generate_until(self, requests) -> list[str]:
        out = []
        gen = torch.Generator(device=self.model.embeddings.device).manual_seed(0)
        for request in requests:
            context, kwargs = request.args
            until = [s for s in kwargs.get("until", []) if s]
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample", False) else 0.0
            ids = ([self.eot] if self.eot is not None else []) + self._encode(context)
            new: list[int] = []
            for _ in range(int(kwargs.get("max_gen_toks", 64))):
                window = torch.tensor([(ids + new)[-self.context :]], device=self.model.embeddings.device)
                new.append(sample_token(next_logits(self.model, window)[0], temperature, 0, 1.0, gen))
                text = self.tokenizer.decode(new)
                if any(s in text for s in until) or new[-1] == self.eot:
                    break
            text = self.tokenizer.decode(new)
            cut = min((text.index(s) for s in until if s in text), default=len(text))
            out.append(text[:cut])
        return out


def main() -> None:
    """ebm-lm-eval: lm-eval's command line with the "ebm" model registered."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv[0] = "ebm-lm-eval"
    cli_evaluate()


if __name__ == "__main__":
    main()
