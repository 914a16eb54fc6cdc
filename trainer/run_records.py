"""What a run writes as it goes: its log records (also handed to listeners: alerts on stderr,
--report-to writers) and its heartbeat in status.json. Only the replica that writes files
(rank 0) writes anything; on the others every call is a no-op."""

from __future__ import annotations

from runs.logs import RunLogger
from runs.status import Heartbeat

from .alerts import Alert, echo_alert
from .options import RunOptions
from .reporting import make_reporters


class RunRecords:
    def __init__(self, opts: RunOptions, writes: bool, resume_step: int | None):
        files = opts.files
        self.writes, self.run_id = writes, opts.run_id
        reporters = make_reporters(list(opts.report_to), files.logs, opts.run_id, resume_step) if writes else []
        self.listeners = [echo_alert, *reporters]
        self.logger = RunLogger(files.log, echo=self._tell_listeners) if writes else None
        self.heartbeat = Heartbeat(files.status)

    def _tell_listeners(self, record: dict) -> None:
        for listener in self.listeners:
            listener(record)

    def log(self, kind: str, step: int, epoch: int, **fields) -> None:
        if self.logger is not None:
            self.logger.log(kind, step, epoch, **fields)

    def log_alerts(self, found: list[Alert], step: int, epoch: int) -> None:
        for alert in found:
            self.log("alert", step, epoch, **alert.as_dict())

    def beat(self, state: str, force: bool = False, **fields) -> None:
        if self.writes:
            self.heartbeat.beat(state, force, run_id=self.run_id, **fields)

    def crashed(self, err: Exception, step: int, epoch: int) -> None:
        """Best effort: the reason may be the very folder or disk these records go to."""
        reason = f"{type(err).__name__}: {err}"[:300]
        try:
            self.beat("crashed", force=True, step=step, reason=reason)
            self.log("status", step, epoch, state="crashed", reason=reason)
        except OSError:
            pass

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        for listener in self.listeners:
            getattr(listener, "close", lambda: None)()
