"""A parquet input that may legitimately be absent (the released E-VAds splits).

A user's clone has no ``../shared/evads``: the released splits are then simply not part of the
run. Loading yields an empty frame and a WARNING that names the file and the fix, so the rest of
the pipeline (sample videos, the user's own ads) still runs and the import report records the
missing split. Any other read failure (corrupt file, permissions) still raises.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)


class OptionalParquetDataset(AbstractDataset[None, pd.DataFrame]):
    """Read-only parquet dataset returning an empty frame when the file does not exist."""

    def __init__(self, filepath: str, hint: str = "", metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self._hint = hint
        self.metadata = metadata

    def _load(self) -> pd.DataFrame:
        if not self._filepath.exists():
            logger.warning("%s not found; continuing without it. %s", self._filepath, self._hint)
            frame = pd.DataFrame()
            frame.attrs["missing_file"] = str(self._filepath)
            return frame
        try:
            frame = pd.read_parquet(self._filepath)
        except Exception as exc:  # re-raised with the file name and what to do
            raise DatasetError(
                f"cannot read parquet {self._filepath}: {exc}. Re-download the file or point "
                "EVADS_DATA_DIR / --params evads_data_dir=... at a good copy."
            ) from exc
        frame.attrs["source_file"] = str(self._filepath)
        return frame

    def _save(self, data: pd.DataFrame) -> None:
        raise DatasetError(f"{self._filepath} is a read-only input of the project")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "optional": True}
