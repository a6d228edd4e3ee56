"""``PartitionedDataset`` for local folders of per-video artefacts that a rerun keeps adding to.

Differences from ``partitions.PartitionedDataset`` (which it extends, so every catalog option
still applies):

* files or folders whose name starts with ``.`` are not partitions: temp files of atomic
  writers (``.tmp-*``), ``.gitkeep``, ``.DS_Store``, macOS ``._*`` resource forks;
* an empty or missing folder loads as ``{}`` instead of raising (first run, nothing done yet);
* the first save of a run removes stale temp files (``.tmp-*``) that a killed run left behind,
  when they are older than this dataset object (i.e. than the current run). Two runs writing
  to the same folder at the same time are not supported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedro_datasets.partitions import PartitionedDataset

from evads_kedro.datasets.atomic import TMP_PREFIX

logger = logging.getLogger(__name__)


class PartitionedFolderDataset(PartitionedDataset):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._created = time.time()
        self._swept = False

    def _root(self) -> str:
        return self._filesystem._strip_protocol(self._normalized_path).rstrip(self._sep)

    def _list_partitions(self) -> list[str]:
        if self._cached_partitions is not None:
            return self._cached_partitions
        root = self._root()
        parts = super()._list_partitions()
        self._cached_partitions = [
            p for p in parts
            if not any(seg.startswith(".") for seg in p[len(root):].split(self._sep) if seg)
        ]
        return self._cached_partitions

    def load(self) -> dict[str, Callable[[], Any]]:
        if self._protocol == "file" and not Path(self._root()).exists():
            return {}
        self._invalidate_caches()
        if not self._list_partitions():
            return {}
        return super().load()

    def save(self, data: dict[str, Any]) -> None:
        if not self._swept:
            self._sweep_stale_temp_files()
            self._swept = True
        super().save(data)

    def _sweep_stale_temp_files(self) -> None:
        if self._protocol != "file":
            return
        root = Path(self._root())
        if not root.is_dir():
            return
        for tmp in root.rglob(f"{TMP_PREFIX}*"):
            try:
                if tmp.is_file() and tmp.stat().st_mtime < self._created:
                    tmp.unlink()
                    logger.info("removed %s left by an interrupted run", tmp)
            except OSError:  # raced with another cleaner: fine
                pass
