"""The Runs page's numbers: progress against the run's whole budget, elapsed time, ETA and a
tokens/s that one slow batch does not swing."""

import json
import time

import pytest

from app.runlog import RunLog
from app.settings import Folders
from app.summary import run_summary
from runs.status import write_status


def write_run(tmp_path, state):
    log = tmp_path / "logs" / "ebm" / "r.jsonl"
    log.parent.mkdir(parents=True)
    start = time.time() - 60
    lines = [{"v": 1, "type": "meta", "t": start, "step": 0, "epoch": 0, "budget": {"planned_steps": 1000, "max_minutes": 1.0}}]
    for step in range(1, 11):  # 10 of 1000 steps, but 30 of the 60 budgeted seconds
        rate = 10.0 if step == 10 else 100.0  # the last batch shared its time with an evaluation
        lines.append(
            {
                "v": 1,
                "type": "batch",
                "t": start + 6 * step,
                "step": step,
                "epoch": 0,
                "train_seconds": 3.0 * step,
                "tokens_per_s": rate,
            }
        )
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    write_status(tmp_path / "checkpoints" / "r" / "status.json", state, total_steps=1000)
    run_log = RunLog(log)
    run_log.refresh()
    return run_summary(run_log, Folders(tmp_path / "logs", tmp_path / "checkpoints", 5.0))


def test_a_time_budget_drives_progress_and_eta(tmp_path):
    row = write_run(tmp_path, "running")
    assert row["progress"] == pytest.approx(0.5)  # 30 s of 60, not 10 steps of 1000
    assert row["elapsed_s"] == pytest.approx(60, abs=5) and row["eta_s"] == pytest.approx(60, abs=5)
    assert row["tokens_per_s"] == 100.0 and row["heartbeat_age_s"] is not None


def test_a_finished_run_is_done_with_no_heartbeat_or_eta(tmp_path):
    row = write_run(tmp_path, "finished")
    assert row["progress"] == 1.0 and row["eta_s"] is None and row["heartbeat_age_s"] is None


def test_the_empty_checkpoint_state_says_when_the_next_one_is_due(tmp_path):
    from app.resources import no_checkpoint_message

    where = Folders(tmp_path / "logs", tmp_path / "checkpoints", 5.0)
    assert "No run is training now" in no_checkpoint_message(where)
    write_run(tmp_path, "running")
    status = tmp_path / "checkpoints" / "r" / "status.json"
    write_status(status, "running", next_checkpoint_t=time.time() + 150)
    assert "Run r's next one is due in 2 min" in no_checkpoint_message(where)  # 150 s rounds to 2 min
    write_status(status, "finished", next_checkpoint_t=time.time() + 150)
    assert "No run is training now" in no_checkpoint_message(where)  # a finished run announces nothing


def test_every_column_of_the_runs_table_has_its_help(tmp_path):
    import pandas as pd

    from app.summary import COLUMN_HELP, table_view

    shown = table_view(pd.DataFrame([write_run(tmp_path, "running")]))
    assert list(shown.columns) == list(COLUMN_HELP) and shown["elapsed"].iloc[0] == "60 s"
    assert list(shown.columns)[:6] == ["name", "run", "state", "progress", "elapsed", "ETA"]


def test_the_table_says_which_step_the_perplexity_is_from_and_names_only_named_runs(tmp_path):
    import pandas as pd

    from app.summary import table_view

    log = tmp_path / "logs" / "ebm" / "r.jsonl"
    write_run(tmp_path, "stopped")
    with log.open("a") as f:
        f.write(json.dumps({"v": 1, "type": "eval", "t": time.time(), "step": 5, "epoch": 0, "ppl_energy": 80.0}) + "\n")
    run_log = RunLog(log)
    run_log.refresh()
    row = run_summary(run_log, Folders(tmp_path / "logs", tmp_path / "checkpoints", 5.0))
    assert row["step"] == 10 and row["eval_step"] == 5 and row["ppl_energy"] == 80.0
    shown = table_view(pd.DataFrame([row, row | {"name": "baseline", "run": "r2"}]))
    assert list(shown["name"]) == ["", "baseline"]  # an unnamed run's id is not shown twice


def test_the_main_columns_are_a_few_of_the_tables_in_its_order():
    from app.summary import COLUMN_HELP, MAIN_COLUMNS

    assert len(MAIN_COLUMNS) <= 12 and set(MAIN_COLUMNS) <= set(COLUMN_HELP)
    assert list(MAIN_COLUMNS) == [c for c in COLUMN_HELP if c in MAIN_COLUMNS]  # the table's order, fewer


def test_a_run_filter_matches_names_tags_and_config_values():
    from app.summary import run_matches

    cfg = {"learning_rate": 0.003, "splat_term": "mixture"}
    assert run_matches("", "r1", "", [], cfg)
    assert run_matches("sweep", "r1", "lr sweep", [], cfg) and run_matches("BASELINE", "r1", "", ["baseline"], cfg)
    assert run_matches("splat_term=mixture learning_rate=0.003", "r1", "", [], cfg)
    assert not run_matches("splat_term=context", "r1", "", [], cfg) and not run_matches("sweep other", "r1", "sweep", [], cfg)


def test_tags_are_saved_trimmed_and_shown_in_the_table(tmp_path):
    from app.summary import read_notes, run_tags, save_notes

    row = write_run(tmp_path, "running")
    where = Folders(tmp_path / "logs", tmp_path / "checkpoints", 5.0)
    save_notes(where, "r", "", "", [" baseline", "seed-0 ", ""])
    assert run_tags(read_notes(where, "r")) == ["baseline", "seed-0"]
    run_log = RunLog(tmp_path / "logs" / "ebm" / "r.jsonl")
    run_log.refresh()
    assert row["tags"] == "" and run_summary(run_log, where)["tags"] == "baseline, seed-0"
