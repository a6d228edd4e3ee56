"""Per-video frame embeddings on disk (``.npz``).

``EmbeddingsDataset`` stores ``{"embeddings": (T, D) float32, "timestamps": (T,) float64,
"meta": dict}`` as one ``.npz`` (meta as JSON text), written atomically. Used inside a
``PartitionedDataset`` keyed ``<encoder_id>/<dataset>/<video_id>``; ``meta["key"]`` records what
the embeddings were computed from (frame or video content hash, sampling parameters), so the
density pipeline recomputes a video only when its content or the encoder changed. Saves are
atomic (``evads_kedro.datasets.atomic.write_atomic``); use it inside a
``PartitionedFolderDataset``, which hides the temp files and loads an empty folder as ``{}``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from evads_kedro.datasets.atomic import write_atomic


class EmbeddingsDataset(AbstractDataset[dict, dict]):
    """One video's frame embeddings + timestamps + meta in a ``.npz`` file."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> dict[str, Any]:
        try:
            with np.load(self._filepath, allow_pickle=False) as z:
                return {"embeddings": z["embeddings"].astype(np.float32, copy=False),
                        "timestamps": z["timestamps"].astype(np.float64, copy=False),
                        "meta": json.loads(str(z["meta"]))}
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(f"corrupt embedding file {self._filepath}: {exc}; delete it, the "
                               "density pipeline recomputes it") from exc

    def _save(self, data: dict[str, Any]) -> None:
        emb = np.asarray(data["embeddings"], dtype=np.float32)
        ts = np.asarray(data["timestamps"], dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != ts.shape[0]:
            raise DatasetError(f"{self._filepath}: embeddings {emb.shape} do not match "
                               f"{ts.shape[0]} timestamps")
        buf = io.BytesIO()
        np.savez(buf, embeddings=emb, timestamps=ts,
                 meta=np.asarray(json.dumps(data.get("meta", {}), ensure_ascii=False, sort_keys=True)))
        write_atomic(self._filepath, buf.getvalue())

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
