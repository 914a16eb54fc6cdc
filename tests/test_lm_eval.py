"""lm-evaluation-harness on a checkpoint (integrations/lm_eval.py, the tasks of bench/lm_eval_tasks):
the rolling task's word perplexity is ebm-evaluate's, loglikelihood is p_E's, and the command
line runs the local tasks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import child_env

pytest.importorskip("lm_eval")

ROOT = Path(__file__).resolve().parents[1]
TASKS = str(ROOT / "bench" / "lm_eval_tasks")


def lm_eval_cli(ws: Path, checkpoint: Path, task: str, *extra: str) -> dict:
    out = ws / f"lm-eval-{task}"
    cmd = [sys.executable, "-m", "integrations.lm_eval", "run", "--model", "ebm", "--model_args", f"checkpoint={checkpoint}"]
    cmd += ["--tasks", task, "--include_path", TASKS, "--device", "cpu", "--output_path", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ws, env=child_env(EBM_CACHE=str(ws / "cache")), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.rglob("results_*.json")
    return json.loads(found.read_text())["results"][task]


def test_rolling_word_perplexity_is_ebm_evaluates(full_run):
    ws, _ = full_run
    text = ws / "scored.txt"
    text.write_text((ws / "corpus.txt").read_text()[:6000].strip() + "\n")
    checkpoint = ws / "checkpoints" / "full"
    cmd = [sys.executable, "-m", "commands", "evaluate", "--checkpoint", str(checkpoint), "--data", str(text)]
    cmd += ["--split", "all", "--samples", "0", "--json"]
    proc = subprocess.run(cmd, env=child_env(EBM_CACHE=str(ws / "cache")), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = json.loads(proc.stdout)["word_ppl_energy"]
    found = lm_eval_cli(ws, checkpoint, "ebm_builtin_rolling", "--metadata", json.dumps({"path": str(text)}))
    assert found["word_perplexity,none"] == pytest.approx(expected, rel=1e-4)


def test_cloze_runs_and_scores_every_item(full_run):
    ws, _ = full_run
    found = lm_eval_cli(ws, ws / "checkpoints" / "full", "ebm_builtin_cloze", "--limit", "12")
    assert 0.0 <= found["acc,none"] <= 1.0 and 0.0 <= found["acc_norm,none"] <= 1.0


class Request:
    def __init__(self, *args):
        self.args = args


def test_loglikelihood_is_p_e_of_the_continuation_and_generation_stops_at_until(full_run):
    from ebm import token_logprobs
    from integrations.lm_eval import EBMEvalModel

    ws, _ = full_run
    lm = EBMEvalModel(str(ws / "checkpoints" / "full"))
    ((logp, greedy),) = lm.loglikelihood([Request("The river flows through the", " city")])
    ctx, cont = lm._split("The river flows through the", " city")
    window = torch.tensor([(ctx + cont)[-(lm.context + 1) :]])
    assert logp == pytest.approx(float(token_logprobs(lm.model, window, len(cont)).sum()), rel=1e-5)
    assert isinstance(greedy, bool) and logp < 0
    (rolled,) = lm.loglikelihood_rolling([Request("The river flows through the city")])
    assert rolled < 0
    (text,) = lm.generate_until([Request("The river", {"until": ["."], "max_gen_toks": 12})])
    assert "." not in text and len(lm._encode(text)) <= 12
