"""The dashboard's data layer without Streamlit: incremental columnar log, smoothing, figures,
run summaries, projections and the launcher's argument checks."""

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from app.curves import PANELS, RunSeries, bucket_size, convert_x, log_ticks, panel_figure, smooth, tick_text
from app.launch import main as launch_main
from app.projection import cache_file, load_array, nearest_tokens, pca_fit, place_by_neighbours, save_array
from app.runlog import RunLog
from app.settings import Folders
from app.summary import open_alerts, run_summary
from runs.logs import LogReader, RunLogger
from runs.status import write_status


def write_log(path, n, start=0):
    logger = RunLogger(path)
    if start == 0:
        logger.log("meta", 0, 0, run_id=path.stem, config={})
    for s in range(start, start + n):
        logger.log("batch", s + 1, 0, loss=10.0 / (s + 1), nll=1.0, tokens_per_s=100.0)
    logger.close()


# ----------------------------------------------------------------------------- smoothing


def test_ema_is_the_debiased_zero_started_average():
    x = pd.Series(np.random.default_rng(0).normal(5.0, 1.0, 50))
    beta, m, expected = 0.9, 0.0, []
    for t, v in enumerate(x, start=1):
        m = beta * m + (1 - beta) * v
        expected.append(m / (1 - beta**t))  # bias correction as in Adam / TensorBoard
    np.testing.assert_allclose(smooth(x, "ema", beta), expected, rtol=1e-12)
    assert smooth(x, "ema", beta).iloc[0] == x.iloc[0]  # no pull towards zero at the start


def test_moving_average_is_trailing_with_a_short_start_and_skips_nans():
    x = pd.Series([1.0, 3.0, np.nan, 5.0, 7.0])
    np.testing.assert_allclose(smooth(x, "mean", 2), [1.0, 2.0, 3.0, 5.0, 6.0])
    assert smooth(x, "none", 0).equals(x)
    np.testing.assert_allclose(smooth(x, "ema", 0.5).dropna().iloc[-1], (7 + 0.5 * 5 + 0.25 * 3 + 0.125 * 1) / 1.875)
    with pytest.raises(ValueError):
        smooth(x, "ema", 1.0)


def test_panel_figure_thins_long_series_keeps_zoom_and_marks_phases_and_alerts():
    n = 10_000
    batch = pd.DataFrame({"step": np.arange(1, n + 1), "t": np.arange(n) + 1e9, "nll": np.linspace(10, 2, n)})
    phases = pd.DataFrame({"step": [0, 5000], "t": [1e9, 1e9 + 4999], "name": ["init", "mid"]})
    alerts = pd.DataFrame({"step": [7000], "t": [1e9 + 6999], "rule": ["plateau"], "message": ["flat"]})
    rs = RunSeries("r", {"batch": batch}, 1e9, phases, alerts)
    panel = next(p for p in PANELS if p.title == "Loss components")
    fig, note = panel_figure(panel, [rs], "step", "ema", 0.9, max_points=1000)
    lines = [t for t in fig.data if t.mode == "lines" and t.showlegend is not False]
    assert len(lines) == 1 and len(lines[0].x) == 1000 and bucket_size(n, 1000) == 10
    assert "10,000 points in buckets of 10" in note
    assert fig.layout.uirevision == panel.title
    assert [s.x0 for s in fig.layout.shapes] == [5000]  # the phase change, not the start
    crosses = [t for t in fig.data if t.name == "r alerts"]
    assert list(crosses[0].x) == [7000] and "plateau: flat" in crosses[0].hovertext[0]
    fig, _ = panel_figure(panel, [rs], "time", "none", 0.0)  # date axis with markers must not fail
    assert len(fig.layout.shapes) == 1


