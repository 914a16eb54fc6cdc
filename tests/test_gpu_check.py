"""bench/gpu_check.py: its dry run takes the GPU check's code paths on the CPU, so the first run on
a GPU machine, minutes long and rare, does not fail on a typo."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import child_env

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["environment", "cuda_tests", "throughput", "sampling", "training", "vulkan"]


def test_dry_run_writes_every_stage_to_the_table_and_the_json(tmp_path):
    cmd = [sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]
    assert list(stages) == STAGES
    assert all(stages[name]["status"] == "ok" for name in STAGES[:-1]), {k: v.get("error") for k, v in stages.items()}
    vulkan_required = os.environ.get("EBM_REQUIRE_VULKAN") == "1"
    assert stages["vulkan"]["status"] in (("ok",) if vulkan_required else ("ok", "skipped"))
    for preset in ("cpu", "seed"):
        measured = stages["throughput"][preset]
        assert measured["targets_per_s"] > 0 and measured["flops_per_step"] > 1e9 and 0 < measured["mfu"] < 1
        assert all(math.isfinite(s) and s > 0 for s in measured["split"].values()), measured["split"]
        assert stages["sampling"][preset]["langevin_tokens_per_s"] > 0
    trained = stages["training"]
    assert trained["steps"] == 3 and 1 < trained["valid_ppl_energy"] < 60_000
    table = (tmp_path / "gpu_check.md").read_text()
    assert "### Training throughput" in table and "| seed | 2 x 512 |" in table and "dry run" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the real check would run")
def test_without_a_gpu_the_real_check_says_how_to_dry_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--out", str(tmp_path)], cwd=ROOT, env=child_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--dry-run" in proc.stderr
    assert not (tmp_path / "gpu_check.json").exists()


def test_the_gpu_machine_scripts_parse():
    for script in ("gpu_check.sh", "gpu_prepare.sh", "gpu_build_kp.sh"):
        proc = subprocess.run(["bash", "-n", str(ROOT / "bench" / script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
