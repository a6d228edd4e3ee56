"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from evads_kedro.paths import RL_FILE, SFT_FILE, find_evads_data_dir


@pytest.fixture(scope="session")
def evads_data_dir() -> Path:
    """Directory with the released parquets ($EVADS_DATA_DIR, else <repo>/../shared/evads);
    skips the test when they are not available."""
    found = find_evads_data_dir()
    if found is None:
        pytest.skip(
            "released E-VAds parquets not found: set EVADS_DATA_DIR or put them in "
            "<repo>/../shared/evads"
        )
    missing = [name for name in (SFT_FILE, RL_FILE) if not (found / name).is_file()]
    if missing:
        pytest.skip(f"{found} lacks {missing}; set EVADS_DATA_DIR to the release folder")
    return found
