import torch
from conftest import random_windows, small_model

from ebm import token_logprobs


def test_exact_distribution_sums_to_one_and_matches_term_by_term_reference(gen):
    """The token term (splats as a context-free energy of each token); tests/test_attractors.py
    checks the context term against its own reference."""
    model = small_model(splat_term="token")
    cfg = model.cfg
    tokens = random_windows(cfg, batch=2, gen=gen)
    T = cfg.seq_length
    logp = token_logprobs(model, tokens, T)
    with torch.no_grad():
        ctx = model.contexts(tokens[:, :-1], T)
        emb = model.embeddings
        # Slow reference: every term of E(e_w; c) for every token, neighbours by brute force.
        mu, alpha, kappa, tau = model.splats.mu, model.splats.log_alpha.exp(), model.splats.kappa, float(model.splats.tau)
        cos = emb @ mu.T  # (V, K)
        top = cos.topk(cfg.knn_k, dim=-1).indices
        kern = torch.gather(alpha[None] * torch.exp(kappa[None] * (cos - 1) / tau), 1, top)
        e_splat = -tau * torch.log(kern.sum(-1))  # (V,)
        for b in range(2):
            for t in range(T):
                e_geo = -model.beta * emb @ ctx.g[b, t]
                e_comp = -emb @ ctx.u[b, t]
                energy = e_splat + e_geo + e_comp
                p = torch.softmax(-energy / cfg.vocab_temperature, 0)
                torch.testing.assert_close(p.sum(), torch.tensor(1.0))
                target = tokens[b, -T + t]
                torch.testing.assert_close(logp[b, t], p[target].log(), atol=1e-4, rtol=1e-4)
