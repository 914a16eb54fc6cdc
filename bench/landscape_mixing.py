"""Does the sampler's chain draw p_E's tokens? Total variation against exact draws.

For contexts of the in-domain test split, many chains per context run on the sampler's
landscape (ebm.landscape) from g(c) plus a little noise, and each draws its token from the
energy at its end point. The table compares the drawn tokens' law with p_E after the same
filtering: its total variation distance, the same distance for as many exact draws (the
sampling noise alone), the top-5 tokens' excess mass, and the entropy of p(w | z*, c) (how much
the end point decides the token).

python bench/landscape_mixing.py --checkpoint runs/.../latest.pt --strength 2 --dt 0.1 0.2 --steps 50 150
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ebm.geometry import normalize  # noqa: E402
from ebm.landscape import draw, filter_logits, landscape, posterior_logits  # noqa: E402
from ebm.langevin import langevin_sample  # noqa: E402
from ebm.sampler import basin_kappa, chain_temperature, landscape_fn  # noqa: E402


def token_law(counts: torch.Tensor) -> torch.Tensor:
    return counts.float() / counts.sum()


@torch.no_grad()
def mixing_row(model, contexts, args, strength: float, dt: float, gamma: float, steps: int) -> dict:
    """Mean over contexts of the chain's distance to p_E, and of exact draws' distance."""
    d, n = model.cfg.latent_dim, args.chains
    gen = torch.Generator().manual_seed(0)
    tv, floor, top5, entropy = [], [], [], []
    for g, u, h in contexts:
        land = landscape(
            filter_logits(model.energy_logits(g, u, h), args.temperature, args.top_k), model.embeddings, basin_kappa(strength, d)
        )
        land = type(land)(*(x.expand(n, *x.shape[1:]) for x in land[:3]), land.kappa)
        z0 = normalize(g.expand(n, -1) + 0.01 * torch.randn(n, d, generator=gen))
        run = langevin_sample(z0, landscape_fn(land), steps, dt, gamma, chain_temperature(1.0, d), gen)
        k = land.tokens.shape[1]
        index = {int(t): i for i, t in enumerate(land.tokens[0])}
        drawn = torch.tensor([index[int(t)] for t in draw(run.z, land, gen)])
        exact = torch.softmax(land.logits[0], -1)
        chain = token_law(torch.bincount(drawn, minlength=k))
        ideal = token_law(torch.bincount(torch.multinomial(exact, n, True, generator=gen), minlength=k))
        tv.append(0.5 * float((chain - exact).abs().sum()))
        floor.append(0.5 * float((ideal - exact).abs().sum()))
        top5.append(float(chain[:5].sum() - exact[:5].sum()))
        post = torch.softmax(posterior_logits(run.z, land), -1)
        entropy.append(float(-(post * post.clamp_min(1e-12).log()).sum(-1).mean()))
    return {
        "strength": strength,
        "dt": dt,
        "gamma": gamma,
        "steps": steps,
        "tv": np.mean(tv),
        "tv_exact": np.mean(floor),
        "top5_excess": np.mean(top5),
        "posterior_entropy": np.mean(entropy),
    }


def test_contexts(model, tok, count: int) -> list[tuple]:
    from trainer.data import default_cache_dir, load_corpus, tokenize_split

    test = np.asarray(tokenize_split(load_corpus("builtin"), "test", tok, default_cache_dir(), progress=False))
    span = model.cfg.context_global
    out = []
    for s in np.linspace(0, len(test) - span - 1, count).astype(int):
        window = torch.tensor([test[s : s + span].tolist()])
        out.append(tuple(x.reshape(1, -1) for x in model.contexts(window, 1)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--contexts", type=int, default=8)
    p.add_argument("--chains", type=int, default=4000, help="chains (and exact draws) per context")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of p_E")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--strength", type=float, nargs="+", default=[2.0], help="kappa / sqrt(d - 1)")
    p.add_argument("--dt", type=float, nargs="+", default=[0.2])
    p.add_argument("--gamma", type=float, nargs="+", default=[0.2])
    p.add_argument("--steps", type=int, nargs="+", default=[150])
    args = p.parse_args()
    from trainer.loading import load_run

    _, model, tok = load_run(Path(args.checkpoint))
    model.eval()
    with torch.no_grad():
        contexts = test_contexts(model, tok, args.contexts)
    print(f"{args.contexts} contexts x {args.chains} chains, sampling T {args.temperature:g}, top-k {args.top_k}\n")
    print("| strength | dt | gamma | steps | TV to p_E | TV of exact draws | top-5 excess | H(w given z*) nats | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for strength, dt, gamma, steps in itertools.product(args.strength, args.dt, args.gamma, args.steps):
        t = time.perf_counter()
        r = mixing_row(model, contexts, args, strength, dt, gamma, steps)
        took = time.perf_counter() - t
        print(
            f"| {strength:g} | {dt:g} | {gamma:g} | {steps} | {r['tv']:.3f} | {r['tv_exact']:.3f} | "
            f"{r['top5_excess']:+.3f} | {r['posterior_entropy']:.2f} | {took:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
