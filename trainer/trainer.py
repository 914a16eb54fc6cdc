"""The training loop. It coordinates and decides nothing itself: the loss is ebm.objective's,
the store's upkeep ebm.upkeep's, the schedule and budget trainer.schedule's, recovery from
non-finite steps trainer.recovery's, alert rules trainer.alerts', and the files it writes
follow runs.runfiles (docs/design.md, "Training loop"). Under torchrun it is one of several
data-parallel replicas (trainer.replicas): rank 0 alone writes files and decides splat edits.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import numpy as np
import torch

from ebm import EBMModel, backend_for
from ebm.config import EBMConfig
from ebm.objective import StepResult, combine, host_metrics, training_loss
from ebm.pretrained import pretrained_embeddings
from ebm.upkeep import Event, SplatUpkeep
from runs.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

from . import alerts
from .compiled import compile_encoder
from .data import token_frequencies, windows_for
from .device_spec import resolve_device
from .evaluation import sample_log_records, score, windows_within
from .heap import release_free_heap
from .options import RunOptions
from .recovery import Action, Recovery, rolled_back_alert, stopped_alert
from .replicas import ALONE, Replicas
from .reporting import progress_bar
from .run_meta import meta_record
from .run_records import RunRecords
from .save_clock import SaveClock
from .schedule import Budget, is_eval_step, lr_factor
from .system import SystemMeter


class Trainer:
    """One run: data, model, optimiser, upkeep, logs and checkpoints."""

    def __init__(
        self,
        cfg: EBMConfig,
        opts: RunOptions,
        tokenizer,
        train_tokens: np.ndarray,
        valid_tokens: np.ndarray,
        resume_state: dict | None = None,
        replicas: Replicas = ALONE,
    ):
        self.cfg, self.opts, self.tokenizer, self.files = cfg, opts, tokenizer, opts.files
        self.replicas, self.writes = replicas, replicas.main
        self.device, vulkan = resolve_device(opts.device)
        self.device_name, self.backend = str(vulkan or self.device), backend_for(vulkan)
        self.train, self.valid = windows_for(train_tokens, cfg), windows_for(valid_tokens, cfg)
        self.eval_ids = self.valid.evenly_spaced(max(1, cfg.eval_tokens // cfg.targets_per_window))
        freq = torch.from_numpy(token_frequencies(train_tokens, cfg.vocab_size)).float()
        self.upkeep = SplatUpkeep(cfg, freq, decides=replicas.main)
        self.monitor, self.recovery = alerts.Monitor(), Recovery()
        resume_step = None if resume_state is None else int(resume_state["step"])
        self.records = RunRecords(opts, self.writes, resume_step)
        self.system = SystemMeter(str(self.device))
        self.step = self.epoch = self.batch_in_epoch = 0
        self.train_seconds, self.stop_requested, self.stop_signal = 0.0, False, False
        self.stop_reason = ""
        self.last_eval: tuple[int, float | None] = (-1, None)  # step and seconds per window of the last evaluation
        self.interruptible = False  # inside work that a stop request ends at once (_stoppable)
        self.save_clock = SaveClock(cfg.checkpoint_minutes)
        self.embedding_source = "checkpoint"
        self.resumed_from = None if resume_state is None else resume_state.get("resumed_from", "latest.pt")
        self.model = self._fresh_model() if resume_state is None else model_from_checkpoint(resume_state).train()
        self.model.to(self.device)
        if opts.compile:
            compile_encoder(self.model.context)
        self.opt = torch.optim.AdamW(self.model.parameter_groups(), lr=cfg.learning_rate)
        self.budget = Budget(self.steps_per_epoch * cfg.epochs, opts.max_steps, opts.max_minutes)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        if resume_state is not None:
            self._restore(resume_state)
            self.recovery.load_state_dict(resume_state)

    def _fresh_model(self) -> EBMModel:
        cfg = self.cfg
        emb, self.embedding_source = pretrained_embeddings(
            cfg.vocab_size, cfg.latent_dim, source=self.opts.embeddings, decode_token=self.tokenizer.token_text
        )
        model = EBMModel(cfg, n_splats=self.upkeep.initial_splats(), token_init=emb, token_freq=self.upkeep.token_freq)
        self.upkeep.start(model)
        return model

    def request_stop(self, reason: str = "stop requested") -> None:
        """A stop signal: honoured at once by one process, and by replicas at the end of the
        step in which they all know of it (trainer.replicas). One process inside an evaluation or
        sampling (which may run for minutes) leaves it at once: the signal handler raises there."""
        self.stop_signal, self.stop_reason = True, self.stop_reason or reason
        self.stop_requested = self.stop_requested or self.replicas.size == 1
        if self.interruptible and self.replicas.size == 1:
            self.interruptible = False
            raise StopRequestedError

    @contextmanager
    def _stoppable(self):
        """Work a stop request may cut short: scoring and sampling, never a write."""
        self.interruptible = True
        try:
            yield
        finally:
            self.interruptible = False

    def _set_lr(self) -> float:
        """The schedule's learning rate for this step, halved once per rollback (trainer.recovery).
        A fixed schedule_steps keeps the schedule when a resumed run gets a longer budget."""
        cfg = self.cfg
        progress = self.step / cfg.schedule_steps if cfg.schedule_steps else self.budget.progress(self.step, self.train_seconds)
        lr = cfg.learning_rate * self.recovery.lr_scale * lr_factor(self.step, cfg.warmup_steps, progress)
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.train) // self.cfg.batch_size)

    @property
    def total_steps(self) -> int:
        return self.budget.planned_steps

    def _running(self) -> bool:
        return self.budget.allows(self.step, self.train_seconds) and not self.stop_requested

    # ----- state
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            **self.upkeep.state_dict(),
            "config": self.cfg.to_dict(),
            "corpus": self.opts.data,
            "corpus_fingerprint": self.opts.data_fingerprint,
            "tokenizer": self.tokenizer.name,
            "tokenizer_fingerprint": self.tokenizer.fingerprint,
            "run_id": self.opts.run_id,
            "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state()},
            "data": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
            "step": self.step,
            "epoch": self.epoch,
            "train_seconds": self.train_seconds,
            "history": self.monitor.state_dict(),
            **self.recovery.state_dict(),
        }

    def _restore(self, state: dict) -> None:
        """Everything but the model's parameters and the recovery count (see _roll_back)."""
        self.opt.load_state_dict(state["optimizer"])
        self.upkeep.load_state_dict(state)
        torch.set_rng_state(state["rng"]["torch"])
        self.gen.set_state(state["rng"]["gen"])
        self.step, self.epoch = int(state["step"]), int(state["data"]["epoch"])
        self.batch_in_epoch = int(state["data"]["batch_in_epoch"])
        self.monitor.load_state_dict(state.get("history", self.monitor.state_dict()))
        self.train_seconds = float(state.get("train_seconds", 0.0))

    def save(self, epoch: int | None = None) -> None:
        if not self.writes:
            return
        cfg = self.cfg
        path = save_checkpoint(self.state_dict(), self.files.run_dir, epoch, cfg.checkpoint_keep_every, cfg.checkpoint_keep_last)
        self._log("checkpoint", path=str(path), latest=str(self.files.latest))
        self.save_clock.saved()

    def _beat(self, state: str = "running", force: bool = False, **extra) -> None:
        due = self.save_clock.next_in()
        due_t = None if due is None else time.time() + max(due, 0.0)
        where = {"step": self.step, "epoch": self.epoch, "phase": self.upkeep.phase.name}
        self.records.beat(state, force, **where, total_steps=self.total_steps, next_checkpoint_t=due_t, **extra)

    def _log(self, kind: str, **fields) -> None:
        self.records.log(kind, self.step, self.epoch, **fields)

    def _log_alerts(self, found: list[alerts.Alert]) -> None:
        self.records.log_alerts(found, self.step, self.epoch)

    def _log_events(self, events: list[Event]) -> None:
        for kind, fields in events:
            self._log(kind, **fields)
            if kind == "soc":
                self._log_alerts(self.monitor.after_soc(self.upkeep.soc.recent))

    # ----- the loop
    def fit(self) -> str:
        """Train until the budget, a stop request or the last epoch; the final state."""
        bar = progress_bar(self.total_steps, self.step, self.opts.quiet)
        try:  # a failure anywhere, the last checkpoint's write included, leaves the state `crashed`
            try:
                self._open_run()
                while self.epoch < self.cfg.epochs and self._running():
                    self._run_epoch(bar)
            except StopRequestedError:  # an evaluation or sampling cut short: its record is not written
                pass
            return self._close_run()
        except Exception as err:
            self.records.crashed(err, self.step, self.epoch)
            raise
        finally:
            bar.close()

    def _open_run(self) -> None:
        if not self.writes:
            return
        self.files.run_dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(self.files.tokenizer)
        if self.step == 0:
            self._log("meta", **self._meta())
            self._log_events([self.upkeep.phase_event(self.model, spawned=0)])
            self._evaluate()  # step 0: the curve starts where the model starts
        elif self.resumed_from is not None:  # readers drop what the run logged after this step before it stopped
            self._log("resume", from_checkpoint=self.resumed_from, pid=os.getpid())
        self._beat(force=True)

    def _meta(self) -> dict:
        sizes = {"train_tokens": len(self.train.tokens), "valid_tokens": len(self.valid.tokens)}
        sizes["planned_steps"] = self.total_steps
        context = {"embedding_source": self.embedding_source, "device": self.device_name, "replicas": self.replicas.size}
        return meta_record(self.opts, self.model, self.tokenizer, sizes, self.device, context)

    def _close_run(self) -> str:
        state, reason = "finished", {}
        if self.stop_requested:
            state, reason = "stopped", {"reason": self.stop_reason or "stopped by the trainer (see its alerts)"}
            self._final_evaluation()
            self.save()
        elif not self.budget.allows(self.step, self.train_seconds) and self.batch_in_epoch:
            if not is_eval_step(self.step, self.cfg.eval_interval, self.cfg.eval_first_interval):
                self._evaluate()
            self.save()
        self._log("status", state=state, **reason)
        self._beat(state, force=True, **reason)
        self.records.close()
        return state

    def _run_epoch(self, bar) -> None:
        bs = self.cfg.batch_size
        order = self.train.epoch_order(self.cfg.seed, self.epoch)
        n_batches = len(order) // bs
        while self.batch_in_epoch < n_batches and self._running():
            self._upkeep_before_step()
            b = self.batch_in_epoch
            rows = self.replicas.rows(order[b * bs : (b + 1) * bs])
            metrics = self.train_step(torch.from_numpy(self.train.batch(rows)))
            self.batch_in_epoch += 1
            bar.update(1)
            bar.set_postfix_str(f"loss={metrics['loss']:.3f}, ppl={metrics['ppl']:.1f}, tok_s={metrics['tokens_per_s']:.0f}")
            if is_eval_step(self.step, self.cfg.eval_interval, self.cfg.eval_first_interval):
                self._evaluate()
            if self.save_clock.due():
                self.save()
            self._beat()
        if self.batch_in_epoch >= n_batches:
            self.epoch += 1
            self.batch_in_epoch = 0
            self._evaluate(epoch_end=True)
            self.save(epoch=self.epoch)

    def train_step(self, tokens: torch.Tensor) -> dict:
        """One optimiser step on this process's rows of a global batch (all of it when alone)."""
        t0 = time.perf_counter()
        lr = self._set_lr()
        self.model.refresh_neighbours(self.step)
        self.opt.zero_grad(set_to_none=True)
        out = self._losses_and_gradients(tokens)
        self.replicas.average_gradients(list(self.model.parameters()))
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        metrics = {**host_metrics({**out.metrics, "grad_norm": grad_norm}, self.replicas.average), "lr": lr}
        alert = alerts.non_finite(metrics)
        if alert is not None:
            self._on_non_finite(alert)
            return {**metrics, "tokens_per_s": 0.0}
        self.recovery.on_finite()
        self.opt.step()
        self.step += 1
        metrics |= {"n_splats": self.model.splats.n, "phase": self.upkeep.phase.index}  # the store this step trained
        events = self._upkeep_after_step(out, lr)
        release_free_heap()
        elapsed = self._agree_on_time(time.perf_counter() - t0)
        targets = tokens.shape[0] * self.replicas.size * self.cfg.targets_per_window
        metrics |= {"train_seconds": self.train_seconds, "tokens_per_s": targets / elapsed}
        if self.step % self.opts.log_every == 0:
            self._log("batch", **metrics, **self.system.read())
        self._log_events(events)
        self._log_alerts(self.monitor.after_step(self.step, metrics))
        return metrics

    def _losses_and_gradients(self, tokens: torch.Tensor) -> StepResult:
        """Backward of this process's rows in --grad-accum micro-batches. Before each the
        generator is rewound, so every micro-batch keeps its slice of the one-batch noise
        (ebm.shard) and the generator ends where one batch would leave it."""
        parts, start = [], self.gen.get_state()
        k = self.opts.grad_accum
        for part, rows in enumerate(tokens.chunk(k)):
            self.gen.set_state(start)
            shard = self.replicas.shard.micro(part, k)
            out = training_loss(self.model, rows.to(self.device), self.gen, backend=self.backend, shard=shard)
            (out.loss / k).backward()
            parts.append(out)
        return combine(parts)

    def _upkeep_before_step(self) -> None:
        due = self.upkeep.edits_due(self.epoch, self.step, after_step=False)
        self._log_events(self.upkeep.before_step(self.model, self.epoch, self.step, self.opt))
        if due:
            self.replicas.sync_store(self.model, self.opt)

    def _upkeep_after_step(self, out: StepResult, lr: float) -> list[Event]:
        """The store's upkeep on the global batch's statistics, the same on every replica, with
        rank 0's edits copied to the others."""
        gather = self.replicas.gather
        out = out._replace(
            target_points=gather(out.target_points), target_energy=gather(out.target_energy), target_nbr=gather(out.target_nbr)
        )
        progress = self.epoch + self.batch_in_epoch / self.steps_per_epoch
        events = self.upkeep.after_step(self.model, out, self.step, progress, lr, self.opt)
        if self.upkeep.edits_due(self.epoch, self.step, after_step=True):
            self.replicas.sync_store(self.model, self.opt)
        return events

    def _agree_on_time(self, elapsed: float) -> float:
        """The step's time (the slowest replica's) and whether any replica was asked to stop:
        every replica then takes the same budget and stop decisions."""
        if self.replicas.size > 1:
            mine = torch.tensor([elapsed, float(self.stop_signal)], dtype=torch.float64, device=self.device)
            elapsed, stop = self.replicas.agree_max(mine).tolist()
            self.stop_requested = self.stop_requested or stop > 0
        self.train_seconds += elapsed
        return elapsed

    # ----- non-finite steps
    def _on_non_finite(self, alert: alerts.Alert) -> None:
        self._log_alerts([alert])
        self.opt.zero_grad(set_to_none=True)
        action = self.recovery.on_non_finite(can_roll_back=self.replicas.broadcast(self.files.latest.exists()))
        if action is Action.ROLL_BACK:
            self._roll_back()
        elif action is Action.STOP:
            self._log("alert", **stopped_alert())
            self.stop_requested = True

    def _roll_back(self) -> None:
        state = self.replicas.broadcast(load_checkpoint(self.files.latest) if self.writes else None)
        spent = self.train_seconds  # a rollback undoes steps, not the time they took
        self.model.load_state_dict(state["model"])
        # A store of another size comes back as new Parameters: the optimiser must hold those.
        self.opt = torch.optim.AdamW(self.model.parameter_groups(), lr=self.cfg.learning_rate)
        self._restore(state)
        self.train_seconds = spent
        self._log("alert", **rolled_back_alert(self.step, self.files.latest.name))

    # ----- evaluation
    def _evaluate(self, epoch_end: bool = False) -> None:
        if not self.writes:
            return
        t0 = time.perf_counter()
        with self._stoppable():
            result = score(self.model, self.valid, self.eval_ids, self.cfg.batch_size, backend=self.backend)
        self.last_eval = (self.step, (time.perf_counter() - t0) / max(len(self.eval_ids), 1))
        phase = self.upkeep.phase
        upkeep = {"soc_rate": self.upkeep.soc.rate(), "phase": phase.index, "phase_name": phase.name}
        self._log("epoch" if epoch_end else "eval", **result, **self.model.splats.stats(self.step), **upkeep, **self._split)
        self._log_alerts(self.monitor.after_eval(result["ppl_energy"]))
        self._log_samples()

    def _final_evaluation(self, budget_s: float = 20.0) -> None:
        """On a stop: the held-out score at this step on the evaluation windows that fit in
        budget_s at the last evaluation's pace, with final=True; a second signal cuts it short."""
        if not self.writes or self.last_eval[0] == self.step:
            return
        ids = windows_within(self.eval_ids, self.last_eval[1], budget_s)
        try:
            with self._stoppable():
                result = score(self.model, self.valid, ids, self.cfg.batch_size, backend=self.backend)
        except StopRequestedError:
            return
        self._log("eval", **result, final=True, windows=len(ids), **self._split)

    @property
    def _split(self) -> dict:
        return {"split": "valid", "tokenizer": self.tokenizer.name}

    def _log_samples(self, n: int = 2) -> None:
        with self._stoppable():
            records = sample_log_records(
                self.model, self.valid, self.eval_ids[:n], self.tokenizer.decode, self.step, backend=self.backend
            )
        for record in records:
            self._log("sample", **record)


class StopRequestedError(Exception):
    """Raised by the stop signal's handler inside work marked _stoppable."""
