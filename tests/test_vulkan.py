"""The Vulkan kernels against the torch reference (forward and gradients, float32), Langevin
statistics on one vMF splat, and `ebm-train --device vulkan` against `--device cpu`.

They need a Vulkan device (Mesa's lavapipe is enough: scripts/vulkan-setup.sh). Without one they
skip, except where EBM_REQUIRE_VULKAN=1 (CI), where a missing device is a failure."""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from conftest import child_env, evaluate_json, generate_on, records, train

from ebm import EBMModel, SamplerSettings, VulkanBackend, sample, small_config, token_logprobs
from ebm.energy import splat_energy as reference_energy
from ebm.energy import splat_log_kernels
from ebm.geometry import normalize, project, random_points
from ebm.langevin import langevin_step
from ebm.vmf import kappa_for_mean_cosine, mean_resultant_length

RTOL, ATOL = 1e-5, 2e-5  # float32 sums over D = 640 in a different order


@pytest.fixture(scope="module")
def dev():
    from ebm.vulkan import VulkanError, get_device

    try:
        return get_device("vulkan")
    except VulkanError as err:
        if os.environ.get("EBM_REQUIRE_VULKAN") == "1":
            pytest.fail(f"EBM_REQUIRE_VULKAN=1 but {err}")
        pytest.skip(str(err))


def splat_case(n, k_splats, d, k, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = random_points(n, d, gen).requires_grad_()
    mu = random_points(k_splats, d, gen).requires_grad_()
    log_alpha = (0.3 * torch.randn(k_splats, generator=gen)).requires_grad_()
    kappa = (1 + 20 * torch.rand(k_splats, generator=gen)).requires_grad_()
    idx = torch.stack([torch.randperm(k_splats, generator=gen)[:k] for _ in range(n)])
    upstream = torch.randn(n, generator=gen)
    return z, mu, log_alpha, kappa, idx, upstream


@pytest.mark.parametrize(
    "n,k_splats,d,k",
    [(1, 1, 3, 1), (37, 101, 640, 7), (130, 65, 17, 64), (200, 1000, 640, 32), (40, 1000, 640, 64), (3, 80, 1100, 64)],
)  # the last: k * d over the 65,535 loop iterations llvmpipe runs per invocation, as one invocation per point had
def test_splat_energy_and_all_gradients_match_torch(dev, n, k_splats, d, k):
    from ebm.vulkan.splat import splat_energy

    z, mu, log_alpha, kappa, idx, up = splat_case(n, k_splats, d, k)
    tau = 0.3
    ref = reference_energy(splat_log_kernels(z, mu, log_alpha, kappa, tau, idx), tau)
    grads_ref = torch.autograd.grad((ref * up).sum(), [z, mu, log_alpha, kappa])
    out = splat_energy(dev, z, mu, log_alpha, kappa, tau, idx)
    grads = torch.autograd.grad((out * up).sum(), [z, mu, log_alpha, kappa])
    torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)
    for name, a, b in zip(("z", "mu", "log_alpha", "kappa"), grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m, name=name: f"d/d{name}: {m}")


@pytest.fixture(params=["tiled", "plain"])
def row_kernel(dev, request):
    """Both row-product kernels (ebm.vulkan.dots) on this device, whichever it would choose."""
    chosen, dev.tiled = dev.tiled, request.param == "tiled"
    yield dev
    dev.tiled = chosen


