"""The export folder: a model-only copy of a checkpoint, for sharing and for loading without pickle.

    <out>/model.safetensors   every tensor of the model, the neighbour table included
    <out>/config.json         the config, step, run id, tokenizer id, and one digest of the tensors and these fields
    <out>/tokenizer.json      the run's tokenizer
    <out>/tokenizer_config.json  what transformers' AutoTokenizer needs beside it

No optimiser, scheduler, SOC buffer or RNG state: an export scores, samples and is diagnosed
exactly like its checkpoint, but does not resume training. `load_checkpoint` reads such a
folder wherever it reads a .pt file (ebm-evaluate, ebm-diagnose, the dashboard).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .digest import content_digest
from .files import atomic_folder, atomic_write, atomic_write_json
from .runfiles import EXPORT_WEIGHTS, SCHEMA_VERSION, CheckpointError, run_id_problem

EXTRA = ("neighbours._extra_state", "splats._extra_state")
# what transformers' AutoTokenizer needs beside tokenizer.json (a `tokenizers` file)
TOKENIZER_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast"}


def export_contents(state: dict, model_state: dict) -> tuple[dict, dict]:
    """(tensors, config.json's fields) of a loaded checkpoint and its model's current state_dict."""
    tensors = {k: v.contiguous() for k, v in model_state.items() if k not in EXTRA}
    nbr = model_state["neighbours._extra_state"]
    tensors["neighbours.vocab_nbr"] = nbr["vocab_nbr"].contiguous()
    tensors["neighbours.splat_top"] = nbr["splat_top"].contiguous()
    if nbr["index_snapshot"] is not None:
        tensors["neighbours.index_snapshot"] = nbr["index_snapshot"].contiguous()
    meta = {
        "schema_version": SCHEMA_VERSION,
        **{k: state.get(k) for k in ("config", "step", "epoch", "run_id", "tokenizer", "tokenizer_fingerprint")},
        "nbr_step": nbr["nbr_step"],
        "nbr_version": nbr["nbr_version"],
        "store_version": model_state["splats._extra_state"]["version"],
        "model_type": "ebm",  # transformers' AutoConfig reads it (integrations.hf)
        "architectures": ["EBMForCausalLM"],
    }
    meta["content_digest"] = export_digest(tensors, meta)
    return tensors, meta


def write_export(out: Path, tensors: dict, meta: dict, tokenizer: Path) -> Path:
    """Write the export folder atomically (a reader sees the old folder or the whole new one)."""
    from safetensors.torch import save

    def fill(folder: Path) -> None:
        atomic_write(folder / EXPORT_WEIGHTS, lambda fh: fh.write(save(tensors, metadata={"ebm": json.dumps(meta)})))
        atomic_write_json(folder / "config.json", meta)
        if tokenizer.exists():
            shutil.copyfile(tokenizer, folder / "tokenizer.json")
            atomic_write_json(folder / "tokenizer_config.json", TOKENIZER_CONFIG)

    atomic_folder(out, fill)
    return out


def export_digest(tensors: dict, meta: dict) -> str:
    """One digest of the tensors and of every field of config.json but the digest itself."""
    return content_digest({"tensors": tensors, "meta": {k: v for k, v in meta.items() if k != "content_digest"}})


def load_export(folder: Path) -> dict:
    """An export folder as a checkpoint-shaped state (model, config, step, ...); no optimiser."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(folder / EXPORT_WEIGHTS))
        meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, SafetensorError) as err:
        raise CheckpointError(f"{folder} is not a readable export ({type(err).__name__}: {str(err)[:120]})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{folder}/config.json is not an export's config (a JSON {type(meta).__name__}, not an object)")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(
            f"{folder} has schema version {meta.get('schema_version')!r}, this ebm-lab reads version {SCHEMA_VERSION} (a number)"
        )
    if export_digest(tensors, meta) != meta.get("content_digest"):
        if content_digest(tensors) == meta.get("content_digest"):
            raise CheckpointError(
                f"{folder} was written by an older ebm-lab whose digest left config.json unchecked: "
                "export its checkpoint again with ebm-export"
            )
        raise CheckpointError(f"{folder} is damaged: its tensors or config.json do not match the digest in config.json")
    if meta.get("run_id") is not None and (problem := run_id_problem(str(meta["run_id"]))):
        raise CheckpointError(f"{folder}: config.json's {problem}")
    missing = [k for k in ("nbr_step", "nbr_version", "store_version", "config", "step") if k not in meta]
    if missing or "neighbours.vocab_nbr" not in tensors:
        raise CheckpointError(f"{folder} lacks {', '.join(missing) or 'neighbours.vocab_nbr'}: export its checkpoint again")
    model: dict[str, Any] = {k: v for k, v in tensors.items() if not k.startswith("neighbours.")}
    model["neighbours._extra_state"] = {
        "nbr_step": meta["nbr_step"],
        "nbr_version": meta["nbr_version"],
        "vocab_nbr": tensors["neighbours.vocab_nbr"],
        **({"splat_top": tensors["neighbours.splat_top"]} if "neighbours.splat_top" in tensors else {}),
        "index_snapshot": tensors.get("neighbours.index_snapshot"),
    }
    model["splats._extra_state"] = {"version": meta["store_version"]}
    return {"model": model, **{k: v for k, v in meta.items() if k != "content_digest"}}
