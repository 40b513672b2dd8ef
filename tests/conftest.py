"""Shared fixtures. ``shared_data`` is the folder of real corpora beside the repository
(``../shared/data``, or ``$RRPO_SHARED_DATA``); tests that need it skip cleanly where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path:
    return Path(os.environ.get("RRPO_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    p = shared_data_path()
    if not (p / "casia").is_dir() or not (p / "esd").is_dir():
        pytest.skip(f"shared data not found at {p} (set RRPO_SHARED_DATA)")
    return p


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests run on small tensors; one thread avoids oversubscribing a 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