@pytest.mark.parametrize("n,k_splats,d,k", [(1, 1, 5, 1), (65, 1001, 640, 10), (129, 300, 33, 64), (64, 10000, 640, 64)])
def test_topk_matches_exact_search(row_kernel, n, k_splats, d, k):
    from ebm.vulkan.topk import topk_inner_product

    gen = torch.Generator().manual_seed(1)
    q, mu = random_points(n, d, gen), random_points(k_splats, d, gen)
    ids, scores = topk_inner_product(row_kernel, q, mu, k)
    ref = (q @ mu.T).topk(min(k, k_splats))
    assert torch.equal(ids, ref.indices)
    torch.testing.assert_close(scores, ref.values, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("contexts", [5, 37])  # under one tile, and over two with a ragged edge
def test_vocab_energies_match_and_chunk_over_contexts(row_kernel, monkeypatch, contexts):
    import ebm.vulkan.vocab as vocab

    gen = torch.Generator().manual_seed(2)
    emb, splat_vocab = random_points(1001, 640, gen), torch.randn(1001, generator=gen)
    ctx = torch.randn(contexts, 640, generator=gen)
    expected = splat_vocab - ctx @ emb.T
    torch.testing.assert_close(vocab.vocab_energies(row_kernel, emb, splat_vocab, ctx), expected, rtol=RTOL, atol=1e-4)
    monkeypatch.setattr(vocab, "MAX_BUFFER_BYTES", 2 * 4 * 1001)  # two contexts per dispatch
    torch.testing.assert_close(vocab.vocab_energies(row_kernel, emb, splat_vocab, ctx), expected, rtol=RTOL, atol=1e-4)


@pytest.mark.parametrize("n,d", [(1, 3), (67, 640)])
def test_noise_free_langevin_step_matches_torch(dev, n, d):
    from ebm.vulkan.chain import langevin_step as vulkan_step

    gen = torch.Generator().manual_seed(3)
    z = random_points(n, d, gen)
    v = 0.3 * project(z, torch.randn(n, d, generator=gen))
    grad = 5 * torch.randn(n, d, generator=gen)
    z_ref, v_ref = langevin_step(z, v, grad, 0.05, 1.5, 0.0)
    z_vk, v_vk = vulkan_step(dev, z, v, grad, 0.05, 1.5)
    torch.testing.assert_close(z_vk, z_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(v_vk, v_ref, rtol=RTOL, atol=ATOL)


def test_device_sampler_matches_bessel_ratio_on_one_vmf_splat(dev):
    from ebm.vulkan.chain import ChainContext, DeviceChain, SplatField, langevin_sample

    d, chains, temperature = 640, 500, 1.0
    kappa = kappa_for_mean_cosine(d, 0.6)
    gen = torch.Generator().manual_seed(4)
    mu = random_points(1, d, gen)
    zeros = torch.zeros(chains, d)
    # E = -tau log(exp(kappa (mu.z - 1) / tau)) = -kappa mu.z + const: a vMF(mu, kappa / T) target
    field = SplatField(mu, torch.zeros(1), torch.tensor([kappa]), 0.5, 1)
    chain = DeviceChain(1200, 0.005, 2.0, temperature, 7)
    run = langevin_sample(dev, random_points(chains, d, gen), ChainContext(zeros, 0.0, zeros), field, chain, gen)
    cos = run.z @ mu[0]
    assert abs(cos.mean().item() - mean_resultant_length(d, kappa)) < 0.006, cos.mean().item()
    torch.testing.assert_close(run.z.norm(dim=-1), torch.ones(chains), rtol=0, atol=1e-5)
    assert run.energies["total"].shape == (1201, chains) and run.energies["total"][-1].mean() < run.energies["total"][0].mean()


def test_a_chain_builds_its_pipelines_once_and_samples_as_before(dev):
    from ebm.vulkan.chain import ChainContext, DeviceChain, SplatField, langevin_sample

    gen = torch.Generator().manual_seed(3)
    g = random_points(4, 64, gen)
    case = dict(
        z0=g.clone(),
        context=ChainContext(g, 1.0, 0.1 * torch.randn(4, 64, generator=gen)),
        splats=SplatField(random_points(300, 64, gen), torch.zeros(300), torch.full((300,), 20.0), 1.0, 8),
        chain=DeviceChain(60, 0.05, 0.5, 0.01, 4),
    )
    runs = {}
    for reuse in (False, True):
        dev.reuse, before = reuse, dev.pipelines_built
        result = langevin_sample(dev, **case, generator=torch.Generator().manual_seed(9))  # the start velocity
        runs[reuse] = (result, dev.pipelines_built - before)
    dev.reuse = True
    # langevin_step, row_dots, topk_select, splat_energy, splat_grad: once each, not per step
    assert runs[True][1] == 5 and runs[False][1] == 1 + 7 * 2 + 61 * 2
    for key in ("z", "v"):
        assert torch.equal(getattr(runs[True][0], key), getattr(runs[False][0], key))
    assert torch.equal(runs[True][0].energies["total"], runs[False][0].energies["total"])


def test_langevin_chain_moves_only_its_inputs_and_traces(dev):
    from ebm.vulkan.chain import ChainContext, DeviceChain, SplatField, langevin_sample

    n, d, splats, steps = 3, 64, 300, 20
    gen = torch.Generator().manual_seed(5)
    g = random_points(n, d, gen)
    field = SplatField(random_points(splats, d, gen), torch.zeros(splats), torch.full((splats,), 20.0), 1.0, 8)
    case = dict(
        z0=g.clone(),
        context=ChainContext(g, 1.0, 0.1 * torch.randn(n, d, generator=gen)),
        splats=field,
        chain=DeviceChain(steps, 0.05, 0.5, 0.01, 4),
    )
    up, down = dev.bytes_up, dev.bytes_down
    langevin_sample(dev, **case)
    # Up: z, v, beta g, u (n, d) and the store (splats x (d + 2)); down: z, v and three energy
    # traces. The search scores, weights and gradients never leave the device.
    assert dev.bytes_up - up == 4 * (4 * n * d + splats * (d + 2))
    assert dev.bytes_down - down == 4 * (2 * n * d + 3 * (steps + 1) * n)


def test_model_sampling_and_scoring_on_vulkan_match_cpu(dev):
    cfg = small_config()
    model = EBMModel(cfg, token_freq=torch.rand(cfg.vocab_size))
    gen = torch.Generator().manual_seed(5)
    g = normalize(torch.randn(6, cfg.latent_dim, generator=gen))
    u = 0.1 * torch.randn(6, cfg.latent_dim, generator=gen)
    z0 = normalize(g + 0.05 * torch.randn(6, cfg.latent_dim, generator=gen))
    settings = SamplerSettings(40, cfg.eval_flow_dt, cfg.langevin_gamma, 0.0)  # noise-free: same chain on both
    tokens = torch.randint(cfg.vocab_size, (3, cfg.context_global + cfg.seq_length + 1), generator=gen)
    with torch.no_grad():
        ref, ref_lp = sample(model, z0, g, u, settings), token_logprobs(model, tokens)
        vulkan = VulkanBackend(dev)
        out, lp = sample(model, z0, g, u, settings, backend=vulkan), token_logprobs(model, tokens, backend=vulkan)
    torch.testing.assert_close(out.z, ref.z, rtol=1e-4, atol=1e-4)
    for term in ("total", "splat", "geo", "comp"):
        torch.testing.assert_close(out.energies[term], ref.energies[term], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(lp, ref_lp, rtol=1e-4, atol=1e-4)


def test_training_on_vulkan_matches_cpu(dev, workspace):
    for device in ("cpu", "vulkan"):
        proc = train(workspace, "--run-id", f"on-{device}", "--max-steps", "30", "--device", device)
        assert proc.returncode == 0, proc.stderr[-2000:]
    cpu, vk = (records(workspace, f"on-{d}") for d in ("cpu", "vulkan"))
    assert vk[0]["device"].startswith("vulkan:0 (")  # the physical device is logged
    a = [r["loss"] for r in cpu if r["type"] == "batch"]
    b = [r["loss"] for r in vk if r["type"] == "batch"]
    assert len(a) == len(b) == 30
    for step, (x, y) in enumerate(zip(a, b), start=1):
        assert abs(x - y) < 1e-3 * abs(x), (step, x, y)
    ev = [[r["ppl_energy"] for r in recs if r["type"] == "eval"] for recs in (cpu, vk)]
    assert ev[0] and ev[0] == pytest.approx(ev[1], rel=1e-3)


def test_a_missing_driver_is_a_one_line_error(workspace):
    env = child_env(VK_ICD_FILENAMES="/nonexistent.json", VK_DRIVER_FILES="/nonexistent.json")
    cmd = [
        sys.executable,
        "-m",
        "commands",
        "train",
        "--device",
        "vulkan",
        "--max-steps",
        "1",
        "--data",
        str(workspace / "corpus.txt"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=workspace)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    kompute_installed = importlib.util.find_spec("kp") is not None
    said = "no Vulkan device found" if kompute_installed else "Kompute (kp) is not installed"
    assert said in proc.stderr and "mesa-vulkan-drivers" in proc.stderr


def test_a_device_index_past_the_last_is_a_one_line_error(dev, workspace):
    proc = train(workspace, "--device", "vulkan:7", "--max-steps", "1")
    assert proc.returncode == 2 and "vulkan:7 does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_evaluate_and_dashboard_generate_on_vulkan(dev, full_run, monkeypatch):
    ws, _ = full_run
    scores = {device: evaluate_json(ws, device) for device in ("cpu", "vulkan")}
    assert scores["vulkan"]["device"].startswith("vulkan:0")
    assert scores["vulkan"]["ppl_energy"] == pytest.approx(scores["cpu"]["ppl_energy"], rel=1e-4)
    at = generate_on(ws, monkeypatch, "vulkan:")
    assert len(at.session_state["generation"]["tokens"]) == 3 and len(at.session_state["langevin_paths"]) == 3
