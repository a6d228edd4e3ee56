"""Small per-partition datasets whose saves are atomic (temp file in the same folder +
``os.replace``): a run killed mid-write leaves the previous file or none, never half a file.

Temp files are named ``.tmp-<name>.<pid>.<random>``; :class:`~evads_kedro.datasets.partitions.
PartitionedFolderDataset` hides dot-files from listings and sweeps stale ones.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

TMP_PREFIX = ".tmp-"


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp sibling and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicJSONDataset(AbstractDataset[Any, Any]):
    """A JSON document (UTF-8, non-ASCII kept), written atomically."""

    def __init__(self, filepath: str, indent: int | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self._indent = indent
        self.metadata = metadata

    def _load(self) -> Any:
        try:
            return json.loads(self._filepath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"cannot read JSON {self._filepath}: {exc}") from exc

    def _save(self, data: Any) -> None:
        text = json.dumps(data, ensure_ascii=False, indent=self._indent, sort_keys=False)
        write_atomic(self._filepath, text.encode("utf-8"))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class AtomicTextDataset(AbstractDataset[str, str]):
    """A UTF-8 text file, written atomically."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> str:
        try:
            return self._filepath.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read text {self._filepath}: {exc}") from exc

    def _save(self, data: str) -> None:
        write_atomic(self._filepath, data.encode("utf-8"))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
