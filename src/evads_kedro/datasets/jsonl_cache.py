"""Catalog dataset of an append-only call cache (:class:`~evads_kedro.calls.cache.JsonlCache`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from evads_kedro.calls.cache import JsonlCache


class JsonlCacheDataset(AbstractDataset[None, JsonlCache]):
    """Catalog entry for a :class:`JsonlCache`: loading returns the live handle.

    The nodes append through the handle while they run (that is the point: persistence per
    finished call); saving a whole cache is therefore refused.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> JsonlCache:
        return JsonlCache(self._filepath)

    def _save(self, data: Any) -> None:
        raise DatasetError(f"{self._filepath} is an append-only cache: nodes append through "
                           "the handle they load, they never save it whole")

    def _exists(self) -> bool:
        return True  # an absent file is an empty cache

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
