"""ebm-train: train an EBM in the foreground or in the background (--detach).

Writes the file contract of DESIGN.md section 12:
    <out>/logs/ebm/<run_id>.jsonl                 append-only event log, first line `meta`
    <out>/checkpoints/<run_id>/ebm_epoch_N.pt     snapshots, latest.pt for resume (atomic)
    <out>/checkpoints/<run_id>/status.json        pid, state, heartbeat
    <out>/checkpoints/<run_id>/tokenizer.json     so a checkpoint decodes by itself
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ebm import EBMModel, SamplerSettings
from ebm.config import ConfigError, EBMConfig
from ebm.ops import head_dtype
from ebm.pretrained import pretrained_embeddings
from ebm.soc import SOCController, coverage

from . import alerts
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .curriculum import Curriculum, Phase
from .data import BUILTIN_LICENSE, DataError, Windows, default_cache_dir, load_corpus, token_frequencies, tokenize_split
from .device import DeviceError, resolve_device
from .evaluation import generate_samples, score
from .heap import release_free_heap
from .logs import RunLogger, log_path
from .status import status_path, write_status
from .tokenizer import TokenizerError, load_tokenizer

USER_ERRORS = (ConfigError, DataError, TokenizerError, CheckpointError, DeviceError)


class UserError(RuntimeError):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebm-train", description="Train an energy-based language model on the hypersphere.")
    p.add_argument("--data", default="builtin", help="builtin (default), wikitext-2, wikitext-103, or a folder / text file")
    p.add_argument("--tokenizer", default="gpt2", help="gpt2 (default), bpe:N, a tokenizer.json or a tokenizer folder")
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


# --------------------------------------------------------------------------- set-up


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def build_config(args, vocab_size: int) -> EBMConfig:
    base = EBMConfig()
    if args.config:
        try:
            base = EBMConfig.from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, ValueError) as err:
            raise UserError(f"--config {args.config}: {err}") from None
    cfg = base.with_overrides(args.set)
    changes = {"vocab_size": vocab_size}
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            changes[key] = getattr(args, flag)
    if args.no_curriculum:
        changes["curriculum"] = False
    return cfg.replace(**changes)


def latest_run(checkpoint_root: Path) -> str:
    runs = [p.parent for p in checkpoint_root.glob("*/latest.pt")]
    if not runs:
        raise UserError(f"--resume: no run with a latest.pt under {checkpoint_root}")
    return max(runs, key=lambda p: (p / "latest.pt").stat().st_mtime).name


# --------------------------------------------------------------------------- training


class Trainer:
    """Coordinates one run: data, model, optimiser, SOC, curriculum, logs and checkpoints."""

    def __init__(
        self,
        cfg: EBMConfig,
        args,
        run_id: str,
        out: Path,
        tokenizer,
        train_tokens: np.ndarray,
        valid_tokens: np.ndarray,
        resume_state: dict | None = None,
    ):
        self.cfg, self.args, self.run_id = cfg, args, run_id
        self.run_dir = out / "checkpoints" / run_id
        self.status_file = status_path(out / "checkpoints", run_id)
        self.tokenizer = tokenizer
        self.device, self.vulkan = resolve_device(args.device)
        self.train = Windows(train_tokens, cfg.context_global, cfg.seq_length)
        self.valid = Windows(valid_tokens, cfg.context_global, cfg.seq_length)
        self.eval_ids = self.valid.evenly_spaced(max(1, cfg.eval_tokens // cfg.seq_length))
        self.curriculum = Curriculum(cfg)
        self.freq = torch.from_numpy(token_frequencies(train_tokens, cfg.vocab_size)).float()
        self.logger = RunLogger(log_path(out / "logs", run_id), echo=self._echo)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.train_seconds = 0.0
        self.stop_requested = False
        self.history: dict[str, list] = {"energy": [], "nll": [], "ppl_val": []}
        self._last_beat = 0.0
        self.embedding_source = "checkpoint"
        if resume_state is None:
            self.model = self._fresh_model()
        else:
            from .checkpoint import model_from_checkpoint

            self.model = model_from_checkpoint(resume_state)
            self.model.train()
        self.model.to(self.device)
        if self.vulkan is not None:
            self.model.use_vulkan(self.vulkan)
        self.opt = torch.optim.AdamW(self.model.parameter_groups(), lr=cfg.learning_rate)
        self.total_steps = self._planned_steps()
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.soc = SOCController(cfg)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.phase = self.curriculum.phase(0, 0)
        self.rollbacks = 0
        self.bad_steps = 0
        if resume_state is not None:
            self._restore(resume_state)

    # ----- set-up helpers
    def _fresh_model(self) -> EBMModel:
        cfg = self.cfg
        emb, source = pretrained_embeddings(
            cfg.vocab_size, cfg.latent_dim, source=self.args.embeddings, decode_token=self.tokenizer.token_text
        )
        self.embedding_source = source
        model = EBMModel(cfg, n_splats=self.curriculum.initial_splats(), token_init=emb, token_freq=self.freq)
        model.splats.tau.fill_(self.curriculum.phase(0, 0).temperature)
        return model

    def _within_budget(self) -> bool:
        budget = self.args.max_minutes
        return self.step < self.total_steps and (budget is None or self.train_seconds < 60 * budget)

    def _planned_steps(self) -> int:
        return min(self.schedule_steps, self.args.max_steps) if self.args.max_steps else self.schedule_steps

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.train) // self.cfg.batch_size)

    @property
    def schedule_steps(self) -> int:
        # The learning-rate schedule spans the configured epochs, never --max-steps, so a run
        # stopped early and resumed follows the same schedule as one that never stopped.
        return self.steps_per_epoch * self.cfg.epochs

    def _lr_factor(self, step: int) -> float:
        warm = self.cfg.warmup_steps
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, self.schedule_steps - warm))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    def _echo(self, record: dict) -> None:
        if record["type"] == "alert":
            print(f"[ebm-train] ALERT {record['rule']}: {record['message']} -> {record['advice']}", file=sys.stderr)

    # ----- state
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "soc": self.soc.state_dict(),
            "config": self.cfg.to_dict(),
            "tokenizer": self.tokenizer.name,
            "tokenizer_fingerprint": self.tokenizer.fingerprint,
            "run_id": self.run_id,
            "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state()},
            "data": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
            "step": self.step,
            "epoch": self.epoch,
            "train_seconds": self.train_seconds,
            "phase": self.phase.index,
            "history": self.history,
            "rollbacks": self.rollbacks,
        }

    def _restore(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.soc.load_state_dict(state["soc"])
        torch.set_rng_state(state["rng"]["torch"])
        self.gen.set_state(state["rng"]["gen"])
        self.step, self.epoch = int(state["step"]), int(state["data"]["epoch"])
        self.batch_in_epoch = int(state["data"]["batch_in_epoch"])
        self.history = state.get("history", self.history)
        self.rollbacks = int(state.get("rollbacks", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.phase = self.curriculum.phase(self.epoch, self.step)

    def save(self, epoch: int | None = None) -> Path:
        path = save_checkpoint(
            self.state_dict(), self.run_dir, epoch, self.cfg.checkpoint_keep_every, self.cfg.checkpoint_keep_last
        )
        self.logger.log("checkpoint", self.step, self.epoch, path=str(path), latest=str(self.run_dir / "latest.pt"))
        return path

    def heartbeat(self, state: str = "running", force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_beat > 5:
            write_status(
                self.status_file,
                state,
                run_id=self.run_id,
                step=self.step,
                epoch=self.epoch,
                phase=self.phase.name,
                total_steps=self.total_steps,
            )
            self._last_beat = now

    # ----- the loop
    def fit(self) -> str:
        cfg, args = self.cfg, self.args
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(self.run_dir / "tokenizer.json")
        if self.step == 0:
            self.logger.log(
                "meta",
                0,
                0,
                run_id=self.run_id,
                schema=1,
                config=cfg.to_dict(),
                tokenizer=self.tokenizer.name,
                data=args.data,
                data_note=BUILTIN_LICENSE if args.data == "builtin" else args.data,
                train_tokens=int(len(self.train.tokens)),
                valid_tokens=int(len(self.valid.tokens)),
                embedding_source=self.embedding_source,
                device=str(self.vulkan or self.device),
                head_dtype=str(head_dtype(cfg.head_dtype, self.device)).removeprefix("torch."),
                pid=os.getpid(),
                n_params=sum(p.numel() for p in self.model.parameters()),
            )
            self.logger.log(
                "phase",
                0,
                0,
                phase=self.phase.index,
                name=self.phase.name,
                capacity=self.phase.capacity,
                tau=self.phase.temperature,
                spawned=0,
                n_splats=self.model.splats.n,
            )
        self.heartbeat(force=True)
        from tqdm import tqdm

        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=args.quiet or not sys.stderr.isatty(),
            unit="step",
            dynamic_ncols=True,
        )
        state = "finished"
        try:
            while self.epoch < cfg.epochs and self._within_budget() and not self.stop_requested:
                self._run_epoch(bar)
        except Exception:
            self.heartbeat("crashed", force=True)
            self.logger.log("status", self.step, self.epoch, state="crashed")
            raise
        finally:
            bar.close()
        if self.stop_requested:
            state = "stopped"
            self.save()
        elif not self._within_budget() and self.batch_in_epoch:
            if self.step % self.cfg.eval_interval:
                self._evaluate()
            self.save()
        self.logger.log("status", self.step, self.epoch, state=state)
        self.heartbeat(state, force=True)
        self.logger.close()
        return state

    def _run_epoch(self, bar) -> None:
        order = self.train.epoch_order(self.cfg.seed, self.epoch)
        n_batches = len(order) // self.cfg.batch_size
        while self.batch_in_epoch < n_batches and self._within_budget() and not self.stop_requested:
            self._maybe_change_phase()
            b = self.batch_in_epoch
            ids = order[b * self.cfg.batch_size : (b + 1) * self.cfg.batch_size]
            metrics = self.train_step(torch.from_numpy(self.train.batch(ids)))
            self.batch_in_epoch += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{metrics['loss']:.3f}",
                ppl=f"{metrics['ppl']:.1f}",
                tok_s=f"{metrics['tokens_per_s']:.0f}",
                epoch=self.epoch,
            )
            if self.step % self.cfg.eval_interval == 0:
                self._evaluate()
            self.heartbeat()
        if self.batch_in_epoch >= n_batches:
            self.epoch += 1
            self.batch_in_epoch = 0
            self._evaluate(epoch_end=True)
            self.save(epoch=self.epoch)

    def train_step(self, tokens: torch.Tensor) -> dict:
        cfg, model = self.cfg, self.model
        t0 = time.perf_counter()
        model.refresh_neighbours(self.step)
        out = model(tokens.to(self.device), generator=self.gen)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        )
        metrics = {**out.metrics, "grad_norm": grad_norm, "lr": self.opt.param_groups[0]["lr"]}
        alert = alerts.non_finite({k: float(v) for k, v in metrics.items()})
        if alert is not None:
            self._handle_non_finite(alert)
            return {**metrics, "tokens_per_s": 0.0}
        self.bad_steps = 0
        self.opt.step()
        self.sched.step()
        self.step += 1
        model.splats.apply_alpha_decay(
            model.splats.decay_strength(self.epoch + self.batch_in_epoch / self.steps_per_epoch),
            metrics["lr"],
            self.step,
        )
        model.splats.record_usage(out.target_nbr, self.step)
        self.soc.observe(out.target_points, out.target_energy)
        release_free_heap()
        elapsed = time.perf_counter() - t0
        self.train_seconds += elapsed
        metrics["train_seconds"] = self.train_seconds
        metrics["tokens_per_s"] = tokens.shape[0] * cfg.seq_length / elapsed
        metrics["n_splats"] = model.splats.n
        metrics["phase"] = self.phase.index
        self.history["energy"].append(metrics["energy"])
        self.history["nll"].append(metrics["nll"])
        self.history["energy"] = self.history["energy"][-1000:]
        self.history["nll"] = self.history["nll"][-1000:]
        if self.step % self.args.log_every == 0:
            self.logger.log("batch", self.step, self.epoch, **metrics)
        if self.soc.due(self.step):
            self._soc_check()
        if self.step % 50 == 0:
            self._check_trends()
        return metrics

    def _handle_non_finite(self, alert) -> None:
        self.bad_steps += 1
        self.logger.log("alert", self.step, self.epoch, **alert.as_dict())
        self.opt.zero_grad(set_to_none=True)
        if self.bad_steps < 3:
            return
        latest = self.run_dir / "latest.pt"
        if self.rollbacks >= 2 or not latest.exists():
            self.logger.log(
                "alert",
                self.step,
                self.epoch,
                rule="nan_stop",
                severity="error",
                message="training stays non-finite; stopped with a checkpoint of the last finite state",
                advice="lower learning_rate, raise warmup_steps, or check the data",
            )
            self.stop_requested = True
            return
        state = load_checkpoint(latest)
        spent = self.train_seconds  # a rollback undoes steps, not the time they took
        self.model.load_state_dict(state["model"])
        self._restore(state)
        self.train_seconds = spent
        self.rollbacks += 1
        for group in self.opt.param_groups:
            group["lr"] *= 0.5
        self.sched.base_lrs = [lr * 0.5 for lr in self.sched.base_lrs]
        self.bad_steps = 0
        self.logger.log(
            "alert",
            self.step,
            self.epoch,
            rule="rollback",
            severity="error",
            message=f"rolled back to step {self.step} from {latest.name}; learning rate halved",
            advice="if this repeats, lower learning_rate in the config",
        )

    def _soc_check(self) -> None:
        event = self.soc.check(self.model.splats, self.model.index, self.step, self.phase.capacity, self.phase.index, self.opt)
        self.logger.log("soc", self.step, self.epoch, **event.as_dict(), soc_rate=self.soc.rate())
        alert = alerts.soc_too_fast(self.soc.recent)
        if alert is not None:
            self.logger.log("alert", self.step, self.epoch, **alert.as_dict())

    def _check_trends(self) -> None:
        for alert in (alerts.energy_rising(self.history["energy"]), alerts.plateau(self.history["nll"], target=math.log(100))):
            if alert is not None:
                self.logger.log("alert", self.step, self.epoch, **alert.as_dict())

    def _maybe_change_phase(self) -> None:
        new = self.curriculum.phase(self.epoch, self.step)
        if new == self.phase:
            return
        spawned = self._grow(new)
        self.phase = new
        self.model.splats.tau.fill_(new.temperature)
        self.logger.log(
            "phase",
            self.step,
            self.epoch,
            phase=new.index,
            name=new.name,
            capacity=new.capacity,
            tau=new.temperature,
            spawned=spawned,
            n_splats=self.model.splats.n,
        )

    @torch.no_grad()
    def _grow(self, phase: Phase) -> int:
        """Spawn splats at the most frequent tokens that no splat covers (curriculum_growth_fill of the room)."""
        model = self.model
        room = self.curriculum.growth(model.splats.n, phase)
        if room <= 0:
            return 0
        order = torch.argsort(self.freq, descending=True, stable=True)
        emb = model.embeddings.detach()[order]
        model.index.build(model.splats.mu)
        uncovered = ~coverage(model.splats, model.index, emb, 1, self.cfg.coverage_kernel)
        chosen = emb[uncovered][:room]
        return model.splats.spawn(chosen, self.step, phase.index, self.opt)

    def _evaluate(self, epoch_end: bool = False) -> dict:
        result = score(self.model, self.valid, self.eval_ids, self.cfg.batch_size)
        self.history["ppl_val"].append(result["ppl_energy"])
        stats = self.model.splats.stats(self.step)
        record = {
            **result,
            **stats,
            "soc_rate": self.soc.rate(),
            "phase": self.phase.index,
            "phase_name": self.phase.name,
            "split": "valid",
            "tokenizer": self.tokenizer.name,
        }
        self.logger.log("epoch" if epoch_end else "eval", self.step, self.epoch, **record)
        alert = alerts.validation_worse(self.history["ppl_val"])
        if alert is not None:
            self.logger.log("alert", self.step, self.epoch, **alert.as_dict())
        self._log_samples()
        return record

    def _log_samples(self, n: int = 2, n_tokens: int = 12) -> None:
        prompts = [self.valid.batch(np.array([i]))[0, -9:-1].tolist() for i in self.eval_ids[:n]]
        cfg = self.cfg
        settings = SamplerSettings(cfg.langevin_steps, cfg.langevin_dt, cfg.langevin_gamma, cfg.langevin_T)
        samples, quality = generate_samples(
            self.model, prompts, n_tokens, self.tokenizer.decode, seed=self.step, settings=settings
        )
        for s in samples:
            self.logger.log(
                "sample",
                self.step,
                self.epoch,
                prompt=s["prompt"],
                text=s["text"],
                mean_energy=s["mean_energy"],
                mean_cosine=s["mean_cosine"],
                **quality,
            )


# --------------------------------------------------------------------------- entry points


def detach(argv: list[str], args) -> int:
    run_id = args.run_id or new_run_id()
    out = Path(args.out).resolve()
    run_dir = out / "checkpoints" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    child_argv = [a for a in argv if a != "--detach"]
    if "--run-id" not in child_argv and not args.resume:
        child_argv += ["--run-id", run_id]
    console = open(run_dir / "train.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.train", *child_argv, "--quiet"],
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    shown = args.resume if args.resume and args.resume != "latest" else run_id
    print(
        f"run id:    {shown}\npid:       {proc.pid}\nlog:       {log_path(out / 'logs', shown)}\n"
        f"console:   {run_dir / 'train.out'}\nstatus:    {status_path(out / 'checkpoints', shown)}\n"
        f"dashboard: ebm-dashboard --logs {out / 'logs'} --checkpoints {out / 'checkpoints'}\n"
        f"diagnose:  ebm-diagnose --batch --run-id {shown} --out {out}"
    )
    return 0


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.detach:
        return detach(argv, args)
    resolve_device(args.device)  # a missing device fails before any data is read
    torch.manual_seed(args.seed or 0)
    # Exact resume needs bit-identical steps: the default accumulating index kernels differ in
    # the last float32 bit from run to run, which bf16 heads amplify to 5e-4 in the loss
    # within 40 steps. The deterministic ones cost nothing measurable here (docs/design-notes.md).
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(args.out).resolve()
    resume_state = None
    if args.resume:
        run_id = latest_run(out / "checkpoints") if args.resume == "latest" else args.resume
        resume_state = load_checkpoint(out / "checkpoints" / run_id / "latest.pt")
        cfg = EBMConfig.from_dict(resume_state["config"])
        if args.epochs is not None:
            cfg = cfg.replace(epochs=args.epochs)
        tok_spec = str(out / "checkpoints" / run_id / "tokenizer.json")
    else:
        run_id = args.run_id or new_run_id()
        tok_spec = args.tokenizer
        cfg = None
    corpus = load_corpus(args.data)
    tokenizer = load_tokenizer(tok_spec, train_texts=corpus.splits.get("train"), cache_dir=default_cache_dir() / "tokenizers")
    if cfg is None:
        cfg = build_config(args, tokenizer.vocab_size)
    elif cfg.vocab_size != tokenizer.vocab_size:
        raise UserError(f"checkpoint vocabulary {cfg.vocab_size} != tokenizer {tokenizer.vocab_size}")
    train_tokens = tokenize_split(corpus, "train", tokenizer, progress=not args.quiet)
    valid_tokens = tokenize_split(corpus, "valid", tokenizer, progress=not args.quiet)
    trainer = Trainer(cfg, args, run_id, out, tokenizer, train_tokens, valid_tokens, resume_state)

    def on_term(signum, frame):
        trainer.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if not args.quiet:
        print(
            f"run {run_id}: {len(trainer.train)} training windows, {trainer.total_steps} steps planned; "
            f"log {trainer.logger.path}",
            file=sys.stderr,
        )
    state = trainer.fit()
    print(f"run {run_id} {state} at step {trainer.step}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except (*USER_ERRORS, UserError) as err:
        print(f"ebm-train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
