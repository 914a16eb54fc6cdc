"""Throughput at the default config, each table with its baseline in the same run (ratio column).

python bench/speed.py --out bench/results            # everything (about 15 minutes on 2 cores)
python bench/speed.py --only step langevin knn        # some sections
python bench/speed.py --only knn --knn-sizes 10000    # smaller

Sections: step (training step split by component), langevin (200-step sampling, batch 1/32/256,
torch vs Vulkan), knn (flat / HNSW / torch brute force / Vulkan, recall against exact), umap
(cold and cached), vulkan (each kernel on the Vulkan device vs torch on the CPU).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import peak_rss_mb  # noqa: E402
from ebm import EBMConfig, EBMModel, SamplerSettings, VulkanBackend, objective, sample, training_loss  # noqa: E402
from ebm.backend import TORCH  # noqa: E402
from ebm.geometry import normalize, perturb, random_points  # noqa: E402
from ebm.knn import SplatIndex, exact_knn, recall  # noqa: E402
from ebm.ops import head_dtype  # noqa: E402
from ebm.presets import PRESETS  # noqa: E402
from ebm.soc import SOCController  # noqa: E402
from trainer.heap import release_free_heap  # noqa: E402

SECTIONS = ("step", "langevin", "knn", "umap", "vulkan", "memory")


def timed(fn, repeats: int = 3, warmup: int = 1, device: torch.device | str = "cpu") -> tuple[float, list[float]]:
    """Median seconds of `repeats` calls after `warmup` calls, and all the timings; on a CUDA
    device each call is timed to the end of the work it queued."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def table(title: str, header: list[str], rows: list[list]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def vulkan_device():
    try:
        from ebm.vulkan import get_device

        return get_device("vulkan")
    except Exception as err:  # no kp, no driver: the Vulkan rows say why
        print(f"(no Vulkan rows: {err})", file=sys.stderr)
        return None


# ----------------------------------------------------------------------------- sections


def step_parts(model: EBMModel, tokens: torch.Tensor, gen: torch.Generator) -> dict:
    """The terms of ebm.objective, each timed alone on one fixed batch (heads forward + backward)."""
    cfg = model.cfg
    t = objective.targets_of(model, tokens)
    noisy = objective.noisy_targets_of(model, t, gen)
    latents = objective.decoder_latents(noisy, t, gen).detach()
    frozen = t._replace(g=t.g.detach(), u=t.u.detach(), h=t.h.detach())
    soc = SOCController(cfg)
    with torch.no_grad():  # what the trainer hands the SOC buffer after a step (points of splat_dim)
        step = training_loss(model, tokens, gen)
    soc.observe(step.target_points, step.target_energy)

    def energy_head():  # from the embedding table and the splats to the loss and back
        emb, beta = model.embeddings, model.beta
        splat_vocab = model.vocab_splat_energy(emb) if cfg.splat_term == "token" else None
        retrieval = model.retrieve(beta * frozen.g + frozen.u, frozen.h) if cfg.retrieves_splats else None
        live = frozen._replace(emb=emb, splat_vocab=splat_vocab, beta=beta, retrieval=retrieval)
        objective.energy_nll(model, live).backward()

    heads = str(head_dtype(cfg.head_dtype, tokens.device))[6:]
    return {
        "context encoder, forward + backward": lambda: sum(
            x.sum() for x in objective.encode(model, tokens[:, :-1], cfg.targets_per_window, model.embeddings)
        ).backward(),
        f"p_E NLL: vocabulary head + splat retrieval ({cfg.splat_term}), forward + backward ({heads} head)": energy_head,
        "score matching (FAISS search of noisy targets + gradient)": lambda: objective.score_matching(model, t, noisy),
        "decoder (MoE) + its NLL, forward + backward": lambda: objective.decoder_nll(
            model, frozen._replace(emb=model.embeddings), latents
        )[0].backward(),
        "SOC check (every soc_check_interval steps)": lambda: soc.check(model.splats, model.neighbours.index, 1, 10**6, 0, None),
        "vocabulary neighbour refresh (every knn_refresh_interval steps)": lambda: model.refresh_neighbours(force=True),
    }


def step_on_fixed_batch(cfg: EBMConfig, device: torch.device | str = "cpu", backend=TORCH):
    """A fresh model (seed 0) on `device`, one fixed random batch, and a function that takes one
    whole optimiser step on it (forward, backward, AdamW): (model, tokens, generator, step)."""
    torch.manual_seed(0)
    model = EBMModel(cfg).to(device)
    model.refresh_neighbours(force=True)
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (cfg.batch_size, cfg.context_global + cfg.seq_length + 1)
    tokens = torch.randint(cfg.vocab_size, shape, generator=gen, device=device)
    opt = torch.optim.AdamW(model.parameter_groups(), lr=cfg.learning_rate)

    def full_step() -> None:
        out = training_loss(model, tokens, gen, backend=backend)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        release_free_heap()  # as the trainer does

    return model, tokens, gen, full_step


