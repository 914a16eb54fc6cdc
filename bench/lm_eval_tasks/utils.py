"""Local data for the lm-eval tasks of this folder (lm-eval's own tasks need the Hugging Face hub):
the built-in corpus's test split, which nothing here trains or tunes on."""

from __future__ import annotations

import random
import re
from pathlib import Path


def _test_documents() -> list[str]:
    from trainer.data import load_corpus

    return load_corpus("builtin").texts("test")


def builtin_rolling(path: str = "", documents: int = 0, **_: object):
    """The test split's documents, each scored from an end-of-text token (lm-eval's document-level
    convention, as its wikitext task), with word and byte counts as ebm-evaluate takes them; the
    first `documents` only if given. With `path` (--metadata '{"path": FILE}'), one document:
    that file, scored exactly as `ebm-evaluate --data FILE --split all` scores it."""
    from datasets import Dataset, DatasetDict

    if path:
        from trainer.data import read_text_file

        texts = [read_text_file(Path(path))]
    else:
        texts = _test_documents()[: documents or None]
    rows = [{"text": t, "words": len(t.split()), "bytes": len(t.encode("utf-8"))} for t in texts]
    return DatasetDict({"test": Dataset.from_list(rows)})


def rolling_results(doc: dict, results: list) -> dict:
    (loglikelihood,) = results
    return {
        "word_perplexity": (loglikelihood, doc["words"]),
        "byte_perplexity": (loglikelihood, doc["bytes"]),
        "bits_per_byte": (loglikelihood, doc["bytes"]),
    }


def builtin_cloze(items: int = 300, choices: int = 4, **_: object):
    """Held-out sentences of 8 to 40 words without their last word, to be completed from that word
    and `choices - 1` last words of other sentences (seeded): chance is 1 / choices."""
    from datasets import Dataset, DatasetDict

    sentences = []
    for doc in _test_documents():
        for s in re.split(r"(?<=[.!?])\s+", doc):
            words = s.split()
            if 8 <= len(words) <= 40 and re.fullmatch(r"[A-Za-z]+[.!?]", words[-1]):
                sentences.append((" ".join(words[:-1]), words[-1][:-1]))
    rng = random.Random(0)
    rng.shuffle(sentences)
    ends = sorted({end for _, end in sentences})
    rows = []
    for context, end in sentences[:items]:
        options = [end] + rng.sample([e for e in ends if e.lower() != end.lower()], choices - 1)
        rng.shuffle(options)
        rows.append({"context": context, "choices": options, "gold": options.index(end)})
    return DatasetDict({"test": Dataset.from_list(rows)})
