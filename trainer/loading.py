"""A run read back for use: its model and tokenizer from a checkpoint or an export, and the text
that a command scores with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runs.checkpoint import load_checkpoint, model_from_checkpoint

from .data import DataError, default_cache_dir, load_corpus, read_text_file, tokenize_split
from .evaluation import text_units
from .tokenizer import TokenizerError, load_tokenizer
from .wikitext import detokenize as detokenize_text


def load_run(path: str | Path):
    """A checkpoint with its model and the run's saved tokenizer: (state, model, tokenizer)."""
    path = Path(path)
    state = load_checkpoint(path)
    model = model_from_checkpoint(state)
    tok_file = (path if path.is_dir() else path.parent) / "tokenizer.json"
    if not tok_file.exists():
        raise TokenizerError(f"{tok_file} is missing: the run's tokenizer is needed to read and write text")
    tokenizer = load_tokenizer(str(tok_file))
    tokenizer.adopt_checkpoint(state, tok_file)
    return state, model, tokenizer


def text_to_score(data: str, split: str, detokenize: bool, tokenizer, max_tokens: int = 0) -> tuple[np.ndarray, dict]:
    """The token ids that ebm-evaluate scores, the first an end-of-text token where the tokenizer
    has one (so the text's first token has a context, as every later document's does), and the
    words and bytes of the original text: the file as given (WikiText's tokenised form before
    --detokenize) or the split's documents. Shared with bench/ppl.py, so baselines score the same."""
    if split == "all" or detokenize:
        file = Path(data)
        if not file.is_file():
            raise DataError("--detokenize and --split all need --data to be one text file")
        original = read_text_file(file)
        tokens = np.asarray(tokenizer.encode(detokenize_text(original) if detokenize else original), dtype=np.int64)
    else:
        corpus = load_corpus(data)
        original = "\n".join(corpus.texts(split))
        tokens = np.asarray(tokenize_split(corpus, split, tokenizer, default_cache_dir(), progress=False), dtype=np.int64)
    eot = tokenizer.tokenizer.token_to_id("<|endoftext|>")
    if eot is not None:
        tokens = np.concatenate([[eot], tokens]).astype(np.int64)
    if max_tokens:  # a prefix: words and bytes of its scored documents, joined by newlines as above
        tokens = tokens[: max_tokens + 1]
        original = "\n".join(tokenizer.decode(doc) for doc in _documents(tokens[1:].tolist(), eot))
    return tokens, text_units(original)


def _documents(ids: list[int], eot: int | None) -> list[list[int]]:
    """Token ids split at end-of-text tokens: decoding them joined would run the last word of
    one document into the first of the next and miscount the words."""
    docs: list[list[int]] = [[]]
    for i in ids:
        if i == eot:
            docs.append([])
        else:
            docs[-1].append(i)
    return docs
