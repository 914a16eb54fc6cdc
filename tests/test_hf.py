"""An export folder as a Hugging Face model: AutoModelForCausalLM and AutoTokenizer load it, its
loss is the exact NLL that ebm-evaluate's scoring gives, generate() works, and save_pretrained
round-trips without touching a folder it does not own."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

import integrations.hf  # noqa: E402,F401  (registers model_type "ebm")
from commands.export_command import export_checkpoint  # noqa: E402
from ebm.scoring import token_logprobs  # noqa: E402
from runs.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def exported(full_run, tmp_path_factory):
    ws, _ = full_run
    latest = ws / "checkpoints" / "full" / "latest.pt"
    return latest, export_checkpoint(latest, tmp_path_factory.mktemp("hf") / "export")


def test_automodel_loss_is_the_exact_nll_of_scoring(exported):
    latest, folder = exported
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    own = model_from_checkpoint(load_checkpoint(latest)).eval()
    tokens = torch.randint(0, own.cfg.vocab_size, (2, own.cfg.context_global), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = model(tokens, labels=tokens).loss
        expected = -token_logprobs(own, tokens, tokens.shape[1] - 1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_autotokenizer_reads_the_runs_tokenizer(exported):
    from trainer.tokenizer import load_tokenizer

    _, folder = exported
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    own = load_tokenizer(str(folder / "tokenizer.json"))
    text = "The river ran past the old city."
    assert hf_tok(text)["input_ids"] == own.encode(text)


def test_generate_greedy_sampling_and_beam_search(exported):
    _, folder = exported
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    prompt = torch.tensor([[5, 17, 42, 7]])
    greedy = model.generate(prompt, max_new_tokens=6, do_sample=False)
    with torch.no_grad():
        first = model(prompt).logits[0, -1].argmax().item()
    assert greedy.shape == (1, 10) and greedy[0, 4].item() == first
    sampled = model.generate(prompt, max_new_tokens=6, do_sample=True, temperature=0.8, top_k=20)
    beams = model.generate(prompt, max_new_tokens=4, num_beams=3, do_sample=False)
    assert sampled.shape == (1, 10) and beams.shape == (1, 8)
    inputs = transformers.AutoTokenizer.from_pretrained(folder)("The river", return_tensors="pt")  # as the README does
    assert model.generate(**inputs, max_new_tokens=3).shape[1] == inputs["input_ids"].shape[1] + 3


def test_save_pretrained_round_trips_and_refuses_a_folder_it_does_not_own(exported, tmp_path):
    _, folder = exported
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    model.save_pretrained(tmp_path / "again")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "again")
    tokens = torch.tensor([[3, 9, 27, 81, 5]])
    with torch.no_grad():
        torch.testing.assert_close(again(tokens).logits, model(tokens).logits)
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an ebm export"):
        model.save_pretrained(mine)
    assert (mine / "notes.txt").read_text() == "keep me"
