"""Dashboard refresh cost on a long log: the live incremental path (RunLog: read the new bytes,
append to columnar frames, redraw the panels) against re-reading the whole log each refresh.

python bench/dashboard_refresh.py                  # 1,000,000 batch lines, 5 refreshes of 100 new lines
python bench/dashboard_refresh.py --lines 100000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.curves import PANELS, RunSeries, add_derived, panel_figure  # noqa: E402
from app.runlog import RunLog  # noqa: E402
from bench.measure import peak_rss_mb  # noqa: E402
from runs.logs import LogReader  # noqa: E402
from runs.runfiles import BATCH_FIELDS, SCHEMA_VERSION  # noqa: E402


def batch_line(step: int, rng: random.Random) -> str:
    record = {"v": SCHEMA_VERSION, "type": "batch", "t": 1.7e9 + step, "step": step, "epoch": step // 5000}
    record.update({k: rng.random() for k in BATCH_FIELDS})
    return json.dumps(record, separators=(",", ":")) + "\n"


def write_lines(path: Path, start: int, n: int, rng: random.Random) -> None:
    with open(path, "a") as fh:
        if start == 0:
            meta = {"v": SCHEMA_VERSION, "type": "meta", "t": 1.7e9, "step": 0, "epoch": 0, "run_id": "bench"}
            fh.write(json.dumps(meta) + "\n")
        for step in range(start, start + n):
            fh.write(batch_line(step + 1, rng))
            if step % 500 == 499:
                fh.write(
                    json.dumps(
                        {
                            "v": SCHEMA_VERSION,
                            "type": "eval",
                            "t": 1.7e9 + step,
                            "step": step + 1,
                            "epoch": 0,
                            "ppl_energy": rng.random() * 100,
                            "ppl_decoder": rng.random() * 100,
                        }
                    )
                    + "\n"
                )


def draw(log: RunLog) -> int:
    rs = RunSeries(
        log.run_id,
        {"batch": log.frame("batch"), "eval+epoch": log.frames("eval", "epoch"), "soc": add_derived(log.frame("soc"))},
        1.7e9,
        log.frame("phase"),
        log.frame("alert"),
    )
    return sum(len(panel_figure(p, [rs])[0].data) for p in PANELS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--new", type=int, default=100, help="lines appended before each refresh")
    p.add_argument("--refreshes", type=int, default=5)
    args = p.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        write_lines(path, 0, args.lines, rng)
        size_mb = path.stat().st_size / 1e6
        log = RunLog(path)
        t = time.perf_counter()
        log.refresh()
        draw(log)
        first = time.perf_counter() - t
        live, full = [], []
        written = args.lines
        for _ in range(args.refreshes):
            write_lines(path, written, args.new, rng)
            written += args.new
            t = time.perf_counter()
            log.refresh()
            draw(log)
            live.append(time.perf_counter() - t)
            t = time.perf_counter()
            reader = LogReader(path)  # the baseline: parse everything again
            reader.read_new()
            fresh = RunLog(path)
            fresh.refresh()
            draw(fresh)
            full.append(time.perf_counter() - t)
    rss = peak_rss_mb() / 1024
    m_live, m_full = statistics.median(live), statistics.median(full)
    print(f"log: {args.lines:,} batch lines ({size_mb:.0f} MB), {args.new} new lines before each of {args.refreshes} refreshes\n")
    print("| path | median s / refresh | runs (s) | ratio to re-read |")
    print("|---|---|---|---|")
    print(f"| first load (incremental reader, then draw) | {first:.2f} | - | - |")
    print(
        f"| live refresh: new bytes + draw 9 panels | {m_live:.3f} | {', '.join(f'{x:.3f}' for x in live)} "
        f"| {m_live / m_full:.3f} |"
    )
    print(f"| baseline: re-read whole log + draw | {m_full:.2f} | {', '.join(f'{x:.2f}' for x in full)} | 1.000 |")
    print(f"\npeak RSS {rss:.2f} GB")


if __name__ == "__main__":
    main()