def step_split(cfg: EBMConfig, repeats: int, device: torch.device | str = "cpu", fixed=None) -> tuple[float, list[list]]:
    """(targets/s of a whole step, rows [part, median s, runs, share of step]) on one fixed batch:
    `fixed`, a step_on_fixed_batch result, or a fresh one."""
    model, tokens, gen, full_step = fixed or step_on_fixed_batch(cfg, device)
    total, _ = timed(full_step, repeats, device=device)
    fwd, _ = timed(lambda: training_loss(model, tokens, gen), repeats, device=device)
    every = {"SOC check": cfg.soc_check_interval, "vocabulary neighbour refresh": cfg.knn_refresh_interval}
    rows = [["whole step (forward + backward + AdamW)", total, "-", 1.0]]
    rows.append(["forward", fwd, "-", fwd / total])
    rows.append(["backward + optimiser (step - forward)", total - fwd, "-", (total - fwd) / total])
    for name, fn in step_parts(model, tokens, gen).items():
        try:
            med, times = timed(fn, repeats, device=device)
        except Exception as err:  # a part that cannot run alone on this device: said in its row
            rows.append([f"  {name}", float("nan"), f"failed: {type(err).__name__}: {str(err)[:200]}", float("nan")])
            continue
        period = next((n for key, n in every.items() if name.startswith(key)), 1)  # amortised per step
        rows.append([f"  {name}", med, ", ".join(f"{t:.3f}" for t in times), med / period / total])
    return cfg.batch_size * cfg.targets_per_window / total, rows


def bench_step(cfg: EBMConfig, repeats: int) -> str:
    tps, rows = step_split(cfg, repeats)
    return (
        table(f"Training step: {tps:.0f} targets/s", ["part", "median s", "runs (s)", "share of step"], rows)
        + "\nParts are the functions of ebm.objective timed alone, forward only (with autograd on) unless marked; their"
        + " sum exceeds the step where work overlaps. Periodic parts are shared out over their interval; the whole step"
        + " excludes them.\n"
    )


def langevin_seconds(model: EBMModel, batch: int, repeats: int, backend=TORCH) -> float:
    """Median seconds of 200-step Langevin chains, one per token, for `batch` random contexts."""
    cfg, device = model.cfg, model.embeddings.device
    settings = SamplerSettings.from_config(cfg)._replace(steps=200)
    gen = torch.Generator(device=device).manual_seed(batch)
    g = normalize(torch.randn(batch, cfg.latent_dim, generator=gen, device=device))
    u = 0.1 * torch.randn(batch, cfg.latent_dim, generator=gen, device=device)
    z0 = normalize(g + 0.01 * torch.randn(g.shape, generator=gen, device=device))
    return timed(partial(sample, model, z0, g, u, settings, gen, backend=backend), repeats, device=device)[0]


def bench_langevin(cfg: EBMConfig, batches: list[int], repeats: int, dev) -> str:
    torch.manual_seed(0)
    model = EBMModel(cfg)
    rows = []
    for b in batches:
        cpu = langevin_seconds(model, b, repeats)
        row = [b, cpu, b / cpu, 1.0]
        if dev is not None:
            vk = langevin_seconds(model, b, repeats, VulkanBackend(dev))
            row += [vk, b / vk, cpu / vk]
        rows.append(row)
    header = ["batch", "torch CPU s", "torch tokens/s", "ratio"]
    if dev is not None:
        header += [f"Vulkan ({dev.name}) s", "Vulkan tokens/s", "speed-up vs torch"]
    return table("Langevin sampling, 200 steps per token (one token per chain)", header, rows)


def bench_knn(sizes: list[int], d: int, k: int, n_queries: int, dev) -> str:
    rows = []
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        mu = random_points(n, d, gen)
        queries = perturb(mu[torch.randint(n, (n_queries,), generator=gen)], 0.5, gen)  # near splats, like training
        truth = exact_knn(queries, mu, k)
        brute, _ = timed(partial(exact_knn, queries, mu, k), 3)
        rows.append([n, "torch matmul + topk", "-", brute, n_queries / brute, 1.0, 1.0])
        for kind in ("flat", "hnsw"):
            index = SplatIndex(kind)
            t = time.perf_counter()
            index.build(mu)
            build = time.perf_counter() - t
            med, _ = timed(partial(index.search, queries, k), 3)
            rows.append([n, f"FAISS {kind}", build, med, n_queries / med, recall(index.search(queries, k), truth), brute / med])
        if dev is not None and n <= 50_000:
            from ebm.vulkan.topk import topk_inner_product

            med, _ = timed(partial(topk_inner_product, dev, queries, mu, k), 1)
            ids = topk_inner_product(dev, queries, mu, k)[0]
            rows.append([n, f"Vulkan brute force ({dev.name})", "-", med, n_queries / med, recall(ids, truth), brute / med])
    return table(
        f"Splat KNN: {n_queries} queries, k = {k}, d = {d}",
        ["splats", "method", "build s", "query s", "queries/s", "recall@k", "speed vs torch"],
        rows,
    )


