from app.text import escape_text, text_block


def test_markdown_and_html_in_text_are_shown_verbatim():
    out = escape_text("# Paris **bold** <b>x</b> $y$ [a](b) :smile: _i_")
    for raw in ("# ", "**", "<b>", "$y$", "[a]", ":smile:", "_i_"):
        assert raw not in out, raw
    assert out.startswith("&#35; Paris &#42;&#42;bold&#42;&#42; &lt;b&gt;x&lt;/b&gt;")


def test_newlines_never_end_the_block_and_special_tokens_are_badges():
    block = text_block(("line one\n\nline two", ""), (" <|endoftext|> next", "strong"))
    assert "\n" not in block and block.count("<br>") == 2
    assert "<|endoftext|>" not in block and ">endoftext</span>" in block
    assert block.startswith('<div style="white-space:pre-wrap">') and "<strong> " in block  # leading space kept
