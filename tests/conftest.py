import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ebm import EBMModel, small_config
from runs.logs import LogReader

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# ../shared/data beside the checkout; EBM_SHARED_DATA names another copy (a GPU machine's, say)
SHARED_DATA = Path(os.environ.get("EBM_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def child_env(**extra: str) -> dict:
    """The environment of a child process: this one's, with the repository first on PYTHONPATH (an
    existing PYTHONPATH, where packages were installed with --target, stays behind it)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def small_model(**changes):
    """A tiny model (ebm.small_config) with a fixed seed."""
    from ebm import EBMModel, small_config

    torch.manual_seed(0)
    return EBMModel(small_config(**changes))


def switch_off_context(model) -> None:
    """Context terms off, for either encoder: u(c) = 0 (all encoder weights zero) and beta = 0."""
    with torch.no_grad():
        for p in model.context.parameters():
            p.zero_()
        model.log_beta.fill_(-1e4)


def random_windows(cfg, batch: int = 3, gen: torch.Generator | None = None) -> torch.Tensor:
    """(batch, context_global + 1) random token windows, as training reads them."""
    L = cfg.context_global + 1
    return torch.randint(cfg.vocab_size, (batch, L), generator=gen)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def wikitext_valid() -> Path:
    path = SHARED_DATA / "wikitext-2" / "wiki.valid.tokens"
    if not path.exists():
        pytest.skip(f"shared corpus not found at {path}")
    return path


# ----------------------------------------------------------------------------- a real run, shared by
# the trainer end-to-end tests and the dashboard tests: the real CLI on 500 lines of WikiText-2.

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    latent_dim=32,
    context_heads=2,
    hidden_dim=64,
    context_local=8,
    context_medium=16,
    context_global=32,
    knn_k=8,
    n_splats_init=64,
    curriculum_capacities=[64, 128, 256],
    curriculum_boundaries=[1, 2],
    eval_interval=40,
    eval_tokens=1024,
    soc_check_interval=10,
    soc_threshold=0.0,
    soc_spawn_max=8,
    learning_rate=3e-3,
    langevin_steps=10,
    warmup_steps=10,
    seq_length=32,
    batch_size=16,
    epochs=3,
    knn_refresh_interval=10,
)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, request):
    path = SHARED_DATA / "wikitext-2" / "wiki.valid.tokens"
    if not path.exists():
        pytest.skip(f"shared corpus not found at {path}")
    ws = tmp_path_factory.mktemp("train")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:500]
    (ws / "corpus.txt").write_text("".join(lines))
    (ws / "tiny.json").write_text(json.dumps(TINY))
    return ws


def train(ws: Path, *extra: str, timeout: int = 300, procs: int = 1) -> subprocess.CompletedProcess:
    """The real CLI on the tiny corpus and config; a resumed run brings its own data, tokenizer and
    config. procs > 1: as the README runs it, under torchrun on this machine."""
    launcher = None
    if procs > 1:
        launcher = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", str(procs)]
    cmd, env = train_command(ws, *extra, launcher=launcher)
    return subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=timeout)


def train_command(ws: Path, *extra: str, launcher: list[str] | None = None) -> tuple[list[str], dict]:
    """train()'s command line and environment; `launcher` (a torchrun command) runs -m commands train."""
    setup = (
        []
        if "--resume" in extra
        else ["--data", str(ws / "corpus.txt"), "--tokenizer", "bpe:300", "--config", str(ws / "tiny.json")]
    )
    module = [*(launcher or [sys.executable]), "-m", "commands", "train"]
    env = child_env(EBM_CACHE=str(ws / "cache"))
    return [*module, *setup, "--out", str(ws), "--quiet", *extra], env


def records(ws: Path, run_id: str) -> list[dict]:
    reader = LogReader(ws / "logs" / "ebm" / f"{run_id}.jsonl")
    reader.read_new()
    assert reader.corrupt_lines == 0
    return reader.records


@pytest.fixture(scope="session")
def full_run(workspace):
    proc = train(workspace, "--run-id", "full", "--epochs", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return workspace, records(workspace, "full")


def evaluate_json(ws: Path, device: str) -> dict:
    """ebm-evaluate --json of the shared full run's latest checkpoint on 512 valid tokens."""
    latest = ws / "checkpoints" / "full" / "latest.pt"
    cmd = [sys.executable, "-m", "commands", "evaluate", "--checkpoint", str(latest), "--data", str(ws / "corpus.txt")]
    cmd += ["--split", "valid", "--max-tokens", "512", "--samples", "1", "--json", "--device", device]
    env = child_env(EBM_CACHE=str(ws / "cache"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def generate_on(ws: Path, monkeypatch, device_prefix: str):
    """The Generate page, 3 tokens sampled by Langevin on the first device option that starts with
    the prefix."""
    from streamlit.testing.v1 import AppTest

    from app.settings import CHECKPOINT_ENV, LOG_ENV

    monkeypatch.setenv(LOG_ENV, str(ws / "logs"))
    monkeypatch.setenv(CHECKPOINT_ENV, str(ws / "checkpoints"))
    at = AppTest.from_file(str(ROOT / "app" / "views" / "generate_page.py"), default_timeout=120).run()
    box = at.selectbox(key="gen_device")
    box.set_value(next(o for o in box.options if o.startswith(device_prefix)))
    at.number_input(key="gen_n").set_value(3)
    at.selectbox(key="gen_sampler").set_value("Langevin")
    at.button[0].click().run()
    assert not at.exception and not at.error
    return at


def trained_looking_model(seed: int = 0, **changes) -> EBMModel:
    """A small model whose splats, query correction and prior are far from their start values."""
    cfg = small_config(**({"head_dtype": "float32", "splat_top_tokens": 12, "knn_k": 6, "splat_term": "context"} | changes))
    model = EBMModel(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        s = model.splats
        s.log_alpha.copy_(3 + torch.randn(s.n, generator=gen))
        s.tau.fill_(1.0)
        s.kappa_raw.copy_(torch.randn(s.n, generator=gen))
        model.query.weight.copy_(0.3 * torch.randn(model.query.weight.shape, generator=gen))
        model.log_prior.copy_(torch.randn(cfg.vocab_size, generator=gen))
        model.log_strength.fill_(1.5)
        s.key_raw.copy_(torch.randn(s.key_raw.shape, generator=gen))  # keys away from the means
    return model