def bench_umap(sizes: list[int], d: int) -> str:
    from app.projection import load_array, save_array, umap_embed

    t = time.perf_counter()
    # numba compiles UMAP once per process; 5,000 points also reach NN-descent (used above 4,096)
    umap_embed(random_points(5000, d, torch.Generator().manual_seed(0)).numpy(), 2)
    jit = time.perf_counter() - t
    rows = []
    for n in sizes:
        x = random_points(n, d, torch.Generator().manual_seed(n)).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "latest.pt"
            ckpt.write_bytes(b"x")
            t = time.perf_counter()
            save_array(ckpt, "umap2", umap_embed(x, 2))
            cold = time.perf_counter() - t
            cached, _ = timed(partial(load_array, ckpt, "umap2"), 3)
        rows.append([n, cold, cached, cold / cached])
    return table("UMAP of splat means (2-D, cosine): cold vs cached", ["splats", "cold s", "cached s", "ratio"], rows) + (
        f"\nCold excludes numba's one-off compilation of UMAP, timed on 5,000 points first: {jit:.1f} s.\n"
    )


def bench_vulkan(cfg: EBMConfig, dev) -> str:
    if dev is None:
        return "### Vulkan kernels\n\nNo Vulkan device: install one with scripts/vulkan-setup.sh.\n"
    from ebm.energy import splat_energy, splat_log_kernels
    from ebm.vulkan.splat import splat_energy as vk_energy
    from ebm.vulkan.topk import topk_inner_product
    from ebm.vulkan.vocab import vocab_energies

    gen = torch.Generator().manual_seed(0)
    V, K, D, k, B = cfg.vocab_size, cfg.n_splats_init, cfg.latent_dim, cfg.knn_k, cfg.batch_size
    emb = random_points(V, D, gen).requires_grad_()
    mu = random_points(K, D, gen).requires_grad_()
    la, ka = torch.zeros(K, requires_grad=True), torch.full((K,), 5.0, requires_grad=True)
    idx = exact_knn(emb.detach(), mu.detach(), k)
    tau = 0.3

    def torch_splat():
        e = splat_energy(splat_log_kernels(emb, mu, la, ka, tau, idx), tau)
        torch.autograd.grad(e.sum(), [emb, mu, la, ka])

    def vk_splat():
        torch.autograd.grad(vk_energy(dev, emb, mu, la, ka, tau, idx).sum(), [emb, mu, la, ka])

    queries, ctx = random_points(256, D, gen), torch.randn(B, D, generator=gen)
    sv = torch.randn(V, generator=gen)
    cases = [
        (f"splat energy + all gradients, {V} points x {k} of {K} splats", torch_splat, vk_splat),
        (
            f"top-{k} of 256 queries among {K} splats",
            lambda: (queries @ mu.detach().T).topk(k),
            lambda: topk_inner_product(dev, queries, mu.detach(), k),
        ),
        (
            f"energies of {V} tokens for {B} contexts",
            lambda: sv - ctx @ emb.detach().T,
            lambda: vocab_energies(dev, emb.detach(), sv, ctx),
        ),
        (
            f"energies of {V} tokens for 1 context (generation)",
            lambda: sv - ctx[:1] @ emb.detach().T,
            lambda: vocab_energies(dev, emb.detach(), sv, ctx[:1]),
        ),
    ]
    rows, chosen = [], dev.tiled
    for i, (name, ref, vk) in enumerate(cases):
        t_ref, _ = timed(ref, 3)
        for tiled in (chosen, not chosen) if i > 0 else (chosen,):  # row products: both kernels (ebm.vulkan.dots)
            dev.tiled = tiled
            t_vk, runs = timed(vk, 3)
            label = "" if i == 0 else (" [tiled, shared memory]" if tiled else " [one invocation per output]")
            rows.append([name + label + (" (chosen)" if i > 0 and tiled == chosen else ""), t_ref, t_vk, t_ref / t_vk])
        dev.tiled = chosen
    return table(f"Vulkan kernels on {dev.name} vs torch on the CPU", ["kernel", "torch CPU s", "Vulkan s", "speed-up"], rows) + (
        "\nThe fused Langevin kernel is timed in the Langevin table. lavapipe runs shaders on the CPU cores: "
        "it checks correctness in CI; speed needs a GPU driver.\n"
    )


