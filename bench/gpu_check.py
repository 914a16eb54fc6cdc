"""The GPU check: everything the product does on a CUDA device, measured in one command that fits
a few minutes of a bare GPU machine (docs/benchmarks.md, "GPU check").

bash bench/gpu_check.sh                               # on the GPU machine: carried wheels, then this
python bench/gpu_check.py --out /tmp/gc --dry-run     # the same code paths on the CPU, about a minute

Stages, each recorded with its status even when it fails:

  environment  torch, the device, the bf16 matrix-product rate measured on it
  cuda_tests   pytest -m cuda
  throughput   training targets/s, step split, peak memory, FLOPs per step and MFU (cpu, seed presets)
  sampling     Langevin tokens/s at batch 256 (200 steps), the constrained sequence sampler
  vulkan       --device vulkan (Kompute on the GPU's Vulkan driver): training and Langevin
  training     ebm-train at the seed preset on the built-in corpus for --train-minutes

gpu_check.md (one table per stage) and gpu_check.json are rewritten under --out after every
stage, so a run cut short still returns what it measured. A dry run shrinks sizes, not code paths.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import peak_rss_mb  # noqa: E402
from bench.speed import langevin_seconds, step_on_fixed_batch, step_split, table, timed  # noqa: E402
from ebm import EBMModel, VulkanBackend  # noqa: E402
from ebm.composition import Budget, ChainSettings, compose  # noqa: E402
from ebm.constraints import Keyword  # noqa: E402
from ebm.presets import PRESETS  # noqa: E402

# Dense bf16 matrix rate by the vendor's datasheet (H100 and H200 SXM share it); MFU is quoted
# against it and against the rate measured on the machine.
DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12}


@dataclass(frozen=True)
class Sizes:
    """How much each stage does: the real check, or a dry run on the CPU."""

    device: str
    matmul_n: int  # side of the square bf16 product that measures the matrix rate
    warmup: int  # untimed steps before a timing
    repeats: int  # timed steps (median)
    seed_overrides: tuple[str, ...]  # the seed preset, shrunk on a dry run
    langevin_batch: int
    langevin_sweep: tuple[int, ...]  # batches of the seed preset's Langevin, to see what bounds it
    chain: ChainSettings  # the constrained sampler's chains
    train_minutes: float
    train_args: tuple[str, ...]  # ebm-train's arguments beside --max-minutes


REAL = Sizes("cuda", 8192, 3, 20, (), 256, (1, 256, 4096), ChainSettings(), 3.0, ("--preset", "seed", "--device", "cuda"))
DRY = Sizes(
    "cpu",
    512,
    1,
    2,
    ("batch_size=2", "vocab_size=4096", "n_splats_init=2000", "curriculum_capacities=[2000,2000,2000]"),
    256,
    (1, 256),
    ChainSettings(chains=2, steps=2),
    5.0,
    ("--preset", "seed", "--device", "cpu", "--max-steps", "3", "--batch-size", "2", "--set", "eval_tokens=256"),
)


class Report:
    """The stages' results, saved as JSON and Markdown after every stage."""

    def __init__(self, out: Path, sizes: Sizes, dry_run: bool):
        self.out, self.started = out, time.perf_counter()
        self.data: dict = {"dry_run": dry_run, "sizes": asdict(sizes), "stages": {}}
        self.tables: list[str] = []
        out.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, stage: Callable[[], tuple[dict, str]]) -> dict:
        """Run one stage; its result, or the error that stopped it, is saved either way."""
        t = time.perf_counter()
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            result, text = stage()
            entry = {"status": result.pop("status", "ok"), **result}
        except Exception as err:  # one stage failing must not cost the others' numbers
            entry = {"status": "failed", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
            text = f"### {name}\n\nFAILED: {entry['error']}\n"
        entry["seconds"] = round(time.perf_counter() - t, 1)
        self.data["stages"][name] = entry
        self.tables.append(text + f"\n({name}: {entry['status']}, {entry['seconds']:.0f} s)\n")
        self.save()
        print(self.tables[-1], flush=True)
        return entry

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        for name, text in (("gpu_check.json", json.dumps(self.data, indent=1)), ("gpu_check.md", self.markdown())):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

    def markdown(self) -> str:
        env = self.data["stages"].get("environment", {})
        head = f"## GPU check{' (dry run on the CPU)' if self.data['dry_run'] else ''}: {env.get('device_name', '?')}\n"
        status = ", ".join(f"{k} {v['status']}" for k, v in self.data["stages"].items())
        return "\n".join([head, f"Stages: {status}; {self.data['elapsed_s']:.0f} s in all.\n", *self.tables])


# ----------------------------------------------------------------------------- stages


def environment(sizes: Sizes) -> tuple[dict, str]:
    dev = torch.device(sizes.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    n = sizes.matmul_n
    a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
    seconds, _ = timed(lambda: a @ b, repeats=10, warmup=3, device=dev)
    measured = 2 * n**3 / seconds
    datasheet = next((v for k, v in DATASHEET_BF16.items() if k in name), None)
    info = {
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "bf16_matmul_flops": measured,
        "bf16_datasheet_flops": datasheet,
    }
    if dev.type == "cuda":
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(dev)))
        info["memory_gib"] = torch.cuda.get_device_properties(dev).total_memory / 2**30
    rows = [[k, v if not isinstance(v, float) or v < 1e6 else f"{v / 1e12:.1f} TFLOP/s"] for k, v in info.items()]
    return info, table("Environment", ["what", "value"], rows)


