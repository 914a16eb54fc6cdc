"""Model and user text shown as text: Streamlit renders st.markdown, so a prompt like "# Paris"
would become a heading and GPT-2's leading spaces around "**" would show literal asterisks.
Text goes out HTML-escaped inside one HTML block instead, with newlines as <br> (a blank line
would end the block and let Markdown back in) and special tokens such as <|endoftext|> as
badges. Pass the result to st.markdown(..., unsafe_allow_html=True)."""

from __future__ import annotations

import html
import re

SPECIAL_TOKEN = re.compile(r"<\|[^|<>\s]{1,40}\|>")
# Characters Markdown or Streamlit's math and emoji syntax would still act on inside text.
ENTITIES = {"*": "&#42;", "_": "&#95;", "`": "&#96;", "#": "&#35;", "$": "&#36;", "[": "&#91;", ":": "&#58;", "~": "&#126;"}
BADGE = (
    '<span style="background:#e8eaf0;border-radius:4px;padding:0 4px;font-size:0.8em;font-family:monospace;color:#444">{}</span>'
)


def escape_text(text: str) -> str:
    """One piece of plain text as inline HTML, special tokens as badges."""
    out, pos = [], 0
    for match in SPECIAL_TOKEN.finditer(text):
        out += [_escape(text[pos : match.start()]), BADGE.format(html.escape(match.group(0)[2:-2]))]
        pos = match.end()
    out.append(_escape(text[pos:]))
    return "".join(out)


def _escape(text: str) -> str:
    # Character by character: escaping first and then replacing "#" would break the entity
    # html.escape made for an apostrophe ("&#x27;" became "&&#35;x27;", shown literally).
    escaped = "".join(ENTITIES.get(c) or html.escape(c, quote=True) for c in text)
    return escaped.replace("\r\n", "\n").replace("\n", "<br>")


def text_block(*parts: tuple[str, str]) -> str:
    """(text, style) pieces as one block that keeps spaces; style "" or "strong" or "em". Each
    piece is bidi-isolated (<bdi>), so a right-to-left prompt cannot reorder the continuation."""
    inner = "".join(f"<bdi><{s}>{escape_text(t)}</{s}></bdi>" if s else f"<bdi>{escape_text(t)}</bdi>" for t, s in parts)
    return f'<div dir="auto" style="white-space:pre-wrap">{inner}</div>'


def text_table(columns: list[str], rows: list[list[str]]) -> str:
    """A table whose cells are plain text (escaped as in text_block), one HTML block."""
    head = "".join(f"<th>{escape_text(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td style="white-space:pre-wrap">{escape_text(str(c))}</td>' for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain_markdown(text: str) -> str:
    """Text for a widget that renders Markdown (st.warning, st.error): every Markdown character
    escaped, so a message such as "![x](https://...)" shows as written and loads nothing."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def prompt_notice(n_tokens: int, window: int, start_token: str) -> str | None:
    """What a prompt leaves out of the conditioning, for a notice above the text; None when all
    of it conditions the continuation."""
    if n_tokens == 0:
        return f"The prompt is empty: the text starts from the token {start_token!r} alone, an unconditioned sample."
    if n_tokens > window:
        return (
            f"The prompt has {n_tokens:,} tokens; only its last {window:,} condition the continuation "
            "(the model's context window), so earlier text has no effect."
        )
    return None
