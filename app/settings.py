"""Where the dashboard reads: the trainer's logs/ and checkpoints/ folders.

`ebm-dashboard --logs DIR --checkpoints DIR` hands them to the Streamlit process through the
environment, so every page (and Streamlit's AppTest) sees the same folders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOG_ENV = "EBM_LOG_DIR"
CHECKPOINT_ENV = "EBM_CHECKPOINT_DIR"
REFRESH_ENV = "EBM_REFRESH_S"
TOPIC_KEY = "topic_splats"  # session state the Splat map hands to Generate: {"checkpoint", "ids", "means"}


@dataclass(frozen=True)
class Folders:
    logs: Path
    checkpoints: Path
    refresh_s: float

    def run_dir(self, run_id: str) -> Path:
        return self.checkpoints / run_id


def folders() -> Folders:
    return Folders(
        logs=Path(os.environ.get(LOG_ENV, "logs")).resolve(),
        checkpoints=Path(os.environ.get(CHECKPOINT_ENV, "checkpoints")).resolve(),
        refresh_s=float(os.environ.get(REFRESH_ENV, "5")),
    )
