"""--compile: the encoder through torch.compile in place, with the same keys and the same
contexts as eager, and a one-line refusal where it cannot work."""

import shutil

import pytest
import torch
from conftest import small_model

from trainer.compiled import C_COMPILERS, compile_encoder, compile_problem


def test_compiled_encoder_keeps_its_keys_and_its_contexts(gen):
    model = small_model(context_encoder="transformer")
    keys = list(model.state_dict())
    inputs = torch.randint(model.cfg.vocab_size, (2, model.cfg.context_global), generator=gen)
    eager = model.contexts(inputs, last=4)
    compiled = compile_encoder(model.context)
    assert compiled is model.context.backbone
    assert list(model.state_dict()) == keys  # checkpoints load with or without --compile
    again = model.contexts(inputs, last=4)
    for name in ("g", "u", "h"):
        torch.testing.assert_close(getattr(again, name), getattr(eager, name), rtol=1e-4, atol=1e-5)


def test_compile_is_refused_in_one_line_where_it_cannot_run(monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    for device in ("cpu", "vulkan"):  # with vulkan the encoder runs in torch on the CPU
        problem = compile_problem(device)
        assert problem is not None and "no-such-compiler-here" in problem and "\n" not in problem


@pytest.mark.skipif(not any(shutil.which(cc) for cc in C_COMPILERS), reason="no C compiler")
def test_compile_problem_is_none_with_a_compiler(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    assert compile_problem("cpu") is None
