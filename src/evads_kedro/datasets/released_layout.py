"""A parquet file in a released E-VAds layout (``sft`` | ``rl``), written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from kedro.io import AbstractDataset

from evads_kedro.released_layout import to_arrow


class ReleasedLayoutParquetDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Writes a DataFrame as parquet with the release's exact Arrow schema (``layout:
    sft|rl``), atomically (temp + rename); loads back as a pandas DataFrame."""

    def __init__(self, filepath: str, layout: str, metadata: dict | None = None):
        if layout not in ("sft", "rl"):
            raise ValueError(f"layout must be sft or rl, got {layout!r}")
        self._filepath = Path(filepath)
        self._layout = layout
        self.metadata = metadata

    def _load(self) -> pd.DataFrame:
        return pd.read_parquet(self._filepath)

    def _save(self, data: pd.DataFrame) -> None:
        table = to_arrow(data, self._layout)
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._filepath.with_name(self._filepath.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "layout": self._layout}
