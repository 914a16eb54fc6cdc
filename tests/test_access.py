"""Who may use a served dashboard: a non-loopback address needs a password or an explicit
--no-auth; with a password no page runs before it is given; --read-only writes nothing."""

import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from app import launch
from app.access import PASSWORD_HASH_ENV, READ_ONLY_ENV, is_loopback, password_hash
from app.settings import CHECKPOINT_ENV, LOG_ENV

APP = ROOT / "app"


@pytest.fixture
def no_server(monkeypatch):
    """launch.main up to the point where Streamlit would start serving: what it was asked to do.
    The launcher sets the process's environment for the app; it is put back afterwards."""
    import os
    import sys

    import streamlit.web.cli

    calls, saved_env, saved_argv = [], dict(os.environ), list(sys.argv)
    monkeypatch.setattr(streamlit.web.cli, "main", lambda: calls.append(list(sys.argv)) or 0)
    for name in (PASSWORD_HASH_ENV, READ_ONLY_ENV, "EBM_DASHBOARD_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    yield calls
    os.environ.clear()
    os.environ.update(saved_env)
    sys.argv[:] = saved_argv


def test_loopback_addresses():
    assert all(is_loopback(a) for a in ("localhost", "127.0.0.1", "127.3.4.5", "::1", "[::1]"))
    assert not any(is_loopback(a) for a in ("0.0.0.0", "192.168.1.10", "::", "example.org"))


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_serving_other_machines_without_a_password_is_refused(no_server, capsys, address, tmp_path):
    assert launch.main(["--address", address, "--logs", str(tmp_path), "--checkpoints", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs" not in err[0] and "set a password" in err[0] and "--no-auth" in err[0]
    assert no_server == []  # nothing was served


def test_a_password_or_no_auth_lets_it_serve(no_server, capsys, monkeypatch, tmp_path):
    import os

    folders = ["--logs", str(tmp_path), "--checkpoints", str(tmp_path)]
    monkeypatch.setenv("EBM_DASHBOARD_PASSWORD", "s3cret")
    assert launch.main(["--address", "0.0.0.0", *folders]) == 0
    assert os.environ[PASSWORD_HASH_ENV] == password_hash("s3cret") and "EBM_DASHBOARD_PASSWORD" not in os.environ
    assert launch.main(["--address", "0.0.0.0", "--no-auth", "--read-only", *folders]) == 0
    assert "warning: serving 0.0.0.0 with no password" in capsys.readouterr().err
    assert os.environ[PASSWORD_HASH_ENV] == "" and os.environ[READ_ONLY_ENV] == "1"
    assert len(no_server) == 2 and no_server[0][no_server[0].index("--server.address") + 1] == "0.0.0.0"


def main_page(ws, monkeypatch, **env) -> AppTest:
    monkeypatch.setenv(LOG_ENV, str(ws / "logs"))
    monkeypatch.setenv(CHECKPOINT_ENV, str(ws / "checkpoints"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return AppTest.from_file(str(APP / "main.py"), default_timeout=120).run()


def test_no_page_runs_before_the_password(full_run, monkeypatch):
    ws, _ = full_run
    at = main_page(ws, monkeypatch, **{PASSWORD_HASH_ENV: password_hash("s3cret"), READ_ONLY_ENV: "0"})
    assert not at.exception and [t.value for t in at.title] == ["ebm-lab"] and "full" not in str(at.dataframe)
    at.text_input(key="ebm_password").set_value("wrong")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."] and [t.value for t in at.title] == ["ebm-lab"]
    at.text_input(key="ebm_password").set_value("s3cret")
    at.button[0].click().run()
    assert not at.exception and at.title[0].value == "Runs"


def test_read_only_turns_off_notes_and_generate(full_run, monkeypatch):
    ws, _ = full_run
    monkeypatch.setenv(READ_ONLY_ENV, "1")
    monkeypatch.setenv(LOG_ENV, str(ws / "logs"))
    monkeypatch.setenv(CHECKPOINT_ENV, str(ws / "checkpoints"))
    at = AppTest.from_file(str(APP / "views" / "runs_page.py"), default_timeout=120).run()
    assert not at.exception and all(w.disabled for w in at.text_input if w.key.startswith("name-"))
    gen = AppTest.from_file(str(APP / "views" / "generate_page.py"), default_timeout=120).run()
    assert not gen.exception and "turned off" in gen.info[0].value and not gen.button


def test_an_alert_cannot_load_a_remote_image():
    from app.text import plain_markdown

    shown = plain_markdown("loss spiked ![pixel](https://tracker.example/p.png)")
    assert "![" not in shown and "](" not in shown and "\\!\\[pixel\\]" in shown
