from app.text import escape_text, prompt_notice, text_block


def test_markdown_and_html_in_text_are_shown_verbatim():
    out = escape_text("# Paris **bold** <b>x</b> $y$ [a](b) :smile: _i_")
    for raw in ("# ", "**", "<b>", "$y$", "[a]", ":smile:", "_i_"):
        assert raw not in out, raw
    assert out.startswith("&#35; Paris &#42;&#42;bold&#42;&#42; &lt;b&gt;x&lt;/b&gt;")


def test_newlines_never_end_the_block_and_special_tokens_are_badges():
    block = text_block(("line one\n\nline two", ""), (" <|endoftext|> next", "strong"))
    assert "\n" not in block and block.count("<br>") == 2
    assert "<|endoftext|>" not in block and ">endoftext</span>" in block
    assert block.startswith('<div dir="auto" style="white-space:pre-wrap">') and "<strong> " in block  # leading space kept


def test_a_right_to_left_prompt_cannot_reorder_the_continuation():
    block = text_block(("שלום עולם", ""), (" and then", "strong"))
    assert block.count("<bdi>") == 2 and block.index("</bdi><bdi><strong>") > 0  # each piece isolated


def test_the_prompt_notice_says_what_does_not_condition_the_text():
    assert prompt_notice(0, 128, "<|endoftext|>").startswith("The prompt is empty")
    assert "only its last 128 condition" in prompt_notice(5000, 128, "x")
    assert prompt_notice(100, 128, "x") is None


def test_escaped_text_reads_back_as_the_original():
    """What the browser shows (the HTML unescaped) is the text itself: quotes, ampersands and
    '#' together once showed "world&#x27;s" for "world's"."""
    import html

    text = 'the world\'s "sixth" head & #1 <tag> 50% a*b_c`d$e[f:g~h'
    out = escape_text(text)
    assert html.unescape(out) == text
    assert "&&" not in out