_DASHBOARD_PROBE = """
import os, sys
sys.path.insert(0, sys.argv[2])
from bench.measure import peak_rss_mb
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=600)
at.session_state["map_method"] = "PCA"
at.run()
assert not at.exception, at.exception
print(peak_rss_mb())
from app.resources import jobs
for job in jobs().values():
    job.cancel()  # the nearest-token job of the page: not part of this measurement
"""


def bench_memory(cfg: EBMConfig, n_splats: int) -> str:
    """Peak RSS of a default-config training step, and of the dashboard (splat map page, PCA
    view) holding a checkpoint with n_splats splats; each measured in its own process."""
    import json
    import os
    import subprocess

    from runs.checkpoint import save_checkpoint
    from trainer.tokenizer import load_tokenizer

    step = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("scaling.py")), "--steps", "1", "--point"],
        capture_output=True,
        text=True,
        check=True,
    )
    train_mb = json.loads(step.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "checkpoints" / "big"
        model = EBMModel(cfg, n_splats=n_splats)
        state = {
            "model": model.state_dict(),
            "config": cfg.to_dict(),
            "step": 0,
            "epoch": 0,
            "run_id": "big",
            "tokenizer": "gpt2",
        }
        save_checkpoint(state, run, None, 5, 2)
        load_tokenizer("gpt2").save(run / "tokenizer.json")
        del model, state
        env = {**os.environ, "EBM_LOG_DIR": str(Path(tmp) / "logs"), "EBM_CHECKPOINT_DIR": str(Path(tmp) / "checkpoints")}
        page = Path(__file__).resolve().parents[1] / "app" / "views" / "splat_map.py"
        probe = subprocess.run(
            [sys.executable, "-c", _DASHBOARD_PROBE, str(page), str(ROOT)], capture_output=True, text=True, env=env, check=True
        )
        dash_mb = float(probe.stdout.strip().splitlines()[-1])
    rows = [
        ["training step, default config", train_mb],
        [f"dashboard process, splat map of a {n_splats:,}-splat checkpoint (PCA view)", dash_mb],
    ]
    return table("Peak memory (RSS)", ["process", "peak RSS MB"], rows) + (
        "\nThe UMAP map and nearest tokens are computed in a separate process (app/projection.py), not counted here.\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--out", help="folder for speed.md")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", default="1,32,256")
    p.add_argument("--knn-sizes", default="10000,50000,150000")
    p.add_argument("--umap-sizes", default="10000,50000")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset's config (default: EBMConfig())")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="EBMConfig override")
    args = p.parse_args()
    cfg = (PRESETS[args.preset].model_config() if args.preset else EBMConfig()).with_overrides(args.set)
    dev = vulkan_device() if {"langevin", "knn", "vulkan"} & set(args.only) else None
    head = (
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}; Vulkan: {dev.name if dev else 'none'}.\n"
        f"Config: {f'the {args.preset} preset' if args.preset else 'default EBMConfig'}"
        f"{' with ' + ', '.join(args.set) if args.set else ''} "
        f"(V = {cfg.vocab_size}, d = {cfg.latent_dim}, {cfg.n_splats_init} splats, knn_k = {cfg.knn_k}, "
        f"batch {cfg.batch_size} x {cfg.targets_per_window} targets). Medians of {args.repeats} runs after a warm-up.\n"
    )
    print(head, flush=True)
    out = [head]
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    for section in args.only:
        t = time.perf_counter()
        if section == "step":
            text = bench_step(cfg, args.repeats)
        elif section == "langevin":
            text = bench_langevin(cfg, ints(args.batches), args.repeats, dev)
        elif section == "knn":
            text = bench_knn(ints(args.knn_sizes), cfg.latent_dim, cfg.knn_k, 1024, dev)
        elif section == "umap":
            text = bench_umap(ints(args.umap_sizes), cfg.latent_dim)
        elif section == "memory":
            text = bench_memory(cfg, 50_000)
        else:
            text = bench_vulkan(cfg, dev)
        text += f"\n({section}: {time.perf_counter() - t:.0f} s)\n"
        print(text, flush=True)
        out.append(text)
    rss = peak_rss_mb()
    out.append(f"Peak RSS of this benchmark process: {rss:.0f} MB\n")
    print(out[-1])
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "speed.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
