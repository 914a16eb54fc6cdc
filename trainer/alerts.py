"""Alert rules on metric histories. Each rule is a pure function of recent values that returns
an Alert (what it saw, what to try) or None; tests fire and silence each one."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Alert:
    rule: str
    message: str
    advice: str
    severity: str = "warning"

    def as_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message, "advice": self.advice, "severity": self.severity}


def trend(values: list[float]) -> tuple[float, float]:
    """Least-squares slope per step and its t statistic."""
    n = len(values)
    if n < 3:
        return 0.0, 0.0
    mx = (n - 1) / 2
    my = sum(values) / n
    sxx = sum((i - mx) ** 2 for i in range(n))
    slope = sum((i - mx) * (v - my) for i, v in enumerate(values)) / sxx
    resid = sum((v - my - slope * (i - mx)) ** 2 for i, v in enumerate(values))
    se = math.sqrt(resid / (n - 2) / sxx) if resid > 0 else 0.0
    return slope, (slope / se if se > 0 else (math.inf if slope > 0 else -math.inf if slope < 0 else 0.0))


@dataclass(frozen=True)
class Trend:
    """The one trend vocabulary of curves, diagnose and alerts: falling, flat or rising (by a
    t test of the least-squares slope), with the slope per 100 steps in the series' own units."""

    word: str  # "falling", "probably falling", "flat", "probably rising", "rising", or "too few points"
    per_100: float
    t: float
    n: int

    def __str__(self) -> str:
        return self.markdown().replace("**", "")

    def markdown(self) -> str:
        if self.word == "too few points":
            return f"too few points for a trend ({self.n})"
        return f"**{self.word}** ({self.per_100:+.3g} per 100 steps, t = {self.t:.1f}, last {self.n} batches)"


def describe_trend(values: list, window: int = 200, t_crit: float = 3.0, t_weak: float = 2.0) -> Trend:
    """|t| > t_crit: falling or rising; t_weak < |t| <= t_crit: "probably" so (batch losses are
    autocorrelated, so a t of 2 to 3 is suggestive, not proof, but is not flat either)."""
    tail = [float(v) for v in values[-window:] if v is not None and math.isfinite(v)]
    if len(tail) < 10:
        return Trend("too few points", 0.0, 0.0, len(tail))
    slope, t = trend(tail)
    direction = "falling" if t < 0 else "rising"
    word = direction if abs(t) > t_crit else f"probably {direction}" if abs(t) > t_weak else "flat"
    return Trend(word, 100 * slope, t, len(tail))


def energy_rising(energies: list[float], window: int = 200, t_crit: float = 4.0) -> Alert | None:
    """Mean energy at targets rising significantly over the last `window` batches."""
    tail = [e for e in energies[-window:] if e is not None and math.isfinite(e)]
    if len(tail) < window // 2:
        return None
    slope, t = trend(tail)
    if t > t_crit:
        return Alert(
            "energy_rising",
            f"target energy rose by {slope * len(tail):+.3f} over {len(tail)} batches (t = {t:.1f})",
            "lower learning_rate, or raise splat_temperature; check the SOC spawn rate",
        )
    return None


def soc_too_fast(activities_avalanche: list[bool], window: int = 10, limit: float = 0.8) -> Alert | None:
    tail = activities_avalanche[-window:]
    if len(tail) >= window and sum(tail) / len(tail) >= limit:
        return Alert(
            "soc_too_fast",
            f"{sum(tail)} avalanches in the last {len(tail)} SOC checks",
            "raise soc_threshold or coverage kernel reach (lower coverage_kernel), or grow capacity sooner",
        )
    return None


def validation_worse(ppls: list[float], patience: int = 2, tolerance: float = 0.02) -> Alert | None:
    """Validation perplexity above its best by > tolerance for `patience` evaluations in a row."""
    finite = [p for p in ppls if p is not None and math.isfinite(p)]
    if len(finite) <= patience:
        return None
    best = min(finite[:-patience])
    if all(p > best * (1 + tolerance) for p in finite[-patience:]):
        return Alert(
            "validation_worse",
            f"validation ppl {finite[-1]:.2f} is above its best {best:.2f} for {patience} evaluations",
            "overfitting or too high a learning rate: lower learning_rate or stop at the best checkpoint",
        )
    return None


def plateau(losses: list[float], target: float, window: int = 500, min_gain: float = 0.005) -> Alert | None:
    """Loss flat (relative gain < min_gain over the window) while still far (> 1.5x) from target."""
    tail = [v for v in losses[-window:] if v is not None and math.isfinite(v)]
    if len(tail) < window:
        return None
    half = len(tail) // 2
    early, late = sum(tail[:half]) / half, sum(tail[half:]) / (len(tail) - half)
    if (early - late) / max(abs(early), 1e-9) < min_gain and late > 1.5 * target:
        return Alert(
            "plateau",
            f"nll flat at {late:.3f} over {len(tail)} batches, target {target:.3f}",
            "raise learning_rate or model capacity (hidden_dim, n_splats), or check the data",
        )
    return None


def non_finite(metrics: dict[str, float]) -> Alert | None:
    bad = sorted(k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v))
    if bad:
        return Alert(
            "nan",
            f"non-finite values in {', '.join(bad)}; the update was skipped",
            "lower learning_rate or grad_clip; the trainer rolls back to the last checkpoint if it repeats",
            "error",
        )
    return None


class Monitor:
    """The metric histories that the trend rules read, kept with the run (saved in checkpoints)."""

    HISTORY = 1000  # batches kept per series

    def __init__(self, nll_target: float = math.log(100), every: int = 50):
        self.nll_target, self.every = nll_target, every
        self.history: dict[str, list] = {"energy": [], "nll": [], "ppl_val": []}

    def after_step(self, step: int, metrics: dict[str, float]) -> list[Alert]:
        """Record the batch; every `every` steps test the energy and loss trends."""
        for key in ("energy", "nll"):
            self.history[key] = [*self.history[key], metrics[key]][-self.HISTORY :]
        if step % self.every:
            return []
        found = (energy_rising(self.history["energy"]), plateau(self.history["nll"], target=self.nll_target))
        return [a for a in found if a is not None]

    def after_eval(self, ppl: float) -> list[Alert]:
        self.history["ppl_val"].append(ppl)
        alert = validation_worse(self.history["ppl_val"])
        return [alert] if alert is not None else []

    @staticmethod
    def after_soc(recent_avalanches: list[bool]) -> list[Alert]:
        alert = soc_too_fast(recent_avalanches)
        return [alert] if alert is not None else []

    def state_dict(self) -> dict:
        return self.history

    def load_state_dict(self, history: dict) -> None:
        self.history = {k: list(v) for k, v in history.items()}


def echo_alert(record: dict) -> None:
    """A log listener: each alert record, one line on stderr as well."""
    if record["type"] == "alert":
        print(f"[ebm-train] ALERT {record['rule']}: {record['message']} -> {record['advice']}", file=sys.stderr)
