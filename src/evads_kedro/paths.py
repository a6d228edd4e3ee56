"""Locating the released E-VAds files (SPEC §5) without hard-coding a machine's layout."""

from __future__ import annotations

import os
from pathlib import Path

EVADS_DATA_DIR_ENV = "EVADS_DATA_DIR"
SFT_FILE = "EVAds_SFT.parquet"
RL_FILE = "EVAds_RL.parquet"


def project_root() -> Path:
    """The Kedro project root: the nearest folder holding ``pyproject.toml`` above this package
    (an editable install), else above the working directory (an installed package run from a
    project), else the working directory itself."""
    here = Path(__file__).resolve()
    cwd = Path.cwd().resolve()
    for start in (here, cwd / "_"):
        for parent in start.parents:
            if (parent / "pyproject.toml").is_file():
                return parent
    return cwd


def find_evads_data_dir() -> Path | None:
    """Directory holding the released parquets, or None if there is none.

    ``$EVADS_DATA_DIR`` wins when set (and is then the only candidate, so a wrong setting is
    not silently replaced); otherwise ``<project root>/../shared/evads``.
    """
    env = os.environ.get(EVADS_DATA_DIR_ENV)
    candidate = Path(env).expanduser() if env else project_root().parent / "shared" / "evads"
    return candidate.resolve() if candidate.is_dir() else None
