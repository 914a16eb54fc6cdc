"""Hugging Face `transformers` integration: an `ebm-export` folder loads with
`AutoModelForCausalLM.from_pretrained(folder)` once this module is imported (`import
integrations.hf`), and `AutoTokenizer.from_pretrained(folder)` reads its tokenizer.

`forward(input_ids, labels)` returns log p_E as the logits (an exact softmax over the
vocabulary, so `generate()` greedy, sampling and beam search work unchanged) and the mean
next-token NLL as the loss. The Langevin and constrained samplers stay this project's own API
(`ebm.generate`, `ebm.compose`): they do not factorise left to right, so they do not fit
`generate()`. Loading goes through `runs.export_format.load_export` (safetensors and a digest,
never pickle) rather than transformers' own weight loading.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from ebm import EBMModel
from ebm.config import EBMConfig
from runs.checkpoint import model_from_checkpoint
from runs.export_format import export_contents, load_export, write_export

Tensor = torch.Tensor


class EBMHFConfig(PretrainedConfig):
    model_type = "ebm"

    def __init__(self, ebm_config: dict | None = None, **kwargs):
        self.ebm_config = dict(ebm_config or {})
        cfg = EBMConfig.from_saved(self.ebm_config) if self.ebm_config else EBMConfig()
        # the sizes generate() reads; no key-value cache: each step re-encodes the last window
        sizes = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.latent_dim, "num_hidden_layers": cfg.context_layers}
        sizes |= {"num_attention_heads": cfg.context_heads, "max_position_embeddings": cfg.context_global}
        super().__init__(**(sizes | {"use_cache": False} | kwargs))


class EBMForCausalLM(PreTrainedModel, GenerationMixin):
    """An EBMModel behind the `transformers` causal-LM interface (module docstring)."""

    config_class = EBMHFConfig
    base_model_prefix = "ebm"
    main_input_name = "input_ids"
    _supports_cache_class = False

    def __init__(self, config: EBMHFConfig, model: EBMModel | None = None):
        super().__init__(config)
        self.ebm = model if model is not None else EBMModel(EBMConfig.from_saved(config.ebm_config))
        self.state: dict = {}  # the export's step, run id and tokenizer fields, kept for save_pretrained
        self.tokenizer_json: bytes | None = None

    @property
    def window(self) -> int:
        return self.ebm.cfg.context_global

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None, **_
    ) -> CausalLMOutput:
        """logits[:, t] = log p_E(x_{t+1} | x_{<=t}) over the last `window` positions (B, L', V);
        loss: the mean NLL of labels[:, 1:] (-100 ignored), for inputs within the window. The
        attention mask is not read: batches of equal lengths, no padding."""
        if labels is not None and input_ids.shape[1] > self.window:
            raise ValueError(f"the loss needs inputs of at most {self.window} tokens (the model's window)")
        ids = input_ids[:, -self.window :]
        g, u, h = (x.reshape(-1, self.ebm.cfg.latent_dim) for x in self.ebm.contexts(ids, ids.shape[1]))
        logits = torch.log_softmax(self.ebm.energy_logits(g, u, h), -1).view(*ids.shape, -1)
        loss = None
        if labels is not None:
            flat = logits[:, :-1].reshape(-1, logits.shape[-1])
            loss = torch.nn.functional.cross_entropy(flat, labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids: Tensor, **kwargs) -> dict:
        return {"input_ids": input_ids[:, -self.window :]}  # no cache: each step reads the last window

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> EBMForCausalLM:
        """An export folder (or this class's save_pretrained folder) -> the model, in eval mode."""
        state = load_export(Path(pretrained_model_name_or_path))
        model = cls(EBMHFConfig(ebm_config=state["config"]), model_from_checkpoint(state))
        model.state = {k: v for k, v in state.items() if k != "model"}
        tokenizer = Path(pretrained_model_name_or_path) / "tokenizer.json"
        model.tokenizer_json = tokenizer.read_bytes() if tokenizer.exists() else None
        return model.eval()

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Write the export folder format (runs.export_format), the tokenizer it was loaded with
        beside it. The folder is replaced whole, so one that holds anything but an export is
        refused rather than emptied."""
        folder = Path(save_directory)
        if folder.exists() and any(folder.iterdir()) and not is_export(folder):
            raise FileExistsError(f"{folder} holds files that are not an ebm export; save to a new or empty folder")
        state = {**self.state, "config": self.ebm.cfg.to_dict()}
        tensors, meta = export_contents(state, self.ebm.state_dict())
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = Path(tmp) / "tokenizer.json"
            if self.tokenizer_json is not None:
                tokenizer.write_bytes(self.tokenizer_json)
            write_export(folder, tensors, meta, tokenizer)


def is_export(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") == "ebm"
    except (OSError, ValueError, AttributeError):
        return False


AutoConfig.register("ebm", EBMHFConfig, exist_ok=True)
AutoModelForCausalLM.register(EBMHFConfig, EBMForCausalLM, exist_ok=True)
