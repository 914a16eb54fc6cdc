"""A run log held as one pandas frame per event type, extended with only the new lines.

`LogReader` supplies the byte offset and partial-line handling; this class keeps no list of
dicts (a 1,000,000-line log would need gigabytes as dicts) but parses new lines in bounded
chunks and appends them to columnar frames, so a refresh costs the new bytes plus one concat.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import pandas as pd

from runs.logs import LogReader, drop_replayed

EMPTY = pd.DataFrame()


class RunLog:
    def __init__(self, path: str | Path, chunk_bytes: int = 16 << 20):
        self.path = Path(path)
        self.reader = LogReader(path, keep_records=False)
        self.chunk_bytes = chunk_bytes
        self.meta: dict | None = None
        self._frames: dict[str, pd.DataFrame] = {}
        self._pending: dict[str, list[pd.DataFrame]] = defaultdict(list)
        self._resets = 0
        self.lock = threading.Lock()  # one RunLog serves every browser session

    @property
    def run_id(self) -> str:
        return self.path.stem

    @property
    def corrupt_lines(self) -> int:
        return self.reader.corrupt_lines

    def refresh(self) -> int:
        """Read what was appended since the last call; returns the number of new records."""
        total = 0
        with self.lock:
            while True:
                before = self.reader.offset
                new = self.reader.read_new(max_bytes=self.chunk_bytes)
                if self.reader.resets != self._resets:  # the file was replaced: forget everything
                    self._resets = self.reader.resets
                    self.meta, self._frames, self._pending = None, {}, defaultdict(list)
                elif self.reader.offset == before:
                    return total
                total += len(new)
                resumes = [r["step"] for r in new if r.get("type") == "resume"]
                if resumes:  # void what the stopped run logged after the step it resumed from
                    self._truncate(min(resumes))
                    new = drop_replayed(new)
                by_type: dict[str, list[dict]] = defaultdict(list)
                for record in new:
                    by_type[record["type"]].append(record)
                if self.meta is None and by_type.get("meta"):
                    self.meta = by_type["meta"][0]
                for type_, records in by_type.items():
                    if type_ != "meta":
                        self._pending[type_].append(pd.DataFrame.from_records(records))

    def _truncate(self, step: int) -> None:
        """Drop every record already read whose step is above `step` (callers hold the lock)."""
        for type_ in list(self._pending):
            self._pending[type_] = [f[f["step"] <= step] for f in self._pending[type_]]
        self._frames = {t: f[f["step"] <= step].reset_index(drop=True) for t, f in self._frames.items()}

    def frame(self, type_: str) -> pd.DataFrame:
        """All records of one type so far, in file order (empty frame when none)."""
        with self.lock:
            pending = self._pending.pop(type_, [])
            if pending:
                parts = [self._frames[type_], *pending] if type_ in self._frames else pending
                self._frames[type_] = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
            return self._frames.get(type_, EMPTY)

    def frames(self, *types: str) -> pd.DataFrame:
        """Records of several types merged in step order (e.g. eval and epoch evaluations)."""
        parts = [f for f in (self.frame(t) for t in types) if not f.empty]
        if not parts:
            return EMPTY
        return pd.concat(parts, ignore_index=True).sort_values(["step", "t"], kind="stable", ignore_index=True)
