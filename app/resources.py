"""Streamlit-side state shared by the pages: cached run logs, loaded checkpoints, background
map jobs, the checkpoint picker and one-line error display."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from runs.runfiles import EXPORT_WEIGHTS, CheckpointError, checkpoints_of, list_runs, log_path, runs_with_checkpoints

from .runlog import RunLog
from .settings import Folders
from .summary import format_age, next_checkpoints

# What a bad file can raise while loading; each is shown as one line, never a traceback.
LOAD_ERRORS: tuple[type[Exception], ...] = (CheckpointError, OSError, ValueError, KeyError, RuntimeError)


@st.cache_resource(show_spinner=False)
def run_log(path: str) -> RunLog:
    return RunLog(path)


def refreshed_logs(folders: Folders) -> list[RunLog]:
    """Every run under the logs folder (newest first), each read up to its current end."""
    logs = [run_log(str(log_path(folders.logs, run_id))) for run_id in list_runs(folders.logs)]
    for log in logs:
        log.refresh()
    return logs


def no_checkpoint_message(folders: Folders) -> str:
    """The empty state: when the next checkpoint is due, if a running run has said so."""
    due = "".join(f" Run {run}'s next one is due in {format_age(s)}." for run, s in next_checkpoints(folders))
    return (
        f"No checkpoints under {folders.checkpoints} yet.{due or ' No run is training now.'} A run writes one every "
        "checkpoint_minutes (10 by default; the first after a fifth of that), at each epoch end and when it stops; "
        "this page opens the first one by itself."
    )


def _remember(key: str) -> None:
    st.session_state[f"chosen_{key}"] = st.session_state[key]


def choose_checkpoint(folders: Folders, where=st.sidebar) -> Path | None:
    """Run and checkpoint pickers, remembered across pages; None (with a message) if there is none."""
    runs = runs_with_checkpoints(folders.checkpoints)
    watch_checkpoints(folders)
    if not runs:
        st.info(no_checkpoint_message(folders))
        return None
    remembered = st.session_state.get("chosen_run")
    run_id = where.selectbox(
        "Run", runs, index=runs.index(remembered) if remembered in runs else 0, key="run", on_change=_remember, args=("run",)
    )
    files = checkpoints_of(folders.run_dir(run_id))
    names = [p.name for p in files]
    remembered = st.session_state.get("chosen_checkpoint")
    name = where.selectbox(
        "Checkpoint",
        names,
        index=names.index(remembered) if remembered in names else 0,
        key="checkpoint",
        on_change=_remember,
        args=("checkpoint",),
    )
    return folders.run_dir(run_id) / name


def all_checkpoints(folders: Folders) -> list[Path]:
    """Every checkpoint of every run, newest run first."""
    return [path for run in runs_with_checkpoints(folders.checkpoints) for path in checkpoints_of(folders.run_dir(run))]


def checkpoint_signature(folders: Folders) -> tuple:
    """Names and versions of every checkpoint: changes when one is written, replaced or removed."""
    signature = []
    for path in all_checkpoints(folders):
        try:
            signature.append((path.parent.name, path.name, file_key(path)))
        except OSError:  # removed between listing and reading: the next look sees the change
            continue
    return tuple(signature)


def watch_checkpoints(folders: Folders) -> None:
    """Rerun the page when a checkpoint appears or is rewritten, so it is picked up without a reload."""
    seen = checkpoint_signature(folders)

    def watcher() -> None:
        if checkpoint_signature(folders) != seen:
            st.rerun()

    st.fragment(watcher, run_every=folders.refresh_s)()


def file_key(path: Path) -> str:
    """Changes when the file (or an export folder's weights) is rewritten."""
    st_ = (path / EXPORT_WEIGHTS if path.is_dir() else path).stat()
    return f"{st_.st_size}-{st_.st_mtime_ns}"


@st.cache_resource(max_entries=2, show_spinner="Loading the checkpoint's model ...")
def loaded_run(path: str, key: str):
    """(state, model, tokenizer); `key` changes when the file does, so a rewritten latest.pt reloads."""
    from trainer.loading import load_run

    state, model, tokenizer = load_run(path)
    state = {k: state[k] for k in ("step", "epoch", "config", "run_id", "tokenizer") if k in state}  # drop optimiser tensors
    return state, model, tokenizer


@st.cache_resource(max_entries=2, show_spinner="Copying the model to the GPU ...")
def model_on(path: str, key: str, device: str):
    """A copy of the cached model on a CUDA device (the CPU model stays shared by the sessions
    that sample on the CPU or with Vulkan)."""
    import copy

    return copy.deepcopy(loaded_run(path, key)[1]).to(device)


@st.cache_resource(max_entries=4, show_spinner="Reading splats ...")
def loaded_splats(path: str, key: str):
    from .projection import splat_data

    return splat_data(Path(path))


@st.cache_resource(show_spinner=False)
def jobs() -> dict:
    """Background map jobs by target file, shared by all sessions so a map is computed once."""
    return {}


def show_load_error(err: Exception, path: Path) -> None:
    reason = str(err) if isinstance(err, CheckpointError) else f"{type(err).__name__}: {err}"
    st.error(f"Cannot read {path.name}: {reason}. Pick another checkpoint.")
