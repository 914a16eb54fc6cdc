"""EBMConfig: the one configuration of a model and its training run.

Defaults follow DESIGN.md section 13; departures are documented in docs/design-notes.md.
The config is frozen, validated on construction, and travels as JSON inside every
checkpoint and at the head of every log, so a checkpoint rebuilds its model alone.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, fields

SCHEMA_VERSION = 1


class ConfigError(ValueError):
    """A config value is out of range or inconsistent; the message says what to change."""


@dataclass(frozen=True)
class EBMConfig:
    # --- geometry and vocabulary
    latent_dim: int = 640  # d: the sphere is S^(d-1)
    vocab_size: int = 50257  # GPT-2 BPE
    vocab_temperature: float = 1.0  # T_vocab in p_E(w|c) = softmax(-E(e_w; c) / T_vocab)

    # --- splats (von Mises-Fisher attractors)
    n_splats_init: int = 10000
    max_splats: int = 150000
    knn_k: int = 64
    knn_index: str = "flat"  # "flat" (exact inner product) or "hnsw" (approximate)
    knn_refresh_interval: int = 50  # steps between rebuilding the vocabulary's neighbour table
    splat_temperature: float = 0.1  # tau
    min_kappa: float = 1.0
    max_kappa: float = 50.0
    init_kappa: float = 2.0  # new splats start broad; see docs/design-notes.md
    splat_weight_decay: float = 0.0  # alpha decay strength at the end of the curriculum
    splat_weight_decay_start: float = 1.0  # ... and at its start
    splat_decay_age: int = 1000  # age (steps) at which the decay reaches half strength

    # --- context encoder
    context_local: int = 12
    context_medium: int = 64
    context_global: int = 512
    context_heads: int = 8
    geo_beta: float = 1.0  # initial beta of E_geo; learned (log-parametrised)

    # --- decoder
    moe_experts: int = 4
    moe_active: int = 2
    hidden_dim: int = 1024

    # --- objective
    noise_levels: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
    lambda_dsm: float = 0.1
    lambda_dec: float = 1.0
    lambda_bal: float = 0.01

    # --- Langevin sampling
    langevin_steps: int = 200
    langevin_dt: float = 0.001
    langevin_gamma: float = 0.1
    langevin_T: float = 1.0
    langevin_knn_refresh: int = 10  # sampler steps between neighbour searches
    eval_flow_steps: int = 20  # noise-free steps from g(c) for ppl_decoder

    # --- self-organised criticality
    soc_check_interval: int = 100
    soc_threshold: float = 0.8
    soc_buffer_size: int = 4096
    soc_merge_cos: float = 0.995
    soc_prune_alpha: float = 0.01
    soc_prune_min_age: int = 500
    soc_spawn_max: int = 256
    coverage_kernel: float = 0.5  # a point is covered if some splat's kernel k_i(z) >= this

    # --- curriculum
    curriculum: bool = True
    curriculum_epochs: int = 5
    curriculum_capacities: tuple[int, ...] = (5000, 30000, 50000)
    curriculum_temperatures: tuple[float, ...] = (0.3, 0.2, 0.1)
    curriculum_boundaries: tuple[int, ...] = (1, 3)  # epoch (or step) at which phase 2, 3 start
    curriculum_unit: str = "epoch"  # "epoch" or "step"
    curriculum_growth_fill: float = 0.5  # share of new capacity filled from frequent tokens; SOC spawns the rest

    # --- optimisation
    batch_size: int = 32
    seq_length: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    head_dtype: str = "auto"  # training's two vocabulary matmuls: "auto", "float32" or "bfloat16" (see ebm.ops)
    warmup_steps: int = 100
    epochs: int = 5
    eval_interval: int = 500
    eval_tokens: int = 8192
    checkpoint_keep_every: int = 5
    checkpoint_keep_last: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):  # JSON gives lists; tuples keep the config hashable and frozen
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        positive_ints = [
            "latent_dim",
            "vocab_size",
            "n_splats_init",
            "max_splats",
            "knn_k",
            "knn_refresh_interval",
            "context_local",
            "context_medium",
            "context_global",
            "context_heads",
            "moe_experts",
            "moe_active",
            "hidden_dim",
            "langevin_steps",
            "langevin_knn_refresh",
            "soc_check_interval",
            "soc_buffer_size",
            "soc_spawn_max",
            "batch_size",
            "seq_length",
            "epochs",
            "eval_interval",
            "eval_tokens",
            "checkpoint_keep_every",
            "splat_decay_age",
            "curriculum_epochs",
        ]
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        positive_floats = [
            "vocab_temperature",
            "splat_temperature",
            "min_kappa",
            "max_kappa",
            "init_kappa",
            "geo_beta",
            "langevin_dt",
            "learning_rate",
        ]
        for name in positive_floats:
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        non_negative = [
            "lambda_dsm",
            "lambda_dec",
            "lambda_bal",
            "langevin_gamma",
            "langevin_T",
            "weight_decay",
            "grad_clip",
            "splat_weight_decay",
            "splat_weight_decay_start",
            "soc_prune_alpha",
            "warmup_steps",
            "eval_flow_steps",
            "checkpoint_keep_last",
            "soc_prune_min_age",
            "seed",
        ]
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
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
        if not self.noise_levels or any(s <= 0 or s > 3.14 for s in self.noise_levels):
            raise ConfigError(f"noise_levels must be non-empty angles in (0, pi], got {self.noise_levels}")
        if not 0 <= self.soc_threshold <= 1:
            raise ConfigError(f"soc_threshold must lie in [0, 1], got {self.soc_threshold}")
        if not 0 < self.soc_merge_cos <= 1:
            raise ConfigError(f"soc_merge_cos must lie in (0, 1], got {self.soc_merge_cos}")
        if not 0 < self.curriculum_growth_fill <= 1:
            raise ConfigError(f"curriculum_growth_fill must lie in (0, 1], got {self.curriculum_growth_fill}")
        if not 0 < self.coverage_kernel <= 1:
            raise ConfigError(f"coverage_kernel must lie in (0, 1], got {self.coverage_kernel}")
        if self.head_dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"head_dtype must be 'auto', 'float32' or 'bfloat16', got {self.head_dtype!r}")
        if self.knn_index not in ("flat", "hnsw"):
            raise ConfigError(f"knn_index must be 'flat' or 'hnsw', got {self.knn_index!r}")
        if self.curriculum_unit not in ("epoch", "step"):
            raise ConfigError(f"curriculum_unit must be 'epoch' or 'step', got {self.curriculum_unit!r}")
        n_phases = len(self.curriculum_capacities)
        if len(self.curriculum_temperatures) != n_phases or len(self.curriculum_boundaries) != n_phases - 1:
            raise ConfigError(
                "curriculum needs one capacity and one temperature per phase and one boundary between "
                f"phases; got {n_phases} capacities, {len(self.curriculum_temperatures)} temperatures, "
                f"{len(self.curriculum_boundaries)} boundaries"
            )
        if list(self.curriculum_boundaries) != sorted(set(self.curriculum_boundaries)):
            raise ConfigError(f"curriculum_boundaries must be strictly increasing, got {self.curriculum_boundaries}")
        if any(c <= 0 or c > self.max_splats for c in self.curriculum_capacities):
            raise ConfigError(f"curriculum_capacities must lie in (0, max_splats], got {self.curriculum_capacities}")
        if any(t <= 0 for t in self.curriculum_temperatures):
            raise ConfigError(f"curriculum_temperatures must be > 0, got {self.curriculum_temperatures}")

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
                raise ConfigError(f"bad override {item!r}: use key=value with a field of EBMConfig")
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


def small_config(**changes: typing.Any) -> EBMConfig:
    """A tiny config for tests and quick experiments on a laptop CPU."""
    base = dict(
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
        langevin_dt=0.01,
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
