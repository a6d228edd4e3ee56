"""A video file as a Kedro dataset: loading yields a handle (path + stat), never the bytes.

Used as the ``dataset`` of a ``PartitionedDataset`` over a folder of user videos, so discovery
goes through the catalog (and ``--params ingestion.video_root=...`` re-points it) while
decoders (PyAV) stream the file themselves: a 2 GB video costs nothing to "load".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


@dataclass(frozen=True)
class VideoFile:
    """Handle to one file under the video root (it may not be a video: probing decides)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def stat(self):
        return self.path.stat()

    def sidecar(self, suffix: str = ".json") -> Path:
        """``<stem><suffix>`` beside the file (ground truth / metadata of sample videos)."""
        return self.path.with_suffix(suffix)

    def read_sidecar_json(self, suffix: str = ".json") -> dict[str, Any] | None:
        """The sidecar's JSON object, or None when absent; a broken sidecar raises ValueError."""
        side = self.sidecar(suffix)
        if not side.is_file():
            return None
        if not side.resolve().is_relative_to(self.path.parent.resolve()):
            # a symlinked sidecar must not pull outside data into the timelines
            raise ValueError(f"sidecar {side.name} is a symlink pointing outside the video "
                             "folder; copy the file there instead")
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"sidecar {side.name} is not readable JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"sidecar {side.name} is not a JSON object")
        return data


class VideoFileDataset(AbstractDataset[None, VideoFile]):
    """Read-only: ``load()`` returns a :class:`VideoFile` for ``filepath`` (no I/O besides a
    path check)."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> VideoFile:
        return VideoFile(self._filepath)

    def _save(self, data: None) -> None:
        raise DatasetError(f"{self._filepath}: user videos are read-only inputs")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
