"""Named starting points for a run: a tokenizer and the config fields that differ from the
defaults. `seed` is the original specification (the defaults: 640-D, 10K to 50K splats, the
GPT-2 vocabulary); `cpu` is sized so that a laptop CPU shows learning within minutes
(docs/benchmarks.md, "Presets"). A run's --config and --set apply on top of its preset."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import EBMConfig


@dataclass(frozen=True)
class Preset:
    name: str
    tokenizer: str
    purpose: str
    config: dict = field(default_factory=dict)

    def model_config(self, vocab_size: int | None = None) -> EBMConfig:
        """The preset's config with a vocabulary: the size given, else its tokenizer's (bpe:N: N)."""
        if vocab_size is None and self.tokenizer.startswith("bpe:"):
            vocab_size = int(self.tokenizer.split(":")[1])
        return EBMConfig(**{**self.config, **({"vocab_size": vocab_size} if vocab_size else {})})


PRESETS = {
    "seed": Preset("seed", "gpt2", "the original specification: 640-D, 10K to 50K splats, GPT-2 vocabulary"),
    "cpu": Preset(
        "cpu",
        "bpe:8192",
        "sized for a CPU: 256-D, a 128-token window, an 8,192-token BPE, 1K to 6K splats",
        {
            "latent_dim": 256,
            "context_heads": 4,
            "hidden_dim": 512,
            "context_global": 128,
            "batch_size": 16,
            "n_splats_init": 1000,
            "knn_k": 16,
            "curriculum_capacities": (1000, 3000, 6000),
            "learning_rate": 1e-2,  # bench/lr_sweep.py: best of 1e-3 .. 4e-2 at 4 minutes
            "warmup_steps": 50,
            # score matching and the decoder on half the targets: 0.47x -> 0.53x the same-size
            # transformer's targets/s, p_E's perplexity at equal steps +1.1% (docs/design-notes.md 17)
            "aux_stride": 2,
        },
    ),
}


def choose_preset(requested: str | None, device: str) -> tuple[Preset, str]:
    """(preset, why it was chosen): the one asked for, else `seed` on CUDA and `cpu` elsewhere."""
    if requested is not None:
        if requested not in PRESETS:
            raise ValueError(f"unknown preset {requested!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[requested], "--preset"
    if device.startswith("cuda"):
        return PRESETS["seed"], "default on a CUDA device"
    return PRESETS["cpu"], f"default without a CUDA device (--device {device}); --preset seed for the full size"
