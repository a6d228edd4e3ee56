"""Kedro dataset for :class:`~evads_kedro.frames.FrameStack`: one zip of JPEGs per video.

Used as the ``dataset`` of a ``partitions.PartitionedDataset`` (one partition per video id).
Saves are atomic (temp file + ``os.replace``), so a killed run never leaves a half zip.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError
from PIL import Image

from evads_kedro.frames import FrameStack

INDEX = "index.json"


class FramesDataset(AbstractDataset[FrameStack, FrameStack]):
    """A :class:`FrameStack` stored as ``index.json`` + ``000000.jpg``… in a zip file."""

    def __init__(self, filepath: str, quality: int = 95, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self._quality = int(quality)
        self.metadata = metadata

    def _load(self) -> FrameStack:
        try:
            with zipfile.ZipFile(self._filepath) as zf:
                index = json.loads(zf.read(INDEX))
                frames = [np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB"))
                          for name in index["files"]]
        except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise DatasetError(f"corrupt frame stack {self._filepath}: {exc}; delete it and "
                               "rerun ingestion to decode the video again") from exc
        return FrameStack(index["video_id"], index["timestamps"], frames, index.get("meta", {}))

    def _save(self, data: FrameStack) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._filepath.parent, prefix=".tmp-", suffix=".zip")
        os.close(fd)
        try:
            names = [f"{i:06d}.jpg" for i in range(len(data))]
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                for name, frame in zip(names, data.frames, strict=True):
                    buf = io.BytesIO()
                    Image.fromarray(frame).save(buf, format="JPEG", quality=self._quality)
                    zf.writestr(name, buf.getvalue())
                index = {"video_id": data.video_id, "timestamps": list(map(float, data.timestamps)),
                         "files": names, "meta": data.meta}
                zf.writestr(INDEX, json.dumps(index, ensure_ascii=False))
            os.replace(tmp, self._filepath)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "quality": self._quality}