def test_a_one_step_spike_in_a_million_points_is_drawn():
    n = 1_000_000
    nll = np.full(n, 3.0)
    nll[654_321] = 40.0
    batch = pd.DataFrame({"step": np.arange(1, n + 1), "t": np.arange(n) + 1e9, "nll": nll})
    rs = RunSeries("r", {"batch": batch}, 1e9, pd.DataFrame(), pd.DataFrame())
    panel = next(p for p in PANELS if p.title == "Loss components")
    fig, note = panel_figure(panel, [rs], "step", "ema", 0.9, max_points=2000)
    band_top = next(t for t in fig.data if t.name == "nll (max)")
    assert len(band_top.y) == 2000 and max(band_top.y) == 40.0
    assert np.asarray(band_top.x)[np.argmax(band_top.y)] >= 654_322  # the bucket holding the spike
    assert "buckets of 500" in note


def test_step_like_series_are_steps_unsmoothed_and_events_are_markers():
    lr = np.r_[np.linspace(0, 1e-2, 50), np.full(50, 1e-2)]
    batch = pd.DataFrame({"step": np.arange(1, 101), "t": np.arange(100) + 1e9, "lr": lr})
    rs = RunSeries("r", {"batch": batch}, 1e9, pd.DataFrame(), pd.DataFrame())
    fig, _ = panel_figure(next(p for p in PANELS if p.title == "Learning rate"), [rs], "step", "ema", 0.9)
    (line,) = [t for t in fig.data if t.name == "lr"]
    assert line.line.shape == "hv" and int(np.argmax(line.y)) == 49  # the warm-up peaks at step 50, as logged
    soc = pd.DataFrame({"step": [300, 400], "t": [1e9, 1e9 + 1], "merged": [0, 2], "pruned": [0, 0], "spawned": [5, 0]})
    rs = RunSeries(
        "r",
        {"soc": soc.assign(avalanche_size=soc[["merged", "pruned", "spawned"]].sum(axis=1))},
        1e9,
        pd.DataFrame(),
        pd.DataFrame(),
    )
    fig, _ = panel_figure(next(p for p in PANELS if p.title.startswith("Avalanche size")), [rs], "step")
    assert [t.mode for t in fig.data if t.name == "avalanche_size"] == ["markers"]


def test_convert_x_interpolates_along_the_run():
    steps, hours = np.array([0.0, 100.0, 200.0]), np.array([0.0, 0.5, 2.0])
    assert convert_x(150, "step", "hours", steps, hours) == 1.25
    assert convert_x(1.25, "hours", "step", steps, hours) == 150
    assert convert_x(150, "step", "step", steps, hours) == 150
    assert convert_x(150, "step", "time", steps, hours) is None and convert_x(1, "step", "hours", steps[:0], hours[:0]) is None


def test_log_axes_are_labelled_at_one_two_five_only():
    assert log_ticks(97, 1444) == [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
    assert [tick_text(t) for t in (0.001, 0.002, 200.0, 1e6)] == ["0.001", "0.002", "200", "1e6"]
    batch = pd.DataFrame({"step": [1, 2, 3], "t": [1e9, 1e9 + 1, 1e9 + 2], "ppl": [1444.0, 380.0, 97.0]})
    rs = RunSeries("r", {"batch": batch}, 1e9, pd.DataFrame(), pd.DataFrame())
    fig, _ = panel_figure(next(p for p in PANELS if p.title == "Training perplexity"), [rs], "step")
    assert fig.layout.yaxis.type == "log" and "200" in fig.layout.yaxis.ticktext and "2" not in fig.layout.yaxis.ticktext


# ----------------------------------------------------------------------------- logs


def test_runlog_reads_only_new_lines_and_waits_for_partial_ones(tmp_path):
    path = tmp_path / "ebm" / "r.jsonl"
    write_log(path, 5)
    log = RunLog(path)
    assert log.refresh() == 6 and len(log.frame("batch")) == 5 and log.meta["run_id"] == "r"
    offset = log.reader.offset
    assert log.refresh() == 0 and log.reader.offset == offset
    with open(path, "a") as fh:
        fh.write('{"v":1,"type":"batch","t":1,"step":6,"epoch":0,"loss":1.0')
    assert log.refresh() == 0 and len(log.frame("batch")) == 5
    with open(path, "a") as fh:
        fh.write("}\n{garbage\n")
    assert log.refresh() == 1 and log.frame("batch")["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert log.corrupt_lines == 1


def test_runlog_chunked_reading_matches_one_read_and_restarts_on_a_rewritten_file(tmp_path):
    path = tmp_path / "ebm" / "r.jsonl"
    write_log(path, 300)
    small = RunLog(path, chunk_bytes=500)
    whole = RunLog(path)
    small.refresh(), whole.refresh()
    pd.testing.assert_frame_equal(small.frame("batch"), whole.frame("batch"))
    path.unlink()
    write_log(path, 3)  # a new, shorter log under the same name
    small.refresh()
    assert len(small.frame("batch")) == 3 and small.reader.resets == 1


def test_log_reader_max_bytes_still_returns_a_line_longer_than_the_limit(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"type": "sample", "step": 1, "text": "x" * 5000}) + "\n")
    reader = LogReader(path, keep_records=False)
    assert len(reader.read_new(max_bytes=100)) == 1 and reader.records == []


