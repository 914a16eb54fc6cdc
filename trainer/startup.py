"""Starting a run: a new one or a resumed one, its lock, data, tokenizer, config and trainer.

Imported by `ebm-train` only after its arguments are parsed, so `--help` is instant and a
Ctrl-C while torch loads ends with one line.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import torch

from ebm.config import ConfigError, EBMConfig
from ebm.presets import Preset, choose_preset

from .checkpoint import CheckpointError, newest_intact
from .data import CORPUS_NAMES, DataError, default_cache_dir, load_corpus, tokenize_split, windows_for
from .device import DeviceError, resolve_device
from .options import RunOptions
from .replicas import ALONE, Replicas, from_environment
from .reporting import ReportError
from .runfiles import RunFiles, newest_resumable
from .runlock import RunLock, RunLockedError
from .tokenizer import TokenizerError, load_tokenizer
from .train import new_run_id
from .trainer import Trainer


class UserError(RuntimeError):
    pass


USER_ERRORS = (ConfigError, DataError, TokenizerError, CheckpointError, DeviceError, RunLockedError, ReportError, UserError)


def run_preset(args) -> tuple[Preset, str]:
    try:
        return choose_preset(args.preset, args.device)
    except ValueError as err:
        raise UserError(f"--preset: {err}") from None


def build_config(args, vocab_size: int) -> EBMConfig:
    """The preset's fields, then --config, then --set and the flags that name a field."""
    fields = dict(run_preset(args)[0].config)
    if args.config:
        try:
            fields |= json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"--config {args.config}: {err}") from None
    cfg = EBMConfig.from_dict(fields).with_overrides(args.set)
    changes = {"vocab_size": vocab_size}
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            changes[key] = getattr(args, flag)
    if args.no_curriculum:
        changes["curriculum"] = False
    return cfg.replace(**changes)


def latest_run(checkpoint_root: Path) -> str:
    run_id = newest_resumable(checkpoint_root)
    if run_id is None:
        raise UserError(f"--resume: no run with a latest.pt under {checkpoint_root}")
    return run_id


def run_options(args, run_id: str, out: Path, data_fingerprint: str) -> RunOptions:
    return RunOptions(run_id=run_id, out=out, data=args.data, data_fingerprint=data_fingerprint, device=args.device,
                      embeddings=args.embeddings,
                      max_steps=args.max_steps, max_minutes=args.max_minutes, log_every=args.log_every, name=args.name,
                      grad_accum=args.grad_accum, precision=args.precision,
                      report_to=tuple(args.report_to), preset=run_preset(args) if not args.resume else None,
                      quiet=args.quiet)  # fmt: skip


# --------------------------------------------------------------------------- entry points


FIXED_ON_RESUME = {"set": "--set", "config": "--config", "preset": "--preset", "tokenizer": "--tokenizer",
                   "batch_size": "--batch-size",
                   "seed": "--seed", "no_curriculum": "--no-curriculum", "run_id": "--run-id"}  # fmt: skip


def chosen_run(args, out: Path) -> str:
    """The run this invocation writes: a new id, or the run --resume names, checked before any
    of its files is read."""
    if not args.resume:
        return args.run_id or new_run_id()
    changed = [flag for key, flag in FIXED_ON_RESUME.items() if getattr(args, key)]
    if changed:
        flags = ", ".join(changed)
        raise UserError(f"--resume continues a run with its own config, tokenizer and data, so {flags} cannot change it; "
                        "--epochs, --max-steps and --max-minutes can. Start a new run for other settings.")  # fmt: skip
    run_id = latest_run(out / "checkpoints") if args.resume == "latest" else args.resume
    files = RunFiles.under(out, run_id)
    if not files.run_dir.is_dir():
        raise UserError(f"--resume: no run {run_id!r} under {files.checkpoints}")
    return run_id


