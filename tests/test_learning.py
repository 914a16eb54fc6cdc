"""The model learns: on a sparse random Markov chain with a known entropy rate, a few hundred
CPU steps take ppl_energy from about the vocabulary size to within 25% of exp(entropy rate)."""

import math
import time

import torch

from ebm import EBMModel, decoder_logprobs, small_config, token_logprobs, training_loss


def markov_chain(vocab: int, successors: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    nxt = torch.stack([torch.randperm(vocab, generator=gen)[:successors] for _ in range(vocab)])  # (V, s)
    probs = torch.distributions.Dirichlet(torch.ones(successors)).sample((vocab,))  # (V, s)
    P = torch.zeros(vocab, vocab).scatter_(1, nxt, probs)
    pi = torch.full((vocab,), 1.0 / vocab)
    for _ in range(2000):
        pi = pi @ P
    entropy_rate = -(pi * (probs * probs.log()).sum(1)).sum().item()
    return nxt, probs, entropy_rate


def sample_chain(nxt, probs, n, gen):
    choice = torch.multinomial(probs, n, replacement=True, generator=gen)  # (V, n) pre-drawn choices
    out, state = [0], 0
    for i in range(n - 1):
        state = nxt[state, choice[state, i]].item()
        out.append(state)
    return torch.tensor(out)


def test_ppl_energy_approaches_entropy_rate():
    torch.manual_seed(0)
    V = 128
    nxt, probs, rate = markov_chain(V, 4, seed=1)
    optimum = math.exp(rate)
    gen = torch.Generator().manual_seed(2)
    train, valid = sample_chain(nxt, probs, 60000, gen), sample_chain(nxt, probs, 8000, gen)
    cfg = small_config(vocab_size=V)
    model = EBMModel(cfg)
    opt = torch.optim.AdamW(model.parameter_groups(), lr=cfg.learning_rate)
    L = cfg.context_global + cfg.seq_length + 1

    def windows(src, n):
        starts = torch.randint(0, len(src) - L, (n,), generator=gen)
        return torch.stack([src[s : s + L] for s in starts])

    held_out = windows(valid, 64)

    def ppl():
        return (
            math.exp(-token_logprobs(model, held_out).mean().item()),
            math.exp(-decoder_logprobs(model, held_out).mean().item()),
        )

    start_e, start_d = ppl()
    t0 = time.perf_counter()
    steps = 400
    for step in range(steps):
        model.refresh_neighbours(step)
        out = training_loss(model, windows(train, cfg.batch_size), gen)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    elapsed = time.perf_counter() - t0
    end_e, end_d = ppl()
    print(
        f"optimum {optimum:.3f}; ppl_energy {start_e:.1f} -> {end_e:.3f} ({end_e / optimum:.3f}x); "
        f"ppl_decoder {start_d:.1f} -> {end_d:.3f}; {steps} steps in {elapsed:.1f}s "
        f"({steps * cfg.batch_size * cfg.seq_length / elapsed:.0f} tokens/s)"
    )
    assert 0.5 * V < start_e < 3 * V
    assert end_e < 1.25 * optimum
    assert end_d < start_d / 10


def test_the_full_model_beats_a_unigram_on_real_text(tmp_path):
    """The built-in corpus (Wikipedia lead sections), a small byte-level BPE and a CI-sized budget:
    the whole model, trained through the Trainer as ebm-train trains it, scores its validation
    split well below the add-one unigram of the same training tokens."""
    import numpy as np

    from ebm.presets import PRESETS
    from trainer.data import load_corpus, tokenize_split
    from trainer.evaluation import score_text
    from trainer.options import RunOptions
    from trainer.tokenizer import load_tokenizer
    from trainer.trainer import Trainer

    corpus = load_corpus("builtin")
    tokenizer = load_tokenizer("bpe:2048", train_texts=corpus.splits["train"][:3000], cache_dir=tmp_path / "tok")
    train = np.asarray(tokenize_split(corpus, "train", tokenizer, tmp_path, progress=False))[:300_000]
    valid = np.asarray(tokenize_split(corpus, "valid", tokenizer, tmp_path, progress=False))[:20_000]
    smaller = {
        "latent_dim": 64,
        "context_heads": 2,
        "hidden_dim": 128,
        "context_global": 64,
        "context_medium": 32,
        "n_splats_init": 256,
        "curriculum_capacities": (256, 512, 1024),
        "max_splats": 2048,
    }
    cfg = small_config(
        **{**PRESETS["cpu"].config, **smaller, "vocab_size": tokenizer.vocab_size, "seq_length": 0, "eval_interval": 10_000}
    )
    opts = RunOptions(run_id="learn", out=tmp_path, max_steps=700, quiet=True, embeddings="own")  # ~45 s alone on 2 cores
    trainer = Trainer(cfg, opts, tokenizer, train, valid)
    trainer.fit()
    counts = np.bincount(train, minlength=cfg.vocab_size) + 1.0
    unigram = math.exp(-np.log(counts[valid[1:]] / counts.sum()).mean())
    model_ppl = score_text(trainer.model, valid, stride=32, batch_size=16)["ppl_energy"]
    print(f"{trainer.step} steps: ppl_energy {model_ppl:.1f}, add-one unigram {unigram:.1f} ({model_ppl / unigram:.2f}x)")
    assert model_ppl < 0.35 * unigram  # measured 0.13x