# ----------------------------------------------------------------------------- summaries


def test_summary_shows_a_stale_running_run_as_not_responding_and_open_alerts(tmp_path):
    folders = Folders(tmp_path / "logs", tmp_path / "checkpoints", 5.0)
    path = tmp_path / "logs" / "ebm" / "r.jsonl"
    write_log(path, 1000)
    logger = RunLogger(path)
    logger.log("alert", 100, 0, rule="old", message="m", advice="a")
    logger.log("alert", 900, 0, rule="energy_rising", message="m", advice="a")
    logger.close()
    write_status(folders.checkpoints / "r" / "status.json", "running", total_steps=2000)
    log = RunLog(path)
    log.refresh()
    row = run_summary(log, folders)
    assert row["state"] == "running" and row["step"] == 1000 and row["progress"] == 0.5
    assert row["open_alerts"] == "energy_rising" and list(open_alerts(log)["rule"]) == ["energy_rising"]
    assert run_summary(log, folders, now=time.time() + 600)["state"] == "not responding"


# ----------------------------------------------------------------------------- projections


def test_pca_matches_svd_and_places_new_points_linearly():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 20)) * np.linspace(5, 0.1, 20)).astype(np.float32)
    coords, mean, axes = pca_fit(x, 3)
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(axes @ vt[:3].T), np.eye(3), atol=1e-4)
    np.testing.assert_allclose(coords.var(0) * len(x), s[:3] ** 2, rtol=1e-3)
    np.testing.assert_allclose((x[:5] - mean) @ axes.T, coords[:5], rtol=1e-5, atol=1e-5)