def run_setup(args, files: RunFiles) -> tuple[str, EBMConfig | None, dict | None]:
    """(tokenizer spec, config or None (built once the tokenizer is known), resume state)."""
    if not args.resume:
        args.data = absolute_data(args.data or "builtin")
        return args.tokenizer or run_preset(args)[0].tokenizer, None, None
    state = resume_checkpoint(files)
    saved = state.get("corpus")
    if args.data and saved and absolute_data(args.data) != saved:
        raise UserError(f"--resume: run {files.run_id} trains on {saved!r}, not {args.data!r}; drop --data or start a new run")
    args.data = saved or "builtin"
    cfg = EBMConfig.from_saved(state["config"])
    if args.epochs is not None:
        cfg = cfg.replace(epochs=args.epochs)
    return str(files.tokenizer), cfg, state


def absolute_data(spec: str) -> str:
    """A corpus name as it is, a path made absolute: a resumed run reads the same file from any folder."""
    return spec if spec in CORPUS_NAMES else str(Path(spec).expanduser().resolve())


def check_same_corpus(state: dict, corpus, accept_change: bool) -> None:
    """--resume reads the text the run trained on: a different text under the same name is refused
    (or, with --accept-changed-data, said on stderr)."""
    saved = state.get("corpus_fingerprint")
    if not saved or saved == corpus.fingerprint:
        return
    what = f"the text at {state.get('corpus')!r} has changed since run {state.get('run_id')} trained on it"
    if not accept_change:
        raise UserError(f"--resume: {what}; restore it, start a new run, or pass --accept-changed-data")
    print(f"ebm-train: warning: {what}; training on the new text (--accept-changed-data)", file=sys.stderr)


def resume_checkpoint(files: RunFiles) -> dict:
    """The newest checkpoint of the run that loads and verifies. Usually latest.pt; an epoch file
    written just before a kill, or an intact one when latest.pt is damaged, is said so."""
    path, state, problems = newest_intact(files.run_dir)
    if path is None:
        raise CheckpointError(f"--resume: run {files.run_id} has no intact checkpoint" + (f": {problems[0]}" if problems else ""))
    if problems or path != files.latest:
        skipped = f" ({'; '.join(problems)})" if problems else ""
        print(f"ebm-train: resuming from {path.name}, the newest intact checkpoint{skipped}", file=sys.stderr)
    if state.get("run_id") not in (None, files.run_id):
        raise CheckpointError(f"--resume: {path} belongs to run {state['run_id']!r}, not {files.run_id!r}: resume that run, "
                              "or put this run's own checkpoint back")  # fmt: skip
    state["resumed_from"] = path.name
    return state


def take_run(files: RunFiles) -> RunLock:
    """Lock the run for this process and clear temp files that killed writers left behind."""
    lock = RunLock(files.run_dir)
    notice = lock.acquire()
    if notice:
        print(f"ebm-train: {notice}", file=sys.stderr)
    for tmp in files.run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    return lock


def build_trainer(args, out: Path, run_id: str, tok_spec: str, cfg: EBMConfig | None, resume_state: dict | None,
                  replicas: Replicas = ALONE) -> Trainer:  # fmt: skip
    corpus = load_corpus(args.data)
    tokenizer = load_tokenizer(tok_spec, train_texts=corpus.splits.get("train"), cache_dir=default_cache_dir() / "tokenizers")
    if resume_state is not None:
        check_same_corpus(resume_state, corpus, args.accept_changed_data)
        tokenizer.adopt_checkpoint(resume_state, tok_spec)
    if cfg is None:
        cfg = build_config(args, tokenizer.vocab_size)
    elif cfg.vocab_size != tokenizer.vocab_size:
        raise UserError(f"checkpoint vocabulary {cfg.vocab_size} != tokenizer {tokenizer.vocab_size}")
    cfg = with_precision(cfg, args.precision)
    if args.grad_accum < 1:
        raise UserError(f"--grad-accum {args.grad_accum}: use 1 (no accumulation) or more micro-batches")
    slices = replicas.size * args.grad_accum
    if cfg.batch_size % slices:
        where = f"{replicas.size} processes" + (f" x {args.grad_accum} micro-batches" if args.grad_accum > 1 else "")
        raise UserError(f"batch_size {cfg.batch_size} does not split over {where}; use a multiple of {slices} (--batch-size)")
    train_tokens = tokenize_split(corpus, "train", tokenizer, progress=not args.quiet)
    valid_tokens = tokenize_split(corpus, "valid", tokenizer, progress=not args.quiet)
    windows = len(windows_for(train_tokens, cfg))
    if windows < cfg.batch_size:
        raise UserError(f"the training split holds {windows} windows of {cfg.context_global + 1} tokens, fewer than one "
                        f"batch of {cfg.batch_size}: lower --batch-size, or give more text")  # fmt: skip
    opts = run_options(args, run_id, out, corpus.fingerprint)
    return Trainer(cfg, opts, tokenizer, train_tokens, valid_tokens, resume_state, replicas)


