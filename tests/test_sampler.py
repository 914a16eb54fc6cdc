import pytest
import torch
from conftest import small_model

from ebm import SamplerSettings, TorchBackend, generate
from ebm.langevin import LangevinResult
from ebm.sampler import LATENT_CHAIN, sample_token


@pytest.mark.parametrize(
    "sampler, terms",
    [("langevin", {"total", "token", "distance"}), ("langevin+decoder", {"total", "splat", "geo", "comp"}), ("direct", set())],
)
def test_generate_returns_tokens_and_energy_traces(sampler, terms):
    model = small_model()
    settings = SamplerSettings(7, 0.01, 0.5, 0.5)
    ids, steps = generate(model, [1, 2, 3], 4, settings=settings, top_k=5, seed=3, sampler=sampler)
    assert len(ids) == 4 and all(0 <= i < model.cfg.vocab_size for i in ids)
    assert set(steps[0].energies) == terms and all(e.shape == (8,) for e in steps[0].energies.values())
    again, _ = generate(model, [1, 2, 3], 4, settings=settings, top_k=5, seed=3, sampler=sampler)
    assert again == ids  # deterministic under a seed


def test_each_chain_takes_the_settings_of_its_energy():
    """The landscape's chain takes the config's langevin_*; a chain on the latent energy takes
    LATENT_CHAIN, whose small steps suit a gradient of ~|beta g + u|."""
    model = small_model()
    cfg = model.cfg
    for sampler, steps in (("langevin", cfg.langevin_steps), ("langevin+decoder", LATENT_CHAIN[0])):
        _, tokens = generate(model, [1, 2, 3], 1, top_k=5, sampler=sampler)
        assert tokens[0].energies["total"].shape == (steps + 1,)
    assert SamplerSettings.latent(cfg, 0.5)[1:] == (LATENT_CHAIN[1], LATENT_CHAIN[2], 0.5 / (cfg.latent_dim - 1), 50.0)


def test_langevin_draws_only_the_filtered_candidates():
    model = small_model()
    g, u, h = (x.reshape(1, -1) for x in model.contexts(torch.tensor([[1, 2, 3]]), 1))
    top3 = set(model.energy_logits(g, u, h)[0].topk(3).indices.tolist())
    drawn = {generate(model, [1, 2, 3], 1, sample_temperature=20.0, top_k=3, seed=s)[0][0] for s in range(40)}
    assert drawn <= top3 and len(drawn) > 1


def test_an_unknown_sampler_is_named():
    with pytest.raises(ValueError, match="unknown sampler 'gibbs'; choose one of langevin, langevin"):
        generate(small_model(), [1], 1, sampler="gibbs")


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

    model = small_model(splat_term="context")  # the mixture's chains run in torch on every backend
    settings = SamplerSettings(7, 0.01, 0.5, 0.5)
    alone, _ = generate(model, [1, 2, 3], 6, settings=settings, top_k=5, seed=3, sampler="langevin+decoder")
    other = EndpointChains()
    results = {}

    def run(name, backend):
        results[name] = generate(
            model, [1, 2, 3], 6, settings=settings, top_k=5, seed=3, backend=backend, sampler="langevin+decoder"
        )[0]

    threads = [threading.Thread(target=run, args=a) for a in (("torch", TorchBackend()), ("other", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["torch"] == alone and len(results["other"]) == 6
    assert other.chains == 6 and not hasattr(model, "vulkan")


def test_the_mixtures_chains_run_in_torch_on_a_chain_running_backend():
    """The mixture's splat part needs E_base(z) at every step, which a device chain does not
    compute (docs/design.md, "Splat mixture"): the same text as torch, and no device chain."""
    model = small_model(splat_term="mixture")
    settings = SamplerSettings(7, 0.01, 0.5, 0.5)
    device = EndpointChains()
    on_device, _ = generate(model, [1, 2, 3], 5, settings=settings, top_k=5, seed=3, backend=device, sampler="langevin+decoder")
    in_torch, _ = generate(model, [1, 2, 3], 5, settings=settings, top_k=5, seed=3, sampler="langevin+decoder")
    assert on_device == in_torch and device.chains == 0
