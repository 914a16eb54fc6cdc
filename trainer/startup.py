"""Starting a run: a new one or a resumed one, its lock, data, tokenizer, config and trainer.

Imported by `ebm-train` only after its arguments are parsed, so `--help` is instant and a
Ctrl-C while torch loads ends with one line.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ebm.config import ConfigError, EBMConfig
from ebm.presets import Preset, choose_preset
from runs.checkpoint import CheckpointError, newest_intact
from runs.runfiles import RunFiles, new_run_id, newest_resumable
from runs.runlock import RunLock, RunLockedError

from .data import CORPUS_NAMES, DataError, default_cache_dir, load_corpus, tokenize_split, windows_for
from .device_spec import DeviceError, resolve_device
from .options import RunOptions
from .replicas import ALONE, Replicas, from_environment
from .reporting import ReportError
from .tokenizer import TokenizerError, load_tokenizer
from .train_spec import TrainSpec
from .trainer import Trainer


class UserError(RuntimeError):
    pass


USER_ERRORS = (ConfigError, DataError, TokenizerError, CheckpointError, DeviceError, RunLockedError, ReportError, UserError)


def run_preset(spec: TrainSpec) -> tuple[Preset, str]:
    try:
        return choose_preset(spec.preset, spec.device)
    except ValueError as err:
        raise UserError(f"--preset: {err}") from None


def build_config(spec: TrainSpec, preset: Preset) -> EBMConfig:
    """The preset's fields, then --config, then --set and the flags that name a field. The
    vocabulary size is the tokenizer's, set once the tokenizer is loaded."""
    fields = dict(preset.config)
    if spec.config:
        try:
            fields |= json.loads(Path(spec.config).read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"--config {spec.config}: {err}") from None
    cfg = EBMConfig.from_dict(fields).with_overrides(list(spec.set))
    changes = {key: getattr(spec, key) for key in ("epochs", "batch_size", "seed") if getattr(spec, key) is not None}
    if spec.no_curriculum:
        changes["curriculum"] = False
    return cfg.replace(**changes)


def latest_run(checkpoint_root: Path) -> str:
    run_id = newest_resumable(checkpoint_root)
    if run_id is None:
        raise UserError(f"--resume: no run with a latest.pt under {checkpoint_root}")
    return run_id


@dataclass(frozen=True)
class RunPlan:
    """What a run starts from once its spec is checked: built before any of its files is touched."""

    run_id: str
    data: str  # a corpus name or an absolute path
    tokenizer: str
    cfg: EBMConfig  # its vocab_size is the tokenizer's once the trainer is built
    resume_state: dict | None = None
    preset: tuple[Preset, str] | None = None  # a new run's preset, and why it was chosen


def run_options(spec: TrainSpec, plan: RunPlan, out: Path, data_fingerprint: str) -> RunOptions:
    return RunOptions(
        run_id=plan.run_id,
        out=out,
        data=plan.data,
        data_fingerprint=data_fingerprint,
        device=spec.device,
        embeddings=spec.embeddings,
        max_steps=spec.max_steps,
        max_minutes=spec.max_minutes,
        log_every=spec.log_every,
        name=spec.name,
        grad_accum=spec.grad_accum,
        precision=spec.precision,
        compile=spec.compile,
        report_to=spec.report_to,
        preset=plan.preset,
        quiet=spec.quiet,
    )


# --------------------------------------------------------------------------- entry points


FIXED_ON_RESUME = {
    "set": "--set",
    "config": "--config",
    "preset": "--preset",
    "tokenizer": "--tokenizer",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "no_curriculum": "--no-curriculum",
    "run_id": "--run-id",
}


def chosen_run(spec: TrainSpec, out: Path) -> str:
    """The run this invocation writes: a new id, or the run --resume names, checked before any
    of its files is read."""
    if not spec.resume:
        return spec.run_id or new_run_id()
    changed = [flag for key, flag in FIXED_ON_RESUME.items() if getattr(spec, key)]
    if changed:
        flags = ", ".join(changed)
        raise UserError(
            f"--resume continues a run with its own config, tokenizer and data, so {flags} cannot change it; "
            "--epochs, --max-steps and --max-minutes can. Start a new run for other settings."
        )
    run_id = latest_run(out / "checkpoints") if spec.resume == "latest" else spec.resume
    files = RunFiles.under(out, run_id)
    if not files.run_dir.is_dir():
        raise UserError(f"--resume: no run {run_id!r} under {files.checkpoints}")
    return run_id


def new_plan(spec: TrainSpec, run_id: str) -> RunPlan:
    """A new run's plan: its config is built (and a bad --set or --config refused) before any file is touched."""
    preset = run_preset(spec)
    cfg = build_config(spec, preset[0])
    data = absolute_data(spec.data or "builtin")
    return RunPlan(run_id, data, spec.tokenizer or preset[0].tokenizer, cfg, preset=preset)


