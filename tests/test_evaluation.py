"""Whole-text evaluation: the sliding window scores every token once, with the context the
literature's protocol promises, and the per-word and per-byte figures divide the same total."""

import math

import numpy as np
import pytest
import torch
from conftest import switch_off_context

from ebm.config import small_config
from ebm.model import EBMModel
from trainer.evaluation import per_unit, score_text, sliding_windows, text_units


@pytest.mark.parametrize(("n", "context", "stride"), [(100, 16, 8), (100, 16, 16), (100, 16, 1), (10, 16, 8), (17, 16, 5)])
def test_sliding_windows_score_every_token_once_with_enough_context(n, context, stride):
    scored, context_of = [], {}
    for end, new in sliding_windows(n, context, stride):
        start = max(0, end - context - 1)
        for i in range(end - new, end):
            scored.append(i)
            context_of[i] = i - start  # tokens before it inside its window
    assert sorted(scored) == list(range(1, n))  # token 0 is the end-of-text that starts the text
    assert all(context_of[i] == min(i, context) or context_of[i] >= context - stride for i in scored)
    assert all(context_of[i] == i for i in scored if i <= context)  # the first window: all it can see
    with pytest.raises(ValueError):
        sliding_windows(n, context, context + 1)


def test_a_context_free_model_scores_the_text_as_its_unigram_law():
    """With the context terms off, p_E(w) is one fixed distribution, so the total is a closed
    form: the sum of -log p(w) over every token but the first. The token term keeps the splats
    context-free too."""
    cfg = small_config(splat_term="token")
    model = EBMModel(cfg, token_freq=torch.arange(cfg.vocab_size).float())
    switch_off_context(model)
    with torch.no_grad():
        law = torch.log_softmax(model.vocab_bias(model.vocab_splat_energy()).double(), -1)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, 203)
    result = score_text(model, tokens, stride=5, batch_size=4)
    expected = -law[torch.from_numpy(tokens[1:])].sum().item()
    assert result["tokens"] == 202
    assert result["nll_energy"] * result["tokens"] == pytest.approx(expected, rel=1e-5)


def test_word_level_perplexity_and_bits_per_byte_divide_the_same_total():
    units = text_units("The cat sat <unk> .\nA dog é")
    assert units == {"words": 8, "bytes": len("The cat sat <unk> .\nA dog é".encode()), "unk_words": 1}
    result = {"nll_energy": 2.0, "nll_decoder": 3.0, "tokens": 12}
    out = per_unit(result, units)
    assert out["word_ppl_energy"] == pytest.approx(math.exp(2.0 * 12 / 8))  # = token ppl ** (tokens / words)
    assert out["bits_per_byte_decoder"] == pytest.approx(3.0 * 12 / math.log(2) / units["bytes"])


def test_a_scored_prefix_counts_words_per_document():
    """Documents end with an end-of-text token; joined without a separator, the last word of one
    and the first word of the next would count as one word."""
    from trainer.loading import _documents

    assert _documents([5, 6, 0, 7, 0, 8], eot=0) == [[5, 6], [7], [8]]
    assert _documents([5, 0, 6], eot=None) == [[5, 0, 6]]
    pieces = {5: "end.", 6: "Next", 7: " doc"}
    text = "\n".join("".join(pieces[i] for i in doc) for doc in _documents([5, 0, 6, 7], eot=0))
    assert text_units(text)["words"] == 3  # "end.", "Next", "doc"; joined as one text: "end.Next doc"