def cuda_tests(timeout: float) -> tuple[dict, str]:
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-300:]
    status = "ok" if proc.returncode in (0, 5) else "failed"  # 5: every test deselected or skipped
    result = {"status": status, "returncode": proc.returncode, "summary": tail, "output": proc.stdout[-6000:]}
    return result, f"### CUDA tests (pytest -m cuda)\n\n`{tail}`\n"


def flops_per_step(step: Callable[[], None]) -> float:
    """FLOPs of one training step (forward + backward) as torch's FLOP counter sees them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def preset_throughput(name: str, sizes: Sizes, peak: float) -> tuple[dict, list[list]]:
    dev = torch.device(sizes.device)
    cfg = PRESETS[name].model_config().with_overrides(list(sizes.seed_overrides) if name == "seed" else [])
    fixed = step_on_fixed_batch(cfg, dev)
    for _ in range(sizes.warmup):
        fixed[3]()
    flops = flops_per_step(fixed[3])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    tps, rows = step_split(cfg, sizes.repeats, dev, fixed)
    step_s = rows[0][1]
    memory = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else peak_rss_mb() / 1024
    result = {
        "targets_per_s": tps,
        "step_s": step_s,
        "flops_per_step": flops,
        "achieved_flops": flops / step_s,
        "mfu": flops / step_s / peak,
        "peak_memory_gib": memory,
        "split": {row[0].strip(): row[1] for row in rows},
        "batch": f"{cfg.batch_size} x {cfg.targets_per_window}",
    }
    return result, rows


def throughput(sizes: Sizes, env: dict) -> tuple[dict, str]:
    peak = env.get("bf16_datasheet_flops") or env["bf16_matmul_flops"]
    results, text = {}, []
    for name in ("cpu", "seed"):
        result, rows = preset_throughput(name, sizes, peak)
        results[name] = result
        text.append(table(f"{name} preset: training step split", ["part", "median s", "runs (s)", "share of step"], rows))
    summary = [
        [
            name,
            r["batch"],
            r["targets_per_s"],
            r["step_s"] * 1e3,
            r["flops_per_step"] / 1e9,
            r["achieved_flops"] / 1e12,
            f"{100 * r['mfu']:.2f}%",
            r["peak_memory_gib"],
        ]
        for name, r in results.items()
    ]
    header = ["preset", "batch x targets", "targets/s", "step ms", "GFLOP/step", "TFLOP/s", "MFU", "peak memory GiB"]
    basis = "the datasheet's dense bf16 rate" if env.get("bf16_datasheet_flops") else "the bf16 matrix rate measured here"
    head = table("Training throughput", header, summary) + f"\nMFU against {basis}; FLOPs from torch's FLOP counter.\n"
    return results, "\n".join([head, *text])


def sampling(sizes: Sizes) -> tuple[dict, str]:
    dev, batch = torch.device(sizes.device), sizes.langevin_batch
    results, rows = {}, []
    for name in ("cpu", "seed"):
        cfg = PRESETS[name].model_config().with_overrides(list(sizes.seed_overrides) if name == "seed" else [])
        torch.manual_seed(0)
        model = EBMModel(cfg).to(dev)
        seconds = langevin_seconds(model, batch, sizes.repeats)
        keyword = Keyword(((cfg.vocab_size // 2,),), model.embeddings, label="keyword")
        constrained = {}
        for method in ("langevin", "smc"):
            t = time.perf_counter()
            compose(model, (1, 2, 3, 4), 16, [keyword], method, 2, Budget(drafts=2 * sizes.chain.chains), sizes.chain, seed=0)
            constrained[method] = (time.perf_counter() - t) / 2
        results[name] = {"langevin_s": seconds, "langevin_tokens_per_s": batch / seconds, "constrained_s": constrained}
        rows.append([name, seconds, batch / seconds, constrained["langevin"], 16 / constrained["langevin"], constrained["smc"]])
    sweep = [[b, s, b / s, b * 200 / s] for b in sizes.langevin_sweep for s in [langevin_seconds(model, b, sizes.repeats)]]
    results["seed_langevin_sweep"] = {str(row[0]): row[1] for row in sweep}
    header = [
        "preset",
        f"Langevin s (batch {batch})",
        "tokens/s",
        "constrained Langevin s/sample",
        "span tokens/s",
        "SMC s/sample",
    ]
    note = (
        "\nLangevin: 200 steps, one token per chain, untrained model. Constrained: a 16-token span after a 4-token prompt "
        f"with one keyword, {sizes.chain.chains} chains x {sizes.chain.steps} steps then the tilted draw (ebm.composition); "
        "SMC at the same number of drafts.\n"
    )
    swept = table("Langevin against batch (seed preset)", ["batch", "s", "tokens/s", "chain steps/s"], sweep)
    return results, table("Sampling", header, rows) + note + "\n" + swept


def vulkan(sizes: Sizes, wait_s: float) -> tuple[dict, str]:
    """--device vulkan: the cpu preset's step and Langevin with Kompute kernels, against torch on the CPU."""
    marker = os.environ.get("GPU_CHECK_KP_BUILD_RC")  # gpu_check.sh builds kp beside the first stages
    deadline = time.perf_counter() + wait_s
    while marker and not Path(marker).exists() and time.perf_counter() < deadline:
        time.sleep(2)
    import importlib

    importlib.invalidate_caches()
    try:
        from ebm.vulkan import get_device

        device = get_device("vulkan")
    except Exception as err:  # no kp, no loader, no driver: said, with what kp itself printed
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        probe = subprocess.run(
            [sys.executable, "-c", "import kp; print(kp.Manager().list_devices())"], capture_output=True, text=True
        )
        said = (probe.stdout + probe.stderr).strip()[-1500:]
        return {"status": "skipped", "reason": reason, "probe": said}, f"### Vulkan\n\nSkipped: {reason}\n\n```\n{said}\n```\n"
    cfg = PRESETS["cpu"].model_config()
    rows, results = [], {"device_name": device.name}
    for label, backend in (("torch on the CPU", None), (f"Vulkan ({device.name})", VulkanBackend(device))):
        fixed = step_on_fixed_batch(cfg, "cpu", *([backend] if backend else []))
        step_s, _ = timed(fixed[3], sizes.repeats, sizes.warmup)
        lang_s = langevin_seconds(fixed[0], sizes.langevin_batch, sizes.repeats, *([backend] if backend else []))
        results[label] = {
            "targets_per_s": cfg.batch_size * cfg.targets_per_window / step_s,
            "langevin_tokens_per_s": sizes.langevin_batch / lang_s,
        }
        rows.append([label, results[label]["targets_per_s"], results[label]["langevin_tokens_per_s"]])
    header = ["backend (cpu preset)", "training targets/s", f"Langevin tokens/s (batch {sizes.langevin_batch})"]
    return results, table("Vulkan (--device vulkan)", header, rows)