def resumed_plan(spec: TrainSpec, files: RunFiles) -> RunPlan:
    """A resumed run's plan: its own data, tokenizer and config, from its newest intact checkpoint."""
    state = resume_checkpoint(files)
    saved = state.get("corpus")
    if spec.data and saved and absolute_data(spec.data) != saved:
        raise UserError(f"--resume: run {files.run_id} trains on {saved!r}, not {spec.data!r}; drop --data or start a new run")
    cfg = EBMConfig.from_saved(state["config"])
    if spec.epochs is not None:
        cfg = cfg.replace(epochs=spec.epochs)
    return RunPlan(files.run_id, saved or "builtin", str(files.tokenizer), cfg, resume_state=state)


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
    if path is None or state is None:
        raise CheckpointError(f"--resume: run {files.run_id} has no intact checkpoint" + (f": {problems[0]}" if problems else ""))
    if problems or path != files.latest:
        skipped = f" ({'; '.join(problems)})" if problems else ""
        print(f"ebm-train: resuming from {path.name}, the newest intact checkpoint{skipped}", file=sys.stderr)
    if state.get("run_id") not in (None, files.run_id):
        raise CheckpointError(
            f"--resume: {path} belongs to run {state['run_id']!r}, not {files.run_id!r}: resume that run, "
            "or put this run's own checkpoint back"
        )
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


def build_trainer(spec: TrainSpec, plan: RunPlan, out: Path, replicas: Replicas = ALONE) -> Trainer:
    corpus = load_corpus(plan.data)
    cache = default_cache_dir() / "tokenizers"
    tokenizer = load_tokenizer(plan.tokenizer, train_texts=corpus.splits.get("train"), cache_dir=cache)
    if plan.resume_state is not None:
        check_same_corpus(plan.resume_state, corpus, spec.accept_changed_data)
        tokenizer.adopt_checkpoint(plan.resume_state, plan.tokenizer)
        if plan.cfg.vocab_size != tokenizer.vocab_size:
            raise UserError(f"checkpoint vocabulary {plan.cfg.vocab_size} != tokenizer {tokenizer.vocab_size}")
    cfg = with_precision(plan.cfg.replace(vocab_size=tokenizer.vocab_size), spec.precision)
    slices = replicas.size * spec.grad_accum
    if cfg.batch_size % slices:
        where = f"{replicas.size} processes" + (f" x {spec.grad_accum} micro-batches" if spec.grad_accum > 1 else "")
        raise UserError(f"batch_size {cfg.batch_size} does not split over {where}; use a multiple of {slices} (--batch-size)")
    train_tokens = tokenize_split(corpus, "train", tokenizer, progress=not spec.quiet)
    valid_tokens = tokenize_split(corpus, "valid", tokenizer, progress=not spec.quiet)
    windows = len(windows_for(train_tokens, cfg))
    if windows < cfg.batch_size:
        raise UserError(
            f"the training split holds {windows} windows of {cfg.context_global + 1} tokens, fewer than one "
            f"batch of {cfg.batch_size}: lower --batch-size, or give more text"
        )
    opts = run_options(spec, plan, out, corpus.fingerprint)
    return Trainer(cfg, opts, tokenizer, train_tokens, valid_tokens, plan.resume_state, replicas)


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


def run(spec: TrainSpec) -> int:
    """Train in this process until the run finishes, stops or fails; under torchrun, as one of
    its data-parallel replicas (trainer.replicas)."""
    resolve_device(spec.device)  # a missing device fails before any data is read
    replicas = from_environment(spec.device)
    try:
        return run_replica(spec, replicas)
    finally:
        replicas.close()


def run_replica(spec: TrainSpec, replicas: Replicas) -> int:
    spec = dataclasses.replace(spec, device=replica_device(spec.device, replicas), quiet=spec.quiet or not replicas.main)
    torch.manual_seed(spec.seed or 0)
    # Exact resume needs bit-identical steps: the default accumulating index kernels differ in
    # the last float32 bit from run to run, which bf16 heads amplify to 5e-4 in the loss
    # within 40 steps. The deterministic ones cost nothing measurable here (docs/design-notes.md).
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = spec.out
    plan = None if spec.resume else new_plan(spec, "")  # a bad --set or --config fails before any file is touched
    run_id = replicas.broadcast(chosen_run(spec, out))  # rank 0's: a new id is random
    files = RunFiles.under(out, run_id)
    lock = take_run(files) if replicas.main else None
    try:  # the lock is released however the run ends, a failed start included
        if not replicas.main:
            replicas.barrier()  # rank 0 first: it may train and cache the tokenizer
        plan = dataclasses.replace(plan, run_id=run_id) if plan else resumed_plan(spec, files)
        trainer = build_trainer(spec, plan, out, replicas)
        if replicas.main:
            replicas.barrier()
        replicas.copy_model(trainer.model)  # the same start on every replica, whatever their seeds
        state = train_until_done(trainer, spec.quiet)
    finally:
        if lock is not None:
            lock.release()
    if replicas.main:
        print(f"run {run_id} {state} at step {trainer.step}", file=sys.stderr)
    return 0


def train_until_done(trainer: Trainer, quiet: bool) -> str:
    """Fit until done, a stop request (SIGTERM, Ctrl-C) ending it at the next step boundary;
    returns how the run ended (finished, stopped, ...)."""

    def on_term(signum, frame):
        trainer.request_stop(f"{signal.Signals(signum).name} received at step {trainer.step}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if not quiet:
        compiling = "; the encoder compiles in the first step (45 s or more)" if trainer.opts.compile else ""
        print(
            f"run {trainer.opts.run_id}: {len(trainer.train)} training windows, {trainer.total_steps} steps planned; "
            f"log {trainer.files.log}{compiling}",
            file=sys.stderr,
        )
    state = trainer.fit()
    trainer.replicas.barrier()  # rank 0 writes the last checkpoint while the others wait
    return state
