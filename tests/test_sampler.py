import torch
from conftest import small_model

from ebm import SamplerSettings, TorchBackend, generate
from ebm.langevin import LangevinResult
from ebm.sampler import sample_token


def test_generate_returns_tokens_and_energy_traces():
    model = small_model()
    ids, steps = generate(model, [1, 2, 3], 4, settings=SamplerSettings(7, 0.01, 0.5, 0.5), top_k=5, seed=3)
    assert len(ids) == 4 and all(0 <= i < model.cfg.vocab_size for i in ids)
    assert steps[0].energies["total"].shape == (8,)
    assert set(steps[0].energies) == {"total", "splat", "geo", "comp"}
    again, _ = generate(model, [1, 2, 3], 4, settings=SamplerSettings(7, 0.01, 0.5, 0.5), top_k=5, seed=3)
    assert again == ids  # deterministic under a seed


def test_sample_token_filters():
    logits = torch.tensor([5.0, 4.0, 1.0, 0.0])
    gen = torch.Generator().manual_seed(0)
    assert {sample_token(logits, 1.0, top_k=2, generator=gen) for _ in range(200)} == {0, 1}
    assert {sample_token(logits, 1.0, top_p=0.5, generator=gen) for _ in range(50)} == {0}
    assert sample_token(logits, 0.0) == 0


class EndpointChains(TorchBackend):
    """A backend that runs whole chains itself (as Vulkan does); here they stay where they start."""

    runs_chains = True

    def __init__(self):
        self.chains = 0

    def langevin(self, model, z0, g, u, h, settings, generator):
        self.chains += 1
        flat = torch.zeros(settings.steps + 1, z0.shape[0])
        return LangevinResult(z0, torch.zeros_like(z0), {"total": flat, "splat": flat, "geo": flat, "comp": flat})


def test_two_callers_sample_on_two_backends_at_once():
    """The backend is an argument, not state of the model: one shared model serves both."""
    import threading

    model = small_model()
    settings = SamplerSettings(7, 0.01, 0.5, 0.5)
    alone, _ = generate(model, [1, 2, 3], 6, settings=settings, top_k=5, seed=3)
    other = EndpointChains()
    results = {}

    def run(name, backend):
        results[name] = generate(model, [1, 2, 3], 6, settings=settings, top_k=5, seed=3, backend=backend)[0]

    threads = [threading.Thread(target=run, args=a) for a in (("torch", TorchBackend()), ("other", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["torch"] == alone and len(results["other"]) == 6
    assert other.chains == 6 and not hasattr(model, "vulkan")
