"""Where Langevin chains end at each temperature, on a trained checkpoint: the decoder's
perplexity of the true next token from the end point z*, how far z* moved from its start g(c),
and how close it sits to its nearest splat mean and token (does it settle in a basin?). And
whether z* knows anything p_E does not: the best mixture (1 - lambda) p_E + lambda p_D(z*) over
a grid of lambda, chosen on the scored targets themselves (so it flatters the mixture); lambda = 0
means the decoder at z* adds nothing to p_E.

Temperatures are per degree of freedom (the chain runs at T / (d - 1), ebm.sampler); the row
"T = 1 unscaled" is the chain at temperature 1 itself, as the sampler ran before the scaling.

python bench/langevin_temperature.py --checkpoint RUN/latest.pt
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ebm.sampler import SamplerSettings, basin_of, sample  # noqa: E402
from trainer.data import Windows, default_cache_dir, load_corpus, tokenize_split  # noqa: E402
from trainer.loading import load_run  # noqa: E402

MIX_WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)


@torch.no_grad()
def chain_row(model, windows: torch.Tensor, settings: SamplerSettings, n_targets: int) -> dict:
    """Decoder NLL of the targets from z*, the best mixture of it with p_E, and cosines of z* to
    g(c), its nearest splat and token."""
    cfg = model.cfg
    g, u, h = (x.reshape(-1, cfg.latent_dim) for x in model.contexts(windows[:, :-1], n_targets))
    targets = windows[:, -n_targets:].reshape(-1, 1)
    run = sample(model, g, g, u, settings, torch.Generator().manual_seed(0), h=h)
    logits = model.decoder(run.z, h, model.embeddings, bias=model.log_prior).logits
    log_d = torch.log_softmax(logits.float(), -1).gather(-1, targets).squeeze(-1)  # (N,)
    log_e = torch.log_softmax(model.energy_logits(g, u, h), -1).gather(-1, targets).squeeze(-1)
    mix = {
        lam: -torch.logaddexp(log_e + math.log1p(-lam), log_d + math.log(lam)).mean().item() for lam in MIX_WEIGHTS if 0 < lam < 1
    }
    mix |= {0.0: -log_e.mean().item(), 1.0: -log_d.mean().item()}
    best = min(mix, key=mix.get)
    basin = basin_of(model, run.z)
    return {
        "decoder_ppl": math.exp(-log_d.mean().item()),
        "energy_ppl": math.exp(mix[0.0]),
        "mix_weight": best,
        "mix_ppl": math.exp(mix[best]),
        "cos_to_start": (run.z * g).sum(-1).mean().item(),
        "cos_to_splat": basin.splat_cos.mean().item(),
        "cos_to_token": basin.token_cos.mean().item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--windows", type=int, default=8, help="validation windows (targets: their last 32 positions each)")
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    _, model, tokenizer = load_run(Path(args.checkpoint))
    model.eval()
    cfg = model.cfg
    valid = np.asarray(tokenize_split(load_corpus("builtin"), "valid", tokenizer, default_cache_dir(), progress=False))
    w = Windows(valid, 0, cfg.context_global)
    windows = torch.from_numpy(w.batch(w.evenly_spaced(args.windows)))
    base = SamplerSettings.latent(cfg)._replace(steps=args.steps)
    rows = {"no chain (z* = g(c))": base._replace(steps=0), "T = 0 (flow)": base._replace(temperature=0.0)}
    rows |= {f"T = {t:g} per dimension": SamplerSettings.latent(cfg, t)._replace(steps=args.steps) for t in (0.3, 1.0, 3.0)}
    rows["T = 1 unscaled"] = base._replace(temperature=1.0)
    print(f"{args.checkpoint}: d = {cfg.latent_dim}, {args.steps} steps, {args.windows} x 32 validation targets\n")
    print(
        "| chain | decoder ppl from z* | p_E ppl | best lambda | mixture ppl | cos(z*, g) | cos to nearest splat mean "
        "| cos to nearest token |\n|---|---|---|---|---|---|---|---|"
    )
    for name, settings in rows.items():
        r = chain_row(model, windows, settings, 32)
        cells = " | ".join(f"{r[k]:.3f}" for k in ("cos_to_start", "cos_to_splat", "cos_to_token"))
        print(f"| {name} | {r['decoder_ppl']:.1f} | {r['energy_ppl']:.1f} | {r['mix_weight']:g} | {r['mix_ppl']:.1f} | {cells} |")


if __name__ == "__main__":
    main()