def training(sizes: Sizes, minutes: float) -> tuple[dict, str]:
    """ebm-train on the built-in corpus for `minutes` of optimiser steps; its last validation record."""
    from runs.logs import LogReader

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "commands", "train", "--data", "builtin", *sizes.train_args]
        cmd += ["--max-minutes", str(minutes), "--run-id", "gpu-check", "--out", tmp, "--quiet"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=minutes * 60 + 300)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"ebm-train exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
        reader = LogReader(Path(tmp) / "logs" / "ebm" / "gpu-check.jsonl")
        records = reader.read_new()
    batches = [r for r in records if r["type"] == "batch"]
    evals = [r for r in records if r["type"] in ("eval", "epoch")]
    if not batches or not evals:
        raise RuntimeError(f"the run logged {len(batches)} batch and {len(evals)} validation records")
    last, final = batches[-1], evals[-1]
    late = sorted(r["tokens_per_s"] for r in batches[len(batches) // 2 :])  # past the warm-up and first phases
    result = {
        "wall_s": wall,
        "train_targets_per_s_median": late[len(late) // 2],
        "evaluations": len(evals),
        "steps": last["step"],
        "epoch": last.get("epoch"),
        "train_loss": last.get("loss"),
        "valid_ppl_energy": final.get("ppl_energy"),
        "valid_ppl_decoder": final.get("ppl_decoder"),
        "splat_share": final.get("splat_share"),
    }
    rows = [[k, v] for k, v in result.items()]
    return result, table(
        f"Training: {' '.join(sizes.train_args)} on the built-in corpus, {minutes:g} minutes", ["what", "value"], rows
    )


# ----------------------------------------------------------------------------- main

STAGES = ("cuda_tests", "throughput", "sampling", "training", "vulkan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", default=os.environ.get("OUT") or "bench/results/gpu_check", help="folder for the table and JSON ($OUT)"
    )
    p.add_argument("--dry-run", action="store_true", help="the same code paths on the CPU at small sizes")
    p.add_argument("--train-minutes", type=float, help="length of the training stage (default: 3; dry run: 3 steps)")
    p.add_argument("--skip", nargs="*", default=[], choices=STAGES, help="stages to leave out")
    p.add_argument("--vulkan-wait", type=float, default=180, help="seconds to wait for gpu_check.sh's kp build")
    args = p.parse_args(argv)
    sizes = DRY if args.dry_run else REAL
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch; use --dry-run to check the code paths on the CPU", file=sys.stderr)
        return 2
    report = Report(Path(args.out), sizes, args.dry_run)
    env = report.run("environment", lambda: environment(sizes))
    stages: dict[str, Callable[[], tuple[dict, str]]] = {
        "cuda_tests": lambda: cuda_tests(timeout=300),
        "throughput": lambda: throughput(sizes, env),
        "sampling": lambda: sampling(sizes),
        "training": lambda: training(sizes, args.train_minutes or sizes.train_minutes),
        "vulkan": lambda: vulkan(sizes, args.vulkan_wait),
    }
    for name, stage in stages.items():
        if name not in args.skip and env["status"] == "ok":
            report.run(name, stage)
    failed = [k for k, v in report.data["stages"].items() if v["status"] == "failed"]
    print(f"[gpu-check] wrote {report.out / 'gpu_check.md'}; failed stages: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
