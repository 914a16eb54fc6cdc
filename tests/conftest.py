import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def wikitext_valid() -> Path:
    path = SHARED_DATA / "wikitext-2" / "wiki.valid.tokens"
    if not path.exists():
        pytest.skip(f"shared corpus not found at {path}")
    return path
