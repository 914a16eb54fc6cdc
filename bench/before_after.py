"""Before/after: the training step and batched Langevin of an earlier commit against this tree,
in one run, alternating processes so that machine noise hits both alike.

python bench/before_after.py                              # baseline 977391c, 3 rounds
python bench/before_after.py --baseline HEAD~3 --rounds 5 --out /tmp/bench/ba

Variants: the baseline commit's `ebm/` (extracted with `git archive` into a temporary folder),
this tree at its defaults, and this tree with `--set` overrides per extra variant
(default: head_dtype=float32, to separate the bf16 heads from the other changes). The variant
`compile` runs the context encoder and the decoder's expert mixture through torch.compile; its
compilation falls in the warm-up step, which is not timed. Each worker
process times a default-config training step (forward + backward + AdamW, random tokens) and
200 Langevin steps at batch 256 through public API that both trees share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "977391c"  # the last commit before the speed-ups recorded in docs/benchmarks.md


def worker(tree: str, overrides: list[str], steps: int, batch: int) -> dict:
    sys.path.insert(0, tree)  # ebm/ of the variant under test
    sys.path.append(str(ROOT))  # bench/ itself
    import torch

    import ebm
    from bench.measure import peak_rss_mb, training_step_times
    from ebm import EBMConfig, EBMModel, SamplerSettings
    from ebm.geometry import normalize

    if not Path(ebm.__file__).resolve().is_relative_to(Path(tree).resolve()):
        raise SystemExit(f"imported ebm from {ebm.__file__}, not from {tree}")
    compiled = "compile" in overrides
    overrides = [o for o in overrides if o != "compile"]
    # The same workload on both sides: 32 scored targets after 512 tokens of history, the shape
    # every earlier commit trained (now `seq_length=32`; the default scores every position).
    overrides = ["seq_length=32", *overrides] if hasattr(EBMConfig(), "targets_per_window") else overrides
    cfg = EBMConfig().with_overrides(overrides) if overrides else EBMConfig()
    torch.manual_seed(0)
    model = EBMModel(cfg)
    if compiled:  # the dense torch parts; the vocabulary heads are custom autograd + numba already
        model.context = torch.compile(model.context)
        model.decoder.mix = torch.compile(model.decoder.mix)
    model.refresh_neighbours(force=True)
    gen = torch.Generator().manual_seed(0)
    # Ask the package, not the import system: the editable install's finder would serve this
    # tree's ebm.objective to an older ebm/ that lacks it.
    if hasattr(ebm, "training_loss"):
        training_loss, sample = ebm.training_loss, ebm.sample
    else:  # commits from before ebm.objective: the model composed the loss and sampled itself

        def training_loss(m, tokens, generator):
            return m(tokens, generator=generator)

        def sample(m, *args):
            return m.sample(*args)

    step_times = training_step_times(model, steps, gen, training_loss)
    g = normalize(torch.randn(batch, cfg.latent_dim, generator=gen))
    u = 0.1 * torch.randn(batch, cfg.latent_dim, generator=gen)
    settings = SamplerSettings.from_config(cfg)._replace(steps=200)
    sample_times = []
    with torch.no_grad():
        for _ in range(3):  # the first is a warm-up
            t = time.perf_counter()
            sample(model, g, g, u, settings, gen)
            sample_times.append(time.perf_counter() - t)
    return {
        "step_s": statistics.median(step_times[1:]),
        "step_tokens_per_s": cfg.batch_size * cfg.seq_length / statistics.median(step_times[1:]),
        "langevin_s": statistics.median(sample_times[1:]),
        "langevin_tokens_per_s": batch / statistics.median(sample_times[1:]),
        "peak_rss_mb": peak_rss_mb(),
    }


def extract(rev: str, dest: Path) -> None:
    """`ebm/` of commit rev into dest; a clear error when the commit is not in this clone."""
    try:
        archive = subprocess.run(["git", "archive", rev, "ebm"], cwd=ROOT, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"cannot read commit {rev!r} ({err.stderr.decode().strip()}); fetch it or pass --baseline") from None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


def run_worker(tree: Path, overrides: list[str], args) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(tree), "--steps", str(args.steps), "--batch", str(args.batch)]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"worker for {tree} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare against")
    p.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="an extra variant of this tree: EBMConfig overrides, or `compile` (default: head_dtype=float32)",
    )
    p.add_argument("--rounds", type=int, default=3, help="processes per variant, alternating")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per process, after one warm-up")
    p.add_argument("--batch", type=int, default=256, help="Langevin batch size")
    p.add_argument("--out", help="folder for before_after.md and .json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.set, args.steps, args.batch)))
        return
    extras = args.variant if args.variant is not None else ["head_dtype=float32"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        extract(args.baseline, base)
        variants = [(f"baseline {args.baseline}", base, [])] + [("this tree", ROOT, [])]
        variants += [(f"this tree, {v}", ROOT, v.split(",")) for v in extras]
        results: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
        for r in range(args.rounds):
            for name, tree, overrides in variants:
                t = time.perf_counter()
                results[name].append(run_worker(tree, overrides, args))
                print(f"round {r + 1}/{args.rounds}  {name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    text = report(results, args)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "before_after.md").write_text(text)
        (Path(args.out) / "before_after.json").write_text(json.dumps(results, indent=2))


def report(results: dict[str, list[dict]], args) -> str:
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    base = next(iter(med.values()))
    lines = [
        f"Default config; median over {args.rounds} alternating processes, each the median of {args.steps} "
        f"training steps and 2 Langevin runs (200 steps, batch {args.batch}) after a warm-up.",
        "",
        "| variant | step s | training tokens/s | step speed-up | Langevin s | Langevin tokens/s | Langevin speed-up "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in med.items():
        lines.append(
            f"| {name} | {m['step_s']:.2f} | {m['step_tokens_per_s']:.0f} | {base['step_s'] / m['step_s']:.2f} "
            f"| {m['langevin_s']:.3f} | {m['langevin_tokens_per_s']:.0f} | {base['langevin_s'] / m['langevin_s']:.2f} "
            f"| {m['peak_rss_mb']:.0f} |"
        )
    runs = "; ".join(f"{name}: " + ", ".join(f"{r['step_s']:.2f}" for r in rs) for name, rs in results.items())
    return "\n".join(lines) + f"\n\nStep seconds per process: {runs}.\n"


if __name__ == "__main__":
    main()
