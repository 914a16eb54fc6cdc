"""ebm-train: train in the foreground, or start the same command in the background (--detach).

trainer.startup builds the run from its spec and hands it to trainer.trainer.Trainer, which
writes the files of the runs package. Nothing heavy is imported until a run starts.
"""

from __future__ import annotations

import os
import subprocess
import sys

from runs.runfiles import RunFiles, new_run_id

from .specs import TrainSpec


def detach(spec: TrainSpec) -> int:
    run_id = spec.run_id or new_run_id()
    out = spec.out
    files = RunFiles.under(out, run_id)
    files.run_dir.mkdir(parents=True, exist_ok=True)
    child_argv = [a for a in spec.argv if a != "--detach"]
    if "--run-id" not in child_argv and not spec.resume:
        child_argv += ["--run-id", run_id]
    console = open(files.console, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "commands", "train", *child_argv, "--quiet"],
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    shown = RunFiles.under(out, spec.resume if spec.resume and spec.resume != "latest" else run_id)
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


def start(spec: TrainSpec) -> int:
    if spec.list_config:
        return list_config()
    if problem := spec.problem():
        print(f"ebm-train: error: {problem}", file=sys.stderr)
        return 2
    if spec.detach:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            print(
                "ebm-train: error: --detach starts one background process; run a torchrun job in the background "
                "with its own launcher instead: nohup torchrun ... > train.out 2>&1 &",
                file=sys.stderr,
            )
            return 2
        return detach(spec)
    from trainer.startup import run as train_here

    return train_here(spec)


def run(spec: TrainSpec) -> int:
    try:
        return start(spec)
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
        from trainer.startup import USER_ERRORS  # loaded by now: only run() raises these

        if not isinstance(err, USER_ERRORS):
            raise
        print(f"ebm-train: error: {err}", file=sys.stderr)
        return 2
