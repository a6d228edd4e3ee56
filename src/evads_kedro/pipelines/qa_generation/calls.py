"""Run a batch of cached chat calls with a progress bar (items / cached / errors).

A thin layer over the evaluation runner (:func:`~evads_kedro.calls.runner.run_jobs`):
finished calls go to the pipeline's append-only JSONL cache (or, with ``use_cache: false``, a
throw-away in-memory one), a failed call is a ``failed`` record with its reason and never stops
the batch, and the backends are closed on the event loop that used them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evads_kedro.calls.runner import Job, run_jobs, run_sync


class MemoryCache:
    """The subset of :class:`JsonlCache` the runner uses, kept in memory."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def put(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        rec = {"key": key, **record}
        self._records[key] = rec
        return rec


def run_calls(jobs: Sequence[Job], cache, *, concurrency: int, desc: str,
              backends: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Results in job order; each has ``status`` (ok | invalid | failed) and ``cached``."""
    if not jobs:
        return []
    store = cache if cache is not None else MemoryCache()

    async def main():
        try:
            results, _ = await run_jobs(jobs, store, concurrency=max(1, int(concurrency)),
                                        desc=desc)
            return results
        finally:
            for b in backends:
                await b.aclose()

    return run_sync(main())
