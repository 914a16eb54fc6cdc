"""The usual WikiText detokeniser: undoes the tokenised form (' @-@ ', spaces before
punctuation...) so GPT-2 BPE sees natural text. `<unk>` tokens remain."""

from __future__ import annotations

import re

_RULES = [
    (" @-@ ", "-"),
    (" @,@ ", ","),
    (" @.@ ", "."),
    (" : ", ": "),
    (" ; ", "; "),
    (" . ", ". "),
    (" ! ", "! "),
    (" ? ", "? "),
    (" , ", ", "),
    ("= = = =", "===="),
    ("= = =", "==="),
    ("= =", "=="),
    (" 's", "'s"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 're", "'re"),
    (" 've", "'ve"),
    (" 'll", "'ll"),
]


def detokenize(text: str) -> str:
    for old, new in _RULES:
        text = text.replace(old, new)
    text = re.sub(r"\( ([^)]*) \)", r"(\1)", text)
    text = re.sub(r"\[ ([^\]]*) \]", r"[\1]", text)
    text = re.sub(r'" ([^"]*) "', r'"\1"', text)
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    return re.sub(r" ([.,;:!?])", r"\1", text)