PRECISION_HEADS = {"bf16": "bfloat16", "tf32": "float32", "fp32": "float32"}


def with_precision(cfg: EBMConfig, precision: str) -> EBMConfig:
    """--precision: the dtype the encoder and the vocabulary heads train in (head_dtype), and
    whether float32 matmuls may use TF32 on CUDA (a process-wide torch setting)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return cfg if precision == "auto" else cfg.replace(head_dtype=PRECISION_HEADS[precision])


def replica_device(spec: str, replicas: Replicas) -> str:
    """Under torchrun each process takes its own device: cuda -> cuda:LOCAL_RANK."""
    if replicas.size == 1 or spec == "cpu":
        return spec
    if spec == "cuda":
        return f"cuda:{replicas.local_rank}"
    raise UserError(f"--device {spec} under torchrun: use --device cuda (each process takes cuda:LOCAL_RANK) or cpu")


def run(args) -> int:
    """Train in this process until the run finishes, stops or fails; under torchrun, as one of
    its data-parallel replicas (trainer.replicas)."""
    resolve_device(args.device)  # a missing device fails before any data is read
    replicas = from_environment(args.device)
    try:
        return run_replica(args, replicas)
    finally:
        replicas.close()


def run_replica(args, replicas: Replicas) -> int:
    args.device = replica_device(args.device, replicas)
    args.quiet = args.quiet or not replicas.main
    torch.manual_seed(args.seed or 0)
    # Exact resume needs bit-identical steps: the default accumulating index kernels differ in
    # the last float32 bit from run to run, which bf16 heads amplify to 5e-4 in the loss
    # within 40 steps. The deterministic ones cost nothing measurable here (docs/design-notes.md).
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(args.out).resolve()
    if not args.resume:
        build_config(args, EBMConfig().vocab_size)  # a bad --set or --config fails before any file is touched
    run_id = replicas.broadcast(chosen_run(args, out))  # rank 0's: a new id is random
    files = RunFiles.under(out, run_id)
    lock = take_run(files) if replicas.main else None
    try:  # the lock is released however the run ends, a failed start included
        if not replicas.main:
            replicas.barrier()  # rank 0 first: it may train and cache the tokenizer
        tok_spec, cfg, resume_state = run_setup(args, files)
        trainer = build_trainer(args, out, run_id, tok_spec, cfg, resume_state, replicas)
        if replicas.main:
            replicas.barrier()
        replicas.copy_model(trainer.model)  # the same start on every replica, whatever their seeds

        def on_term(signum, frame):
            trainer.request_stop()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        if not args.quiet:
            print(f"run {run_id}: {len(trainer.train)} training windows, {trainer.total_steps} steps planned; "
                  f"log {trainer.logger.path}", file=sys.stderr)  # fmt: skip
        state = trainer.fit()
        replicas.barrier()  # rank 0 writes the last checkpoint while the others wait
    finally:
        if lock is not None:
            lock.release()
    if replicas.main:
        print(f"run {run_id} {state} at step {trainer.step}", file=sys.stderr)
    return 0
