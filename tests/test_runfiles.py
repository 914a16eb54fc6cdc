import os
import subprocess
import sys
import time

from conftest import ROOT

from runs.runfiles import (
    RECORD_FIELDS,
    RunFiles,
    checkpoints_of,
    list_checkpoints,
    list_runs,
    missing_fields,
    newest_resumable,
    runs_with_checkpoints,
)


def test_paths_of_a_run(tmp_path):
    f = RunFiles.under(tmp_path, "r1")
    assert f.log == tmp_path / "logs" / "ebm" / "r1.jsonl"
    assert (f.run_dir, f.latest, f.status) == (
        tmp_path / "checkpoints" / "r1",
        f.run_dir / "latest.pt",
        f.run_dir / "status.json",
    )
    assert f.epoch_checkpoint(3).name == "ebm_epoch_3.pt" and f.tokenizer.name == "tokenizer.json"


def test_listings_order_newest_first(tmp_path):
    old, new = RunFiles.under(tmp_path, "old"), RunFiles.under(tmp_path, "new")
    for i, f in enumerate((old, new)):
        f.log.parent.mkdir(parents=True, exist_ok=True)
        f.log.write_text("")
        f.run_dir.mkdir(parents=True)
        for path in (f.epoch_checkpoint(1), f.epoch_checkpoint(10), f.latest):
            path.write_bytes(b"x")
        stamp = time.time() - 100 + 50 * i
        for path in (f.log, f.latest, f.run_dir):
            os.utime(path, (stamp, stamp))
    assert list_runs(tmp_path / "logs") == ["new", "old"]
    assert [e for e, _ in list_checkpoints(new.run_dir)] == [1, 10]
    assert [p.name for p in checkpoints_of(new.run_dir)] == ["latest.pt", "ebm_epoch_10.pt", "ebm_epoch_1.pt"]
    assert runs_with_checkpoints(tmp_path / "checkpoints") == ["new", "old"]
    assert newest_resumable(tmp_path / "checkpoints") == "new" and newest_resumable(tmp_path / "none") is None


def test_missing_fields_names_what_a_record_lacks():
    record = {"v": 1, "type": "alert", "t": 0.0, "step": 1, "epoch": 0, "rule": "nan", "message": "m"}
    assert missing_fields(record) == ["severity", "advice"]
    assert missing_fields({"type": "nonsense"}) == ["type"]
    assert set(RECORD_FIELDS) >= {"meta", "batch", "eval", "status"}


def test_light_pages_import_neither_torch_nor_faiss(full_run):
    """The Runs and Curves pages, rendered on a real run, load the run-files contract only."""
    ws, _ = full_run
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        "for name in ('runs', 'curves'):\n"
        "    at = AppTest.from_file(f'app/views/{name}_page.py', default_timeout=60).run()\n"
        "    assert not at.exception, [e.value for e in at.exception]\n"
        "print(sorted(m for m in ('torch', 'faiss', 'numba', 'ebm') if m in sys.modules))\n"
    )
    env = {**os.environ, "EBM_LOG_DIR": str(ws / "logs"), "EBM_CHECKPOINT_DIR": str(ws / "checkpoints")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
