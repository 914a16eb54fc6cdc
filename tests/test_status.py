import json

from runs.status import effective_state, write_status


def test_status_staleness(tmp_path):
    path = tmp_path / "status.json"
    status = write_status(path, "running", step=3)
    assert effective_state(status) == "running"
    assert effective_state(status, now=status["heartbeat"] + 1000) == "not responding"
    assert effective_state({**status, "pid": 2**22 + 12345}) == "not responding"
    assert effective_state(json.loads(path.read_text())) == "running"
    assert effective_state(None) == "unknown"
