"""One caching factory for every backend: build once per process per distinct parameter set.

Backends (chat models, ASR, OCR readers, frame encoders, plugin classes) are expensive to build
and safe to share, so each kind keeps one :class:`BuildOnce`; the key is the parameters as
canonical JSON, so two mappings with equal content share one instance.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def params_key(params: Any) -> str:
    """Canonical JSON of ``params`` (sorted keys; non-JSON values by ``str``)."""
    return json.dumps(params, sort_keys=True, default=str)


class BuildOnce(Generic[T]):
    """A per-process cache of built objects of one kind, keyed by their parameters.

    ``get(params, build)`` returns the cached object for ``params`` or calls ``build()`` once
    (under a re-entrant lock, so a build may itself use another BuildOnce, and two threads never
    build the same object twice); a failed build caches nothing."""

    def __init__(self, kind: str):
        self.kind = kind
        self._built: dict[Hashable, T] = {}
        self._lock = threading.RLock()

    def get(self, params: Any, build: Callable[[], T]) -> T:
        key = params if isinstance(params, str) else params_key(params)
        with self._lock:
            if key not in self._built:
                self._built[key] = build()
            return self._built[key]

    def __len__(self) -> int:
        return len(self._built)

    def clear(self) -> None:
        """Forget every built object (tests; after changing environment variables)."""
        with self._lock:
            self._built.clear()
