"""The run log: append-only JSON lines (docs/design.md, "Run files"). No torch here: the
dashboard imports this module cheaply.

Every line has v (schema version), type, t (unix time), step, epoch and the fields of its kind
(runs.runfiles.RECORD_FIELDS); the first line of a log is a `meta` record with the config. `LogReader` keeps a byte offset and
parses only complete new lines: a half-written last line is left for the next read, a corrupt
line is counted and skipped, and a file that shrank (rewritten) is read again from the start.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from .runfiles import RECORD_KINDS, SCHEMA_VERSION


def _clean(value):
    """JSON has no NaN/Inf: write them as null so every reader can parse the line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunLogger:
    def __init__(self, path: str | Path, echo=None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self.echo = echo  # optional callable(record) for alerts on stderr

    def log(self, type_: str, step: int, epoch: int, **fields) -> dict:
        if type_ not in RECORD_KINDS:
            raise ValueError(f"unknown log event type {type_!r}")
        record = {"v": SCHEMA_VERSION, "type": type_, "t": time.time(), "step": int(step), "epoch": int(epoch)}
        record.update(_clean(fields))
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()
        if self.echo is not None:
            self.echo(record)
        return record

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()


class LogReader:
    """Incremental reader of one run log."""

    def __init__(self, path: str | Path, keep_records: bool = True):
        self.path = Path(path)
        self.offset = 0
        self.corrupt_lines = 0
        self.resets = 0  # times the file shrank and was read again from the start
        self.keep_records = keep_records  # False: callers hold their own (e.g. columnar) copy
        self.records: list[dict] = []

    def read_new(self, max_bytes: int | None = None) -> list[dict]:
        """Parse lines appended since the last call; returns only the new records. With max_bytes,
        reads at most that much (but always at least one whole line); call again for the rest."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced: start again
            self.offset, self.records, self.corrupt_lines = 0, [], 0
            self.resets += 1
        if size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            want = size - self.offset if max_bytes is None else min(size - self.offset, max_bytes)
            chunk = fh.read(want)
            end = chunk.rfind(b"\n")
            if end < 0 and want < size - self.offset:  # a line longer than max_bytes
                chunk += fh.read(size - self.offset - want)
                end = chunk.rfind(b"\n")
        if end < 0:
            return []  # only a partial line so far
        new = []
        for line in chunk[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not _is_record(record):
                    raise ValueError("not a log record")
            except ValueError:
                self.corrupt_lines += 1
                continue
            new.append(record)
        self.offset += end + 1
        if self.keep_records:
            self.records.extend(new)
            if any(r["type"] == "resume" for r in new):
                self.records = drop_replayed(self.records)
        return new

    def of_type(self, type_: str) -> list[dict]:
        return [r for r in self.records if r.get("type") == type_]

    @property
    def meta(self) -> dict | None:
        return next((r for r in self.records if r.get("type") == "meta"), None)


def drop_replayed(records: list[dict]) -> list[dict]:
    """The records that stand: a `resume` record at step s voids what came before it with a
    step above s, which the stopped run logged after its checkpoint and the resumed run logs
    again (TensorBoard drops such orphaned steps the same way)."""
    out: list[dict] = []
    for record in records:
        if record.get("type") == "resume":
            out = [r for r in out if r.get("step", 0) <= record.get("step", 0)]
        out.append(record)
    return out


def _is_record(record) -> bool:
    """What every reader indexes on: a kind and an integer step (other fields may be missing)."""
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        return False
    step = record.get("step")
    return isinstance(step, int) and not isinstance(step, bool)
