"""Every dashboard page under Streamlit's AppTest, against the logs and checkpoints of a real
trainer run (the session fixture `full_run`), plus the bad inputs a user meets."""

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from app.curves import PANELS
from app.projection import compute, load_array
from app.settings import CHECKPOINT_ENV, LOG_ENV

VIEWS = Path(__file__).resolve().parents[1] / "app" / "views"
PAGES = ("runs", "curves", "splat_map", "generate", "diagnose")


def page(name: str, ws: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv(LOG_ENV, str(ws / "logs"))
    monkeypatch.setenv(CHECKPOINT_ENV, str(ws / "checkpoints"))
    at = AppTest.from_file(str(VIEWS / f"{name}_page.py"), default_timeout=120)
    return at.run()


def texts(at: AppTest) -> str:
    parts = [
        e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "title") for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


@pytest.fixture
def copy_of_run(full_run, tmp_path) -> Path:
    """A private copy of the run's files that a test may damage."""
    ws, _ = full_run
    for name in ("logs", "checkpoints"):
        shutil.copytree(ws / name, tmp_path / name, ignore=shutil.ignore_patterns("maps"))
    return tmp_path


def test_runs_page_lists_the_run_with_state_metrics_and_samples(full_run, monkeypatch):
    ws, recs = full_run
    at = page("runs", ws, monkeypatch)
    assert not at.exception
    table = at.dataframe[0].value
    row = table[table["run"] == "full"].iloc[0]
    last_eval = [r for r in recs if r["type"] in ("eval", "epoch")][-1]
    assert row["state"] == "finished" and row["step"] == max(r["step"] for r in recs if r["type"] == "batch")
    assert row["ppl_energy"] == pytest.approx(last_eval["ppl_energy"])
    assert "refreshes every" in texts(at) and "→" in texts(at)  # status line and a logged sample
    n_evals = len({r["step"] for r in recs if r["type"] == "sample"})
    prompt = at.selectbox(key="sample-prompt-full")
    table = next(m.value for m in at.markdown if "<table>" in m.value)
    assert len(prompt.options) == 2 and table.count("<tr>") == 1 + n_evals  # one prompt followed at every evaluation


def test_curves_page_draws_every_panel(full_run, monkeypatch):
    ws, _ = full_run
    at = page("curves", ws, monkeypatch)
    assert not at.exception
    assert charts(at) == len(PANELS) and "energy trend: falling" in texts(at)
    folded = [e.label for e in at.expander if "flat or empty" in e.label]
    assert not any("Gradient norm" in f for f in folded)  # the gradient norm moves every step
    at.radio(key="curve_smooth").set_value("mean").run()
    at.radio(key="curve_x").set_value("hours since start").run()
    assert not at.exception and charts(at) == len(PANELS)


def test_changing_the_x_unit_keeps_the_stretch_of_training_not_the_numbers(full_run, monkeypatch):
    ws, _ = full_run
    at = page("curves", ws, monkeypatch)
    at.number_input(key="curve_x_from").set_value(10).run()
    at.number_input(key="curve_x_to").set_value(20).run()
    at.radio(key="curve_x").set_value("hours since start").run()
    lo, hi = at.number_input(key="curve_x_from").value, at.number_input(key="curve_x_to").value
    assert not at.exception and 0 <= lo < hi < 1  # a test run's steps 10 to 20 are seconds, not 10 to 20 hours
    assert charts(at) == len(PANELS) and "no data yet" not in str([c.proto for c in at.get("plotly_chart")])
    at.radio(key="curve_x").set_value("step").run()
    assert at.number_input(key="curve_x_from").value == pytest.approx(10, abs=0.5)
    assert at.number_input(key="curve_x_to").value == pytest.approx(20, abs=0.5)


def test_two_seeds_of_one_config_show_as_one_group_with_a_band(copy_of_run, monkeypatch):
    logs = copy_of_run / "logs" / "ebm"
    lines = []
    for line in (logs / "full.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "meta":
            record["config"]["seed"], record["run_id"] = 1, "full-seed1"
        if record["type"] == "batch":
            record["nll"] += 0.5  # another seed, another curve
        lines.append(json.dumps(record))
    (logs / "full-seed1.jsonl").write_text("\n".join(lines) + "\n")
    at = page("curves", copy_of_run, monkeypatch)
    at.multiselect(key="curve_runs").set_value(["full", "full-seed1"]).run()
    at.checkbox(key="curve_group").check().run()
    assert not at.exception and "groups: full-seed1, full" in texts(at)  # the newest run first
    loss = next(c for c in at.get("plotly_chart") if "Loss components" in c.proto.spec)
    assert "nll (max)" in loss.proto.spec and "full-seed1 +1 (mean, band: min to max) energy trend" in texts(at)
    differences = at.dataframe[0].value  # the config table says which group each run is drawn in
    assert list(differences.loc["(group)"]) == ["group 1", "group 1"] and list(differences.loc["seed"]) == ["1", "0"]


def test_curves_filter_runs_by_tag(copy_of_run, monkeypatch):
    from app.settings import Folders
    from app.summary import save_notes

    save_notes(Folders(copy_of_run / "logs", copy_of_run / "checkpoints", 5.0), "full", "", "", ["baseline"])
    at = page("curves", copy_of_run, monkeypatch)
    at.text_input(key="curve_filter").set_value("baseline").run()
    assert not at.exception and at.multiselect(key="curve_runs").options == ["full"]
    at.text_input(key="curve_filter").set_value("nothing-like-this").run()
    assert not at.exception and "No run matches the filter." in texts(at)


def test_splat_map_shows_pca_at_once_then_nearest_tokens_and_cached_umap(copy_of_run, monkeypatch):
    ws = copy_of_run
    at = page("splat_map", ws, monkeypatch)
    assert not at.exception and charts(at) == 1
    latest = ws / "checkpoints" / "full" / "latest.pt"
    n = torch.load(latest, weights_only=True)["model"]["splats.mu_raw"].shape[0]
    assert f"all {n:,} splats drawn · PCA 2-D" in texts(at)  # UMAP was asked for; PCA shows meanwhile
    deadline = time.time() + 120  # the page started the background job; wait for its cache file
    while load_array(latest, "umap2") is None and time.time() < deadline:
        time.sleep(1)
    at.run()
    assert not at.exception and f"all {n:,} splats drawn · UMAP 2-D" in texts(at)
    assert load_array(latest, "nearest").shape == (n, 5)
    at.text_input(key="map_words").set_value("the, of").run()
    at.radio(key="map_dims").set_value(3).run()
    assert not at.exception and charts(at) == 1
    at.radio(key="map_dims").set_value(2).run()
    at.text_input(key="map_search").set_value("the").run()
    found = at.dataframe[-1].value
    assert not at.exception and len(found) == 10 and list(found["cosine"]) == sorted(found["cosine"], reverse=True)
    spec = at.get("plotly_chart")[0].proto.spec
    assert '"name":"found"' in spec and '"title":{"text":"UMAP 1"}' in spec


def test_generate_page_streams_tokens_and_plots_energy(full_run, monkeypatch):
    ws, _ = full_run
    at = page("generate", ws, monkeypatch)
    assert not at.exception
    at.number_input(key="gen_n").set_value(3)
    at.number_input(key="gen_steps").set_value(5)
    at.selectbox(key="gen_sampler").set_value("Langevin")
    at.button[0].click().run()
    assert not at.exception
    # energy at each token's end, the inspected token's trajectory, and its basin: nearest splat and token
    assert charts(at) == 3 and "The history of the city</bdi><bdi><strong>" in texts(at)  # prompt, then the text in bold
    assert len(at.session_state["generation"]["tokens"]) == 3
    energies = at.session_state["generation"]["energies"]
    assert set(energies["term"]) == {"total", "token", "distance"} and energies["step"].max() == 5
    assert at.session_state["langevin_path"]["points"].shape[0] == 6  # start + 5 steps
    basins = at.session_state["generation"]["basins"]
    assert len(basins) == 3 * 6 and basins["cos to splat"].between(-1.0001, 1.0001).all()
    assert len(at.dataframe) == 1
    at.selectbox(key="gen_sampler").set_value("p_E directly")
    at.button[0].click().run()
    assert not at.exception and len(at.session_state["generation"]["tokens"]) == 3
    assert at.session_state["generation"]["energies"].empty and "no Langevin run" in texts(at)


def test_diagnose_page_shows_the_cli_report(full_run, monkeypatch):
    ws, _ = full_run
    at = page("diagnose", ws, monkeypatch)
    assert not at.exception
    assert "Diagnosis of full" in texts(at) and "Recommendations" in texts(at)
    assert charts(at) == 4


@pytest.mark.parametrize("name", PAGES)
def test_empty_folders_give_a_message_not_an_error(name, tmp_path, monkeypatch):
    at = page(name, tmp_path, monkeypatch)
    assert not at.exception and not at.error
    assert "No runs" in texts(at) or "No checkpoints" in texts(at)


def test_corrupt_and_truncated_log_lines_are_skipped_and_reported(copy_of_run, monkeypatch):
    log = copy_of_run / "logs" / "ebm" / "full.jsonl"
    with open(log, "a") as fh:
        fh.write("{not json}\n")
        fh.write('{"v": 1, "type": "batch", "step": 9')  # a half-written last line
    at = page("runs", copy_of_run, monkeypatch)
    assert not at.exception
    assert "1 unreadable log line(s) skipped" in texts(at)
    assert page("curves", copy_of_run, monkeypatch).exception == []


def test_log_lines_missing_fields_and_a_resume_are_read_without_errors(copy_of_run, monkeypatch):
    log = copy_of_run / "logs" / "ebm" / "full.jsonl"
    with open(log, "a") as fh:
        fh.write('{"v": 1, "type": "batch", "step": 400}\n')  # no metrics, no time
        fh.write('{"v": 1, "type": "eval", "t": 1.0, "epoch": 2, "step": 401, "ppl_energy": null}\n')
        fh.write('{"v": 1, "type": "batch", "loss": 1.0}\n')  # no step: counted as unreadable
        fh.write('{"v": 1, "type": "resume", "t": 2.0, "epoch": 2, "step": 300, "from_checkpoint": "latest.pt"}\n')
    for name in ("runs", "curves"):
        at = page(name, copy_of_run, monkeypatch)
        assert not at.exception, (name, at.exception)
    assert "1 unreadable log line(s) skipped" in texts(page("runs", copy_of_run, monkeypatch))


@pytest.mark.parametrize("name", ["splat_map", "generate", "diagnose"])
def test_corrupt_checkpoint_is_a_message_and_other_files_still_work(name, copy_of_run, monkeypatch):
    run_dir = copy_of_run / "checkpoints" / "full"
    good = (run_dir / "latest.pt").read_bytes()
    (run_dir / "latest.pt").write_bytes(good[: len(good) // 3])
    at = page(name, copy_of_run, monkeypatch)
    assert not at.exception
    assert any("Cannot read latest.pt" in e.value and "corrupt or truncated" in e.value for e in at.error)
    at.selectbox(key="checkpoint").set_value("ebm_epoch_2.pt").run()
    assert not at.exception and not at.error


def test_older_checkpoint_schema_is_named(copy_of_run, monkeypatch):
    path = copy_of_run / "checkpoints" / "full" / "latest.pt"
    state = torch.load(path, weights_only=True)
    state["schema_version"] = 0
    torch.save(state, path)
    at = page("diagnose", copy_of_run, monkeypatch)
    assert not at.exception and any("schema version 0" in e.value for e in at.error)


def test_main_page_navigation_runs(full_run, monkeypatch):
    ws, _ = full_run
    monkeypatch.setenv(LOG_ENV, str(ws / "logs"))
    monkeypatch.setenv(CHECKPOINT_ENV, str(ws / "checkpoints"))
    at = AppTest.from_file(str(VIEWS.parent / "main.py"), default_timeout=120).run()
    assert not at.exception and at.title[0].value == "Runs"
    at.switch_page(str(VIEWS / "diagnose_page.py")).run()
    assert not at.exception and at.title[0].value == "Diagnose"


def test_projection_cache_is_reused(copy_of_run):
    latest = copy_of_run / "checkpoints" / "full" / "latest.pt"
    compute(latest, None)
    first = load_array(latest, "nearest")
    stamp = (latest.parent / "maps").stat().st_mtime_ns
    compute(latest, None)  # already cached: nothing is rewritten
    assert (latest.parent / "maps").stat().st_mtime_ns == stamp and (load_array(latest, "nearest") == first).all()


@pytest.mark.parametrize("name", ["generate", "diagnose", "splat_map"])
def test_pages_open_an_export_folder(name, copy_of_run, monkeypatch):
    from commands.export_command import export_checkpoint

    run_dir = copy_of_run / "checkpoints" / "full"
    export_checkpoint(run_dir / "latest.pt", run_dir / "export")
    at = page(name, copy_of_run, monkeypatch)
    at.selectbox(key="checkpoint").set_value("export").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])


def test_markdown_looking_text_is_shown_as_text(copy_of_run, monkeypatch):
    at = page("generate", copy_of_run, monkeypatch)
    at.text_area(key="gen_prompt").set_value("# Paris **was** $5$")
    at.number_input(key="gen_n").set_value(3)
    at.number_input(key="gen_steps").set_value(5)
    at.button[0].click().run()
    assert not at.exception
    shown = [m.value for m in at.markdown if "Paris" in m.value]
    head = '<div dir="auto" style="white-space:pre-wrap"><bdi>&#35; Paris &#42;&#42;was&#42;&#42; &#36;5&#36;'
    assert shown and shown[-1].startswith(head)


def test_an_empty_or_overlong_prompt_says_what_conditions_the_text(copy_of_run, monkeypatch):
    at = page("generate", copy_of_run, monkeypatch)
    at.number_input(key="gen_n").set_value(2)
    at.number_input(key="gen_steps").set_value(3)
    at.text_area(key="gen_prompt").set_value("")
    at.button[0].click().run()
    assert not at.exception and any("The prompt is empty" in i.value for i in at.info)
    at.text_area(key="gen_prompt").set_value("the city and the river " * 200)
    at.button[0].click().run()
    assert not at.exception and any("condition the continuation" in i.value for i in at.info)


def test_curves_compare_runs_with_config_differences_and_downloads(copy_of_run, monkeypatch):
    log = copy_of_run / "logs" / "ebm"
    text = (log / "full.jsonl").read_text().replace('"lambda_dsm":0.1', '"lambda_dsm":0.2')
    (log / "other.jsonl").write_text(text)
    at = page("curves", copy_of_run, monkeypatch)
    at.multiselect(key="curve_runs").set_value(["full", "other"]).run()
    assert not at.exception
    assert any("Config differences between the 2 runs (1 fields)" in e.label for e in at.expander)
    assert len(at.get("download_button")) == len(PANELS) and len(at.toggle) == len(PANELS)


def test_a_run_gets_a_name_and_notes_in_the_dashboard(copy_of_run, monkeypatch):
    import json

    at = page("runs", copy_of_run, monkeypatch)
    at.text_input(key="name-full").set_value("tiny baseline")
    at.text_area(key="notes-full").set_value("lr 3e-3, # not a heading")
    at.button[0].click().run()
    assert not at.exception
    saved = json.loads((copy_of_run / "checkpoints" / "full" / "notes.json").read_text())
    assert saved == {"name": "tiny baseline", "notes": "lr 3e-3, # not a heading"}
    table = page("runs", copy_of_run, monkeypatch).dataframe[0].value
    assert table["name"].iloc[0] == "tiny baseline" and table["best_ppl_energy"].iloc[0] > 0


def test_generate_compares_two_checkpoints_side_by_side(full_run, monkeypatch):
    ws, _ = full_run
    at = page("generate", ws, monkeypatch)
    other = next(o for o in at.selectbox(key="gen_compare").options if o != "(none)")
    at.selectbox(key="gen_compare").set_value(other).run()
    at.number_input(key="gen_n").set_value(3)
    at.number_input(key="gen_steps").set_value(5)
    at.button[0].click().run()
    assert not at.exception
    a, b = at.session_state["generation"], at.session_state["generation_b"]
    assert a["checkpoint"] != b["checkpoint"] and b["checkpoint"].endswith(other)
    assert len(a["tokens"]) == len(b["tokens"]) == 3
    assert len([m for m in at.markdown if "The history of the city</bdi><bdi><strong>" in m.value]) == 2  # one text per column


def test_generate_under_constraints_shows_badges_and_constraint_traces(full_run, monkeypatch):
    ws, _ = full_run
    at = page("generate", ws, monkeypatch)
    at.number_input(key="gen_n").set_value(6)
    at.text_input(key="gen_keywords").set_value("the")
    at.text_input(key="gen_avoid").set_value("of")
    at.number_input(key="gen_samples").set_value(2)
    at.number_input(key="gen_chains").set_value(4)
    at.number_input(key="gen_chain_steps").set_value(5)
    at.button[0].click().run()
    assert not at.exception
    result = at.session_state["generation"]
    assert [label for label, _ in result["labels"]] == ["the", "of"] and len(result["samples"]) == 2
    assert all(s["met"]["of"] for s in result["samples"])  # avoid is hard: never broken
    assert all(len(s["trace"]["total"]) == 6 for s in result["samples"])  # 5 chain steps + the start
    shown = texts(at)
    assert "met: of" in shown and "<bdi>The history of the city</bdi>" in shown
    assert charts(at) == 1  # the constraints' energies along each sample's chain


def test_generate_names_a_bad_constraint_instead_of_failing(full_run, monkeypatch):
    ws, _ = full_run
    at = page("generate", ws, monkeypatch)
    at.text_input(key="gen_keywords").set_value("city, , river")  # an empty item between commas is dropped
    at.text_input(key="gen_right").set_value("x " * 400)  # far longer than the window
    at.button[0].click().run()
    assert not at.exception
    assert "does not fit the model's window" in texts(at)


def test_splats_handed_over_by_the_splat_map_become_a_topic(full_run, monkeypatch):
    from app.settings import TOPIC_KEY
    from trainer.loading import load_run

    ws, _ = full_run
    latest = ws / "checkpoints" / "full" / "latest.pt"
    means = load_run(latest)[1].splats.mu.detach().numpy()
    at = page("generate", ws, monkeypatch)
    at.session_state[TOPIC_KEY] = {"checkpoint": str(latest), "ids": [0, 1, 2], "means": means[:3]}
    at.run()
    box = at.checkbox(key="gen_topic_map")
    assert not box.disabled and "the 3 splats selected" in box.label
    box.check()
    at.number_input(key="gen_n").set_value(4)
    at.number_input(key="gen_samples").set_value(1)
    at.number_input(key="gen_chain_steps").set_value(3)
    at.button[0].click().run()
    assert not at.exception
    (sample,) = at.session_state["generation"]["samples"]
    assert list(sample["met"]) == ["topic"] and "topic" in sample["trace"]


def test_a_damaged_tokenizer_is_an_error_on_the_generate_page(copy_of_run, monkeypatch):
    (copy_of_run / "checkpoints" / "full" / "tokenizer.json").write_text('{"model": 3')
    at = page("generate", copy_of_run, monkeypatch)
    assert not at.exception and any("is not a readable tokenizer" in e.value for e in at.error)


def test_compare_with_works_under_constraints(full_run, monkeypatch):
    ws, _ = full_run
    at = page("generate", ws, monkeypatch)
    other = next(o for o in at.selectbox(key="gen_compare").options if o != "(none)")
    at.selectbox(key="gen_compare").set_value(other).run()
    at.number_input(key="gen_n").set_value(4)
    at.text_input(key="gen_avoid").set_value("the")
    at.number_input(key="gen_samples").set_value(1)
    at.number_input(key="gen_chain_steps").set_value(3)
    at.button[0].click().run()
    assert not at.exception
    a, b = at.session_state["generation"], at.session_state["generation_b"]
    assert a["checkpoint"] != b["checkpoint"] and a["samples"][0]["met"]["the"] and b["samples"][0]["met"]["the"]
    assert charts(at) == 2  # one constraint trace per column
