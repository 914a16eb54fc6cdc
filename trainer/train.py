"""ebm-train: train an EBM in the foreground or in the background (--detach).

The command line only. Parsing needs no heavy import; trainer.startup builds the run and
hands it to trainer.trainer.Trainer, which writes the files of trainer.runfiles.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from .runfiles import RunFiles


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebm-train", description="Train an energy-based language model on the hypersphere.")
    p.add_argument(
        "--data", help="builtin (default), wikitext-2, wikitext-103, or a folder / text file; a resumed run keeps its own"
    )
    p.add_argument("--tokenizer", help="gpt2 (default), bpe:N, a tokenizer.json or a tokenizer folder")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda[:N] or vulkan[:N]")
    p.add_argument("--epochs", type=int, help="number of epochs (config: epochs)")
    p.add_argument("--batch-size", type=int, help="windows per batch (config: batch_size)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in total")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time (optimiser steps only, not evaluation)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN_ID", help="continue a run (default: the newest)")
    p.add_argument("--run-id", help="name of the run (default: date-time and a random suffix)")
    p.add_argument("--out", default=".", help="folder holding checkpoints/ and logs/ (default: the working directory)")
    p.add_argument("--config", help="EBMConfig as JSON")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument(
        "--embeddings",
        default="auto",
        choices=["auto", "gpt2", "minilm", "own"],
        help="pretrained source for token embeddings and splat means",
    )
    p.add_argument("--no-curriculum", action="store_true", help="use n_splats_init and splat_temperature throughout")
    p.add_argument("--detach", action="store_true", help="run in the background; print run id, pid and log path")
    p.add_argument("--seed", type=int, help="random seed (config: seed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--log-every", type=int, default=1, help="log a batch record every N steps")
    return p


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


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


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.detach:
        return detach(argv, args)
    from .startup import run as train_here

    return train_here(args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except KeyboardInterrupt:
        print("ebm-train: interrupted while starting; no training step was taken", file=sys.stderr)
        return 130
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
