"""``FolderDataset``: a directory as a catalog entry (model folders, LoRA adapters).

Saving takes the path of a directory a node produced (``save_pretrained`` output) and moves it
into place atomically (rename over a sibling temp copy: a reader never sees half a folder);
scratch folders made with :func:`scratch_dir` are removed once copied. Loading returns the folder's path, so the consumer decides how to load it (base model, adapter,
processor). kedro-datasets has no directory dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

SCRATCH_PREFIX = "evads-rl-"


def scratch_dir(tag: str) -> Path:
    """A fresh temp folder for a node's output; :class:`FolderDataset` removes it once saved."""
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{tag}-"))


class FolderDataset(AbstractDataset[str, str]):
    def __init__(self, filepath: str, required_file: str | None = None,
                 metadata: dict[str, Any] | None = None):
        """``required_file`` (e.g. ``adapter_config.json``) must exist in a saved folder."""
        self._filepath = Path(filepath)
        self._required = required_file
        self.metadata = metadata

    def _load(self) -> str:
        if not self._filepath.is_dir():
            raise DatasetError(f"{self._filepath} does not exist: run the node that produces it "
                               "(e.g. the SFT stage before GRPO)")
        return str(self._filepath.resolve())

    def _save(self, data: str | os.PathLike) -> None:
        if os.environ.get("RANK", "0") != "0":
            return  # multi-process training (accelerate/torchrun): rank 0 writes the folder
        src = Path(data)
        if not src.is_dir():
            raise DatasetError(f"FolderDataset saves a directory, got {src!s}")
        if self._required and not (src / self._required).is_file():
            raise DatasetError(f"{src} lacks {self._required}")
        if src.resolve() == self._filepath.resolve():
            return
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._filepath.with_name(f".{self._filepath.name}.{uuid.uuid4().hex[:8]}.tmp")
        shutil.copytree(src, tmp)
        old = None
        if self._filepath.exists():
            old = self._filepath.with_name(f".{self._filepath.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(self._filepath, old)
        os.replace(tmp, self._filepath)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if src.name.startswith(SCRATCH_PREFIX) and src.resolve().is_relative_to(
                Path(tempfile.gettempdir()).resolve()):
            shutil.rmtree(src, ignore_errors=True)  # a node's scratch folder, now copied

    def _exists(self) -> bool:
        return self._filepath.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "required_file": self._required}
