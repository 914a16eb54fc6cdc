"""EBMConfig: the one configuration of a model and its training run.

Each field carries its rule and a one-line meaning in its metadata (`setting`); validation reads
them, and only rules that tie fields together are written by hand (`_check_together`). The
config is frozen, validated on construction, and travels as JSON inside every checkpoint and
at the head of every log, so a checkpoint rebuilds its model alone. Departures from the
reference design's defaults, with the measurements behind them, are in docs/design.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields


class ConfigError(ValueError):
    """A config value is out of range or inconsistent; the message says what to change."""


# A rule returns what is wrong with a value, or None when it is fine.
Rule = Callable[[typing.Any], str | None]


def positive(value) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value) -> str | None:
    return None if value >= 0 else "must be >= 0"


def unit_interval(value) -> str | None:
    return None if 0 <= value <= 1 else "must lie in [0, 1]"


def open_unit_interval(value) -> str | None:  # (0, 1]
    return None if 0 < value <= 1 else "must lie in (0, 1]"


def at_most(limit: int, why: str, low: int = 1) -> Rule:
    """An integer in [low, limit]; above the limit a run would not finish or fit (`why` says which)."""

    def rule(value) -> str | None:
        if value < low:
            return f"must be >= {low}"
        return None if value <= limit else f"must be <= {limit:,} ({why})"

    return rule


def one_of(*choices: str) -> Rule:
    def rule(value) -> str | None:
        return None if value in choices else "must be one of " + ", ".join(repr(c) for c in choices)

    return rule


def angles(value) -> str | None:
    return None if value and all(0 < s <= 3.14 for s in value) else "must be non-empty angles in (0, pi]"


def all_positive(value) -> str | None:
    return None if all(v > 0 for v in value) else "must all be > 0"


def setting(default, rule: Rule | None = None, help: str = ""):
    """A config field with its validation rule and its meaning (shown by tools that list the config)."""
    return field(default=default, metadata={"rule": rule, "help": help})


# Fields whose default changed the architecture when they were added, with the value that
# checkpoints written before them mean.
SAVED_BEFORE = {"context_encoder": "multiscale", "splat_term": "token"}
CHAIN_KEYS = ("langevin_steps", "langevin_dt", "langevin_gamma")


def _sampler_settings_of(data: dict) -> dict:
    """Before langevin_kappa, the chain ran on the model's latent energy and its flow for
    ppl_decoder shared langevin_dt: keep that flow, and let today's landscape chain take today's
    defaults instead of settings tuned for another energy."""
    if "langevin_kappa" in data:
        return data
    kept = {k: v for k, v in data.items() if k not in CHAIN_KEYS}
    return kept | {"eval_flow_dt": data.get("langevin_dt", 0.001)}


@dataclass(frozen=True)
class EBMConfig:
    # --- geometry and vocabulary
    latent_dim: int = setting(
        640,
        at_most(16384, "the embedding table alone would not fit in memory"),
        "d: token embeddings and splats live on the sphere S^(d-1)",
    )
    vocab_size: int = setting(
        50257,
        at_most(1_000_000, "larger than any tokenizer this trains or loads"),
        "tokens in the vocabulary (set from the tokenizer)",
    )
    vocab_temperature: float = setting(1.0, positive, "T in p_E(w|c) = softmax(-E(e_w; c) / T)")

    # --- splats (von Mises-Fisher attractors)
    n_splats_init: int = setting(
        10000, at_most(10_000_000, "beyond what one machine holds"), "splats at the start when the curriculum is off"
    )
    max_splats: int = setting(150000, at_most(10_000_000, "beyond what one machine holds"), "hard cap on the number of splats")
    splat_term: str = setting(
        "mixture",
        one_of("context", "mixture", "token", "off"),
        "splats retrieved by each context, as attractors that boost the base softmax (context) or as "
        "mixture components in probability space (mixture); as a context-free per-token energy; or off",
    )
    knn_k: int = setting(
        64,
        at_most(4096, "every context would sum more splats than a step can afford"),
        "splats a context retrieves (token term: summed at each token)",
    )
    splat_top_tokens: int = setting(32, positive, "tokens each splat attracts: its nearest, refreshed with the table")
    knn_index: str = setting("flat", one_of("flat", "hnsw"), "FAISS index: flat (exact) or hnsw (approximate)")
    knn_refresh_interval: int = setting(50, positive, "steps between rebuilds of the splat index and top-token table")
    splat_temperature: float = setting(0.1, positive, "tau of the splat energy when the curriculum is off")
    min_kappa: float = setting(1.0, positive, "lowest splat concentration")
    max_kappa: float = setting(50.0, positive, "highest splat concentration")
    init_kappa: float = setting(2.0, positive, "concentration of new splats (broad: see docs/design.md)")
    splat_weight_decay: float = setting(0.0, non_negative, "alpha decay strength at the end of the curriculum")
    splat_weight_decay_start: float = setting(1.0, non_negative, "alpha decay strength at its start")
    splat_decay_age: int = setting(1000, positive, "splat age (steps) at which alpha decay reaches half strength")

    # --- context encoder
    context_encoder: str = setting(
        "transformer", one_of("transformer", "multiscale"), "sphere transformer, or the original multi-scale encoder"
    )
    context_layers: int = setting(
        4, at_most(256, "deeper than any model that trains on one machine"), "blocks of the sphere transformer"
    )
    context_local: int = setting(12, positive, "span of the local heads (multiscale: of the attention block)")
    context_medium: int = setting(64, positive, "span of the medium heads (multiscale: of the medium causal mean)")
    context_global: int = setting(512, positive, "span of the global heads, the history of a window")
    context_heads: int = setting(8, positive, "attention heads (multiscale: of the local block)")
    geo_beta: float = setting(1.0, positive, "initial beta of E_geo = -beta z.g (learned)")

    # --- decoder
    moe_experts: int = setting(4, positive, "experts in the decoder")
    moe_active: int = setting(2, positive, "experts each input is routed to")
    hidden_dim: int = setting(1024, at_most(65536, "the decoder alone would not fit in memory"), "hidden width of each expert")

    # --- objective
    noise_levels: tuple[float, ...] = setting((0.01, 0.05, 0.1, 0.2, 0.5), angles, "score-matching noise: geodesic angles")
    lambda_dsm: float = setting(0.1, non_negative, "weight of the score-matching loss")
    lambda_dec: float = setting(1.0, non_negative, "weight of the decoder's NLL")
    lambda_bal: float = setting(0.01, non_negative, "weight of the experts' load-balancing loss")
    aux_stride: int = setting(
        1, positive, "score matching and the decoder train on every k-th target of a window (the offset turns with the window)"
    )
    lambda_mem: float = setting(0.0, non_negative, "weight of the in-batch memory loss (TRIME): other windows as memory splats")
    mem_kappa: float = setting(40.0, positive, "kernel concentration of that loss's memory (the fitted memory's)")
    mem_weight: float = setting(0.3, open_unit_interval, "mixture weight lambda of that loss's memory")

    # --- Langevin sampling
    langevin_steps: int = setting(150, at_most(100_000, "a token would take hours; 150 mix"), "sampler steps per generated token")
    langevin_dt: float = setting(0.2, positive, "sampler step size")
    langevin_gamma: float = setting(0.2, non_negative, "friction of underdamped Langevin")
    langevin_T: float = setting(1.0, non_negative, "chain temperature per degree of freedom (1: exact; below: sharper basins)")
    langevin_kappa: float = setting(2.0, positive, "basin of each token in the sampler's landscape: kappa / sqrt(d - 1)")
    langevin_knn_refresh: int = setting(10, positive, "sampler steps between neighbour searches")
    eval_flow_steps: int = setting(
        20,
        at_most(100_000, "the evaluation would take hours; 20 is the default", low=0),
        "noise-free steps from g(c) that ppl_decoder decodes",
    )
    eval_flow_dt: float = setting(0.001, positive, "step size of that flow")

    # --- self-organised criticality
    soc_check_interval: int = setting(100, positive, "steps between SOC checks")
    soc_threshold: float = setting(0.8, unit_interval, "uncovered share of recent targets that starts an avalanche")
    soc_buffer_size: int = setting(
        4096, at_most(10_000_000, "beyond what one machine holds"), "recent training targets an SOC check looks at"
    )
    soc_merge_cos: float = setting(0.995, open_unit_interval, "cosine above which two splats merge")
    soc_prune_alpha: float = setting(0.01, non_negative, "alpha below which an old, unused splat is pruned")
    soc_prune_min_age: int = setting(500, non_negative, "steps a splat lives before it can be pruned")
    soc_spawn_max: int = setting(256, positive, "most splats one avalanche spawns")
    coverage_kernel: float = setting(0.5, open_unit_interval, "kernel value at which a splat covers a point")

    # --- curriculum
    curriculum: bool = setting(True, None, "grow splats in phases (capacities, temperatures below)")
    curriculum_epochs: int = setting(5, positive, "epochs over which alpha decay moves from start to end")
    curriculum_capacities: tuple[int, ...] = setting((5000, 30000, 50000), all_positive, "splat capacity per phase")
    curriculum_temperatures: tuple[float, ...] = setting((0.3, 0.2, 0.1), all_positive, "splat tau per phase")
    curriculum_boundaries: tuple[int, ...] = setting((1, 3), None, "epoch (or step) at which each later phase starts")
    curriculum_unit: str = setting("epoch", one_of("epoch", "step"), "clock of the phase boundaries")
    curriculum_growth_fill: float = setting(0.5, open_unit_interval, "share of a phase's new room filled at frequent tokens")

    # --- optimisation
    batch_size: int = setting(32, at_most(65536, "a step would not fit in memory"), "windows per optimiser step")
    seq_length: int = setting(
        0, non_negative, "targets per window: its last seq_length positions (0: every position, as LM trainers do)"
    )
    learning_rate: float = setting(1e-4, positive, "peak learning rate of AdamW")
    weight_decay: float = setting(0.01, non_negative, "AdamW weight decay of encoder and decoder matrices")
    grad_clip: float = setting(1.0, non_negative, "gradient-norm clip (0: off)")
    head_dtype: str = setting("auto", one_of("auto", "float32", "bfloat16"), "dtype of the two training vocabulary heads")
    warmup_steps: int = setting(100, non_negative, "linear learning-rate warm-up steps")
    schedule_steps: int = setting(
        0, non_negative, "steps of the cosine decay (0: the run's budget, epochs or --max-steps or --max-minutes)"
    )
    epochs: int = setting(5, positive, "epochs to train")
    eval_interval: int = setting(500, positive, "steps between validation evaluations")
    eval_first_interval: int = setting(
        10, non_negative, "first steps between early evaluations, doubling up to eval_interval (0: off)"
    )
    checkpoint_minutes: float = setting(
        10.0, non_negative, "minutes between checkpoints (the first after a fifth of it; 0: epoch ends only)"
    )
    eval_tokens: int = setting(8192, at_most(100_000_000, "an evaluation would take hours"), "validation targets per evaluation")
    checkpoint_keep_every: int = setting(5, positive, "keep every N-th epoch checkpoint")
    checkpoint_keep_last: int = setting(2, non_negative, "keep the last N epoch checkpoints")
    seed: int = setting(0, non_negative, "random seed of the model and the data order")

    @property
    def splat_dim(self) -> int:
        """Dimension of the space splats live in: the context term pairs a key with a mean."""
        return 2 * self.latent_dim if self.retrieves_splats else self.latent_dim

    @property
    def retrieves_splats(self) -> bool:
        """Each context retrieves its splats by key: the boost (context) and mixture terms."""
        return self.splat_term in ("context", "mixture")

    def __post_init__(self) -> None:
        for f in fields(self):  # JSON gives lists; tuples keep the config hashable and frozen
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        hints = typing.get_type_hints(EBMConfig)
        for f in fields(self):
            _check_field(f.name, hints[f.name], getattr(self, f.name), f.metadata.get("rule"))
        self._check_together()

    @property
    def targets_per_window(self) -> int:
        """Positions trained and scored in each window of context_global + 1 tokens."""
        return self.seq_length or self.context_global

    def _check_together(self) -> None:
        """The rules that tie fields to each other."""
        if self.min_kappa >= self.max_kappa:
            raise ConfigError(f"min_kappa ({self.min_kappa}) must be below max_kappa ({self.max_kappa})")
        if not self.min_kappa <= self.init_kappa <= self.max_kappa:
            raise ConfigError(f"init_kappa ({self.init_kappa}) must lie in [min_kappa, max_kappa]")
        if self.n_splats_init > self.max_splats:
            raise ConfigError(f"n_splats_init ({self.n_splats_init}) exceeds max_splats ({self.max_splats})")
        if self.moe_active > self.moe_experts:
            raise ConfigError(f"moe_active ({self.moe_active}) exceeds moe_experts ({self.moe_experts})")
        if self.latent_dim % self.context_heads:
            raise ConfigError(f"latent_dim ({self.latent_dim}) must be divisible by context_heads ({self.context_heads})")
        if not self.context_local <= self.context_medium <= self.context_global:
            raise ConfigError("context windows must satisfy context_local <= context_medium <= context_global")
        if self.seq_length > self.context_global:
            raise ConfigError(f"seq_length ({self.seq_length}) exceeds the window's context_global ({self.context_global})")
        if self.targets_per_window % self.aux_stride:
            raise ConfigError(f"aux_stride ({self.aux_stride}) must divide the targets per window ({self.targets_per_window})")
        self._check_curriculum()

    def _check_curriculum(self) -> None:
        n_phases = len(self.curriculum_capacities)
        if len(self.curriculum_temperatures) != n_phases or len(self.curriculum_boundaries) != n_phases - 1:
            raise ConfigError(
                "curriculum needs one capacity and one temperature per phase and one boundary between "
                f"phases; got {n_phases} capacities, {len(self.curriculum_temperatures)} temperatures, "
                f"{len(self.curriculum_boundaries)} boundaries"
            )
        if list(self.curriculum_boundaries) != sorted(set(self.curriculum_boundaries)):
            raise ConfigError(f"curriculum_boundaries must be strictly increasing, got {self.curriculum_boundaries}")
        if any(c > self.max_splats for c in self.curriculum_capacities):
            raise ConfigError(f"curriculum_capacities must lie in (0, max_splats], got {self.curriculum_capacities}")

    @classmethod
    def describe(cls) -> list[tuple[str, str, typing.Any, str]]:
        """(name, type, default, meaning) of every field, in declaration order."""
        hints = typing.get_type_hints(cls)
        return [(f.name, _type_name(hints[f.name]), f.default, f.metadata.get("help", "")) for f in fields(cls)]

    # --- serialisation
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> EBMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys are the fields of EBMConfig")
        return cls(**data)

    @classmethod
    def from_saved(cls, data: dict) -> EBMConfig:
        """The config of a checkpoint: fields added since it was written take the value that
        rebuilds its model, not today's default."""
        return cls.from_dict({**SAVED_BEFORE, **_sampler_settings_of(data)})

    @classmethod
    def from_json(cls, text: str) -> EBMConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: typing.Any) -> EBMConfig:
        return dataclasses.replace(self, **changes)

    def with_overrides(self, assignments: list[str]) -> EBMConfig:
        """Apply `key=value` strings, parsing each value to the field's type."""
        changes = {}
        types = typing.get_type_hints(EBMConfig)
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in types:
                close = difflib.get_close_matches(key, types, n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise ConfigError(f"bad override {item!r}: {hint}use key=value with a config field (ebm-train --list-config)")
            changes[key] = _parse_value(key, types[key], raw.strip())
        return self.replace(**changes)


def _parse_value(key: str, hint: typing.Any, raw: str) -> typing.Any:
    try:
        if hint is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is str:
            return raw
        origin = typing.get_origin(hint)
        if origin is tuple:
            (elem, *_rest) = typing.get_args(hint)
            parts = [p for p in raw.strip("()[] ").split(",") if p.strip()]
            return tuple(elem(p.strip()) for p in parts)
    except ValueError:
        pass
    raise ConfigError(f"cannot parse {key}={raw!r} as {getattr(hint, '__name__', hint)}")


def _type_name(hint: typing.Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"tuple of {typing.get_args(hint)[0].__name__}"
    return hint.__name__


def _is_number(value: typing.Any, hint: typing.Any) -> bool:
    if isinstance(value, bool):
        return False
    if hint is int:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_field(name: str, hint: typing.Any, value: typing.Any, rule: Rule | None) -> None:
    """Type first (a wrong type would make the rule itself fail), then the field's rule."""
    if typing.get_origin(hint) is tuple:
        elem = typing.get_args(hint)[0]
        ok = isinstance(value, tuple) and all(_is_number(v, elem) for v in value)
    elif hint in (int, float):
        ok = _is_number(value, hint)
    else:
        ok = isinstance(value, hint)
    if not ok:
        kind = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(hint)
        raise ConfigError(f"{name} must be {kind or _type_name(hint)}, got {value!r}")
    problem = rule(value) if rule is not None else None
    if problem:
        raise ConfigError(f"{name} {problem}, got {value!r}")


def small_config(**changes: typing.Any) -> EBMConfig:
    """A tiny config for tests and quick experiments on a laptop CPU."""
    base: dict[str, typing.Any] = dict(
        latent_dim=32,
        vocab_size=128,
        n_splats_init=64,
        max_splats=512,
        knn_k=8,
        knn_refresh_interval=10,
        context_local=4,
        context_medium=8,
        context_global=16,
        context_heads=2,
        hidden_dim=64,
        batch_size=16,
        seq_length=16,
        learning_rate=3e-3,
        langevin_steps=20,
        eval_flow_dt=0.01,
        eval_interval=50,
        eval_tokens=1024,
        soc_check_interval=20,
        soc_buffer_size=256,
        soc_prune_min_age=50,
        soc_spawn_max=16,
        curriculum_capacities=(64, 128, 256),
        warmup_steps=10,
    )
    base.update(changes)
    return EBMConfig(**base)
