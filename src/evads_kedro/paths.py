"""Locating the released E-VAds files (SPEC §5) without hard-coding a machine's layout."""

from __future__ import annotations

import os
from pathlib import Path

EVADS_DATA_DIR_ENV = "EVADS_DATA_DIR"
SFT_FILE = "EVAds_SFT.parquet"
RL_FILE = "EVAds_RL.parquet"


def project_root() -> Path:
    """The directory containing ``pyproject.toml`` above this package (the Kedro project root)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise FileNotFoundError(f"no pyproject.toml above {here}")


def find_evads_data_dir() -> Path | None:
    """Directory holding the released parquets, or None if there is none.

    ``$EVADS_DATA_DIR`` wins when set (and is then the only candidate, so a wrong setting is
    not silently replaced); otherwise ``<project root>/../shared/evads``.
    """
    env = os.environ.get(EVADS_DATA_DIR_ENV)
    if env:
        candidate = Path(env).expanduser()
    else:
        try:
            candidate = project_root().parent / "shared" / "evads"
        except FileNotFoundError:
            return None
    return candidate.resolve() if candidate.is_dir() else None