def test_nearest_tokens_match_brute_force_cosine():
    rng = np.random.default_rng(1)
    splats, tokens = rng.normal(size=(50, 16)), rng.normal(size=(300, 16))
    found = nearest_tokens(splats, tokens, k=4)
    cos = (splats / np.linalg.norm(splats, axis=1, keepdims=True)) @ (tokens / np.linalg.norm(tokens, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(found, np.argsort(-cos, axis=1)[:, :4])


def test_a_point_at_a_splat_lands_on_its_map_position():
    rng = np.random.default_rng(2)
    means, coords = rng.normal(size=(40, 8)), rng.normal(size=(40, 2))
    placed = place_by_neighbours(means[[7, 9]], means, coords, k=1)
    np.testing.assert_allclose(placed, coords[[7, 9]], atol=1e-6)


def test_map_cache_follows_the_checkpoint_file_version(tmp_path):
    ckpt = tmp_path / "latest.pt"
    ckpt.write_bytes(b"one")
    save_array(ckpt, "umap2", np.ones((3, 2)))
    assert load_array(ckpt, "umap2").shape == (3, 2)
    ckpt.write_bytes(b"second version")
    os.utime(ckpt, ns=(time.time_ns() + 10**9,) * 2)
    assert load_array(ckpt, "umap2") is None  # a rewritten latest.pt gets a new map
    new = save_array(ckpt, "umap2", np.zeros((4, 2)))
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [new.name] == [cache_file(ckpt, "umap2").name]


# ----------------------------------------------------------------------------- launcher


def test_launcher_rejects_bad_arguments_in_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert launch_main(["--logs", str(tmp_path / "file")]) == 2
    assert launch_main(["--refresh", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("ebm-dashboard: error:") for line in err)


def test_colour_scales_show_the_true_range():
    from app.splatmap import colour_marker

    flat, note = colour_marker(2.0001 + 1e-5 * np.arange(50), "kappa")
    assert flat.get("showscale") is False and "for all" in note  # no scale stretched over noise
    spread, note = colour_marker(np.linspace(1.0, 40.0, 50), "kappa")
    assert note == "" and "1 to 40" in spread["colorbar"]["title"]
    decades, _ = colour_marker(np.logspace(-4, 0, 50), "usage")
    assert decades["colorbar"]["title"].startswith("log10 usage")


def test_panel_data_and_config_differences():
    from app.curves import PANELS, RunSeries, config_differences, panel_data

    batch = pd.DataFrame({"step": [1, 2], "t": [1.0, 2.0], "nll": [3.0, 2.5], "dsm": [1.0, None]})
    runs = [RunSeries(run=r, frames={"batch": batch}, start_t=0.0, phases=pd.DataFrame(), alerts=pd.DataFrame()) for r in "ab"]
    data = panel_data(PANELS[0], runs)
    assert list(data.columns) == ["run", "step", "t", "metric", "value"] and len(data) == 2 * 3  # dsm's gap dropped
    table = config_differences({"a": {"lr": 1e-3, "d": 64}, "b": {"lr": 3e-3, "d": 64}, "c": {"lr": 1e-3}})
    assert list(table.index) == ["d", "lr"] and list(table.columns) == ["a", "b", "c"] and table.loc["d", "c"] == "(not set)"


def panel_named(title: str):
    return next(p for p in PANELS if p.title == title)


def test_flat_and_empty_panels_are_told_apart_from_moving_ones():
    from app.curves import is_flat

    batch = pd.DataFrame({"step": [1, 2, 3], "t": [1.0, 2.0, 3.0], "nll": [3.0, 2.5, 2.0], "lr": [1e-3] * 3})
    a = RunSeries(run="a", frames={"batch": batch}, start_t=0.0, phases=pd.DataFrame(), alerts=pd.DataFrame())
    assert not is_flat(panel_named("Loss components"), [a])
    assert is_flat(panel_named("Learning rate"), [a]) and is_flat(panel_named("Gradient norm"), [a])  # constant; absent
    b = RunSeries(run="b", frames={"batch": batch.assign(lr=2e-3)}, start_t=0.0, phases=pd.DataFrame(), alerts=pd.DataFrame())
    assert is_flat(panel_named("Learning rate"), [a, b])  # two constant runs: nothing moves over time


def test_runs_keep_one_colour_across_panels():
    from app.curves import PANELS, RunSeries, panel_figure

    batch = pd.DataFrame(
        {"step": [1, 2, 3], "t": [1.0, 2.0, 3.0], "nll": [3.0, 2.5, 2.0], "dsm": [1.0, 0.9, 0.8], "lr": [1e-3, 1e-3, 1e-3]}
    )
    runs = [RunSeries(run=r, frames={"batch": batch}, start_t=0.0, phases=pd.DataFrame(), alerts=pd.DataFrame()) for r in "ab"]
    colours = {}
    for panel in (PANELS[0], panel_named("Learning rate")):  # several metrics, and one
        fig, _ = panel_figure(panel, runs, show_raw=False)
        for trace in fig.data:
            colours.setdefault(trace.name.split(" · ")[0], set()).add(trace.line.color)
    assert all(len(c) == 1 for c in colours.values()) and colours["a"] != colours["b"]


def test_the_shared_x_range_zooms_every_panel():
    from app.curves import PANELS, RunSeries, panel_figure

    batch = pd.DataFrame({"step": [1, 2, 3], "t": [1.0, 2.0, 3.0], "nll": [3.0, 2.5, 2.0], "lr": [1e-3] * 3})
    runs = [RunSeries(run="a", frames={"batch": batch}, start_t=0.0, phases=pd.DataFrame(), alerts=pd.DataFrame())]
    both, _ = panel_figure(PANELS[0], runs, x_range=(1.5, 2.5))
    assert tuple(both.layout.xaxis.range) == (1.5, 2.5) and both.layout.xaxis.autorange is False
    open_end, _ = panel_figure(panel_named("Learning rate"), runs, x_range=(2.0, None))
    assert tuple(open_end.layout.xaxis.range) == (2.0, 3.0)  # the open end follows the latest step
    assert panel_figure(PANELS[0], runs)[0].layout.xaxis.range is None


def test_a_box_selection_on_the_splat_map_keeps_only_splats():
    from types import SimpleNamespace

    from app.splatmap import selected_splats

    points = [
        {"curve_number": 0, "point_index": 7},
        {"curve_number": 0, "point_index": 2},
        {"curve_number": 1, "point_index": 0},
        {"curve_number": 0, "point_index": 7},
    ]
    assert selected_splats(SimpleNamespace(selection=SimpleNamespace(points=points))) == [2, 7]  # no word overlay, no repeats
    assert selected_splats(None) == [] and selected_splats(SimpleNamespace(selection=None)) == []


def test_runs_that_differ_only_in_seed_are_one_group_with_a_band():
    from app.curves import group_series, run_groups

    configs = {"a": {"seed": 0, "lr": 1}, "b": {"seed": 1, "lr": 1}, "c": {"seed": 0, "lr": 2}}
    assert run_groups(configs) == [["a", "b"], ["c"]]

    def run(name: str, offset: float) -> RunSeries:
        batch = pd.DataFrame({"step": [1, 2, 3], "t": [100.0, 101.0, 102.0], "nll": [5.0 + offset, 4.0 + offset, 3.0 + offset]})
        return RunSeries(name, {"batch": batch}, 100.0, pd.DataFrame(), pd.DataFrame())

    group = group_series([run("a", 0.0), run("b", 1.0)])
    frame = group.frames["batch"]
    assert list(frame["nll"]) == [5.5, 4.5, 3.5] and list(frame["nll__lo"]) == [5, 4, 3] and list(frame["nll__hi"]) == [6, 5, 4]
    fig, _ = panel_figure(next(p for p in PANELS if p.title == "Loss components"), [group], "step", "none", 0.0)
    top = next(t for t in fig.data if t.name.endswith("(max)"))
    assert list(top.y) == [6, 5, 4] and group.run.startswith("a +1")


def test_a_word_is_the_mean_of_its_tokens_and_search_ranks_splats_by_cosine():
    from app.splatmap import nearest_splats, word_vector

    emb = np.eye(4)
    v = word_vector(emb, [0, 1])  # a word of two byte-level tokens sits between them
    np.testing.assert_allclose(v, [2**-0.5, 2**-0.5, 0, 0])
    keys = np.array([[0, 0, 0, 1.0]] * 4)  # paired splats: (key, mean); the key half must not count
    mus = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0.6, 0.8], [0, 0, 0, 1]])
    ids, cos = nearest_splats(np.hstack([keys, mus]), np.array([0, 0, 0, 1.0]), 2)
    assert list(ids) == [3, 2] and cos.tolist() == pytest.approx([1.0, 0.8])


def test_splat_distributions_are_a_median_with_its_p10_p90_band():
    from app.curves import add_derived

    quantiles = {"kappa_p10": [1.0, 2.0], "kappa_p50": [2.0, 4.0], "kappa_p90": [3.0, 9.0]}
    evals = pd.DataFrame({"step": [0, 10], "t": [1e9, 1e9 + 1], **quantiles})
    rs = RunSeries("r", {"eval+epoch": add_derived(evals)}, 1e9, pd.DataFrame(), pd.DataFrame())
    fig, _ = panel_figure(next(p for p in PANELS if p.title.startswith("Splat distributions")), [rs], "step")
    assert list(next(t for t in fig.data if t.name == "kappa_p50 (max)").y) == [3.0, 9.0]
    assert list(next(t for t in fig.data if t.name == "kappa_p50").y) == [2.0, 4.0]
