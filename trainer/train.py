"""ebm-train: train an EBM in the foreground or in the background (--detach).

The command line only. Parsing needs no heavy import; trainer.startup builds the run and
hands it to trainer.trainer.Trainer, which writes the files of trainer.runfiles.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from .cli import HelpFormatter
from .runfiles import RunFiles, run_exists, run_id_problem

EXAMPLES = """examples:
  ebm-train --detach                                   built-in corpus, GPT-2 BPE, default config, in the background
  ebm-train --max-minutes 10 --set learning_rate=3e-4  a fixed training-time budget and one config change
  ebm-train --data path/to/text.txt --tokenizer bpe:8000 --set latent_dim=128 --set context_heads=4
  ebm-train --resume                                   continue the newest run exactly where it stopped
  ebm-train --list-config                              every config field with its default and meaning
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebm-train", description="Train an energy-based language model on the hypersphere.",
                                epilog=EXAMPLES, formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument(
        "--data", help="builtin, wikitext-2, wikitext-103, or a folder / text file (default: builtin; resume: the run's)"
    )
    p.add_argument("--tokenizer", help="gpt2, bpe:N, a tokenizer.json or a tokenizer folder (default: gpt2; resume: the run's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N] or vulkan[:N]")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the config's epochs)")
    p.add_argument("--batch-size", type=int, help="windows per batch (default: the config's batch_size)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in total")
    p.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        metavar="K",
        help="split each batch into K micro-batches whose gradients add up (less memory, same batch)",
    )
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "tf32", "fp32"],
                   help="auto: the config's head_dtype (bf16 where native); bf16: encoder and heads in bf16; "
                        "tf32: float32 with TF32 matmuls on CUDA; fp32: float32 throughout")  # fmt: skip
    p.add_argument("--max-minutes", type=float, help="stop after this much training time (optimiser steps only, not evaluation)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN_ID", help="continue a run (without RUN_ID: the newest)")
    p.add_argument("--accept-changed-data", action="store_true",
                   help="with --resume: train on the run's data path even if its text changed (said on stderr)")  # fmt: skip
    p.add_argument("--run-id", help="id of the run, its folder name (default: date-time and a random suffix)")
    p.add_argument("--name", help="a human name for the run, shown by the dashboard (editable there)")
    p.add_argument("--out", default=".", help="folder holding checkpoints/ and logs/")
    p.add_argument("--preset", choices=["cpu", "seed"],
                   help="starting config and tokenizer: cpu (small, learns in minutes on a CPU) or seed (the "
                        "original 640-D specification); default: seed on CUDA, cpu elsewhere")  # fmt: skip
    p.add_argument("--config", help="EBMConfig fields as a JSON file, on top of the preset (keys: --list-config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--list-config", action="store_true", help="print every config field with its type, default and meaning")
    p.add_argument("--embeddings", default="auto", choices=["auto", "gpt2", "minilm", "own"],
                   help="pretrained source for token embeddings and splat means")  # fmt: skip
    p.add_argument("--no-curriculum", action="store_true", help="use n_splats_init and splat_temperature throughout")
    p.add_argument("--detach", action="store_true", help="run in the background; print run id, pid and log path")
    p.add_argument("--seed", type=int, help="random seed (default: the config's seed, 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--log-every", type=int, default=1, help="log a batch record every N steps")
    p.add_argument("--report-to", action="append", default=[], choices=["tensorboard"],
                   help="also write the log for tensorboard (events in <out>/logs/tensorboard/<run_id>)")  # fmt: skip
    return p


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def argument_problem(args) -> str | None:
    """What is wrong with the run's identity and budget flags, before any file is created."""
    for flag, value in (("--run-id", args.run_id), ("--resume", args.resume if args.resume != "latest" else None)):
        if value is not None and (problem := run_id_problem(value)):
            return f"{flag}: {problem}"
    if args.max_minutes is not None and not (math.isfinite(args.max_minutes) and args.max_minutes > 0):
        return f"--max-minutes {args.max_minutes}: give a number of minutes above 0 (leave it out for no time limit)"
    for flag, value in (("--max-steps", args.max_steps), ("--epochs", args.epochs), ("--batch-size", args.batch_size),
                        ("--log-every", args.log_every), ("--grad-accum", args.grad_accum)):  # fmt: skip
        if value is not None and value < 1:
            return f"{flag.replace('_', '-')} {value}: give 1 or more (leave it out for the default)"
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 may have started the run already
    if main_rank and not args.resume and args.run_id and run_exists(RunFiles.under(Path(args.out).resolve(), args.run_id)):
        return (f"run {args.run_id!r} already exists under {Path(args.out).resolve()}: continue it with --resume "
                f"{args.run_id}, or give a new --run-id")  # fmt: skip
    return None


def detach(argv: list[str], args) -> int:
    run_id = args.run_id or new_run_id()
    out = Path(args.out).resolve()
    files = RunFiles.under(out, run_id)
    files.run_dir.mkdir(parents=True, exist_ok=True)
    child_argv = [a for a in argv if a != "--detach"]
    if "--run-id" not in child_argv and not args.resume:
        child_argv += ["--run-id", run_id]
    console = open(files.console, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.train", *child_argv, "--quiet"],
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    shown = RunFiles.under(out, args.resume if args.resume and args.resume != "latest" else run_id)
    print(
        f"run id:    {shown.run_id}\npid:       {proc.pid}\nlog:       {shown.log}\n"
        f"console:   {files.console}\nstatus:    {shown.status}\n"
        f"dashboard: ebm-dashboard --logs {out / 'logs'} --checkpoints {out / 'checkpoints'}\n"
        f"diagnose:  ebm-diagnose --batch --run-id {shown.run_id} --out {out}"
    )
    return 0


def list_config() -> int:
    from ebm.config import EBMConfig

    rows = [(name, kind, repr(default), meaning) for name, kind, default, meaning in EBMConfig.describe()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    return 0


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.list_config:
        return list_config()
    if problem := argument_problem(args):
        print(f"ebm-train: error: {problem}", file=sys.stderr)
        return 2
    if args.detach:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            print("ebm-train: error: --detach starts one background process; run a torchrun job in the background "
                  "with its own launcher instead: nohup torchrun ... > train.out 2>&1 &", file=sys.stderr)  # fmt: skip
            return 2
        return detach(argv, args)
    from .startup import run as train_here

    return train_here(args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except BrokenPipeError:  # output piped into `head`: nothing left to say
        return 141
    except KeyboardInterrupt:
        print("ebm-train: interrupted while starting; no training step was taken", file=sys.stderr, flush=True)
        # Exit now: a Ctrl-C inside torch's import can leave the interpreter's shutdown to die by
        # SIGINT instead of returning this code (seen once in CI). The run's lock is already released.
        os._exit(130)
    except OSError as err:  # an unwritable folder, a full disk
        print(f"ebm-train: error: cannot write {err.filename or 'a run file'}: {err.strerror or err}", file=sys.stderr)
        return 1
    except Exception as err:
        from .startup import USER_ERRORS  # loaded by now: only run() raises these

        if not isinstance(err, USER_ERRORS):
            raise
        print(f"ebm-train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
