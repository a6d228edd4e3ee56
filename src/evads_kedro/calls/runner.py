"""Run many cached async calls: cache lookup, bounded concurrency per group, durable appends.

A :class:`Job` is one model or judge call identified by its cache key. Cached jobs are
answered from the :class:`~evads_kedro.calls.cache.JsonlCache` without any call;
the others run concurrently (at most ``concurrency[group]`` at a time per group, e.g. per model
under test) and each finished result is appended to the cache the moment it arrives. A job that
raises is recorded as ``failed`` with its reason and never stops the batch; failures are not
cached (a rerun retries them) unless ``cache_failures``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evads_kedro.backends.llm import ChatError
from evads_kedro.calls.cache import JsonlCache

logger = logging.getLogger(__name__)

CACHEABLE = ("ok", "invalid")


@dataclass
class Job:
    key: str
    run: Callable[[], Awaitable[dict[str, Any]]]
    group: str = "default"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunStats:
    total: int = 0
    cached: int = 0
    called: int = 0
    ok: int = 0
    invalid: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def calls_per_s(self) -> float:
        return self.called / self.seconds if self.seconds > 0 else 0.0


def run_sync(coro: Awaitable[Any]) -> Any:
    """``asyncio.run`` that also works when the caller already runs an event loop (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="evads-eval-loop")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


async def run_jobs(
    jobs: Sequence[Job],
    cache: JsonlCache,
    *,
    concurrency: Mapping[str, int] | int = 4,
    desc: str = "calls",
    progress: bool = True,
    cache_failures: bool = False,
) -> tuple[list[dict[str, Any]], RunStats]:
    """Results in job order (each a dict with ``key``, ``status``, ``cached`` ...) and stats."""
    stats = RunStats(total=len(jobs))
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    todo: list[int] = []
    for i, job in enumerate(jobs):
        hit = cache.get(job.key)
        if hit is not None:
            results[i] = {**hit, "cached": True}
            stats.cached += 1
            stats.ok += hit.get("status") == "ok"
            stats.invalid += hit.get("status") == "invalid"
        else:
            todo.append(i)
    # The same key twice in one batch (e.g. two model names for one model): call once.
    first_of: dict[str, int] = {}
    dup_of: dict[int, int] = {}
    unique: list[int] = []
    for i in todo:
        k = jobs[i].key
        if k in first_of:
            dup_of[i] = first_of[k]
        else:
            first_of[k] = i
            unique.append(i)

    def limit(group: str) -> int:
        if isinstance(concurrency, int):
            return concurrency
        return int(concurrency.get(group, concurrency.get("default", 4)))

    sems = {g: asyncio.Semaphore(max(1, limit(g))) for g in {jobs[i].group for i in unique}}
    bar = None
    if progress and unique:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(unique), desc=desc, unit="call", dynamic_ncols=True,
                   initial=0, smoothing=0.1)
        if stats.cached:
            bar.write(f"{desc}: {stats.cached} of {stats.total} answered from the cache")

    t0 = time.perf_counter()

    async def one(i: int) -> None:
        job = jobs[i]
        # the slot bounds calls in flight to the model, not disk writes: it is released
        # before the durable append, so the next call starts while this one is persisted
        async with sems[job.group]:
            started = time.perf_counter()
            try:
                rec = await job.run()
                status = rec.get("status", "ok")
            except ChatError as exc:
                rec = {"status": "failed", "error": str(exc), "error_reason": exc.reason,
                       "attempts": exc.attempts}
                status = "failed"
            except Exception as exc:  # one bad item never kills the batch
                logger.exception("%s: job %s crashed", desc, job.key[:12])
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                       "error_reason": "exception"}
                status = "failed"
            rec.setdefault("wall_s", round(time.perf_counter() - started, 4))
        rec["finished_utc"] = _now()
        rec.update({k: v for k, v in job.meta.items() if k not in rec})
        stored = None
        if status in CACHEABLE or cache_failures:
            try:
                stored = await asyncio.to_thread(cache.put, job.key, rec)
            except OSError as exc:  # the result stands; only its persistence failed
                logger.error("%s: %s", desc, exc)
                rec["cache_error"] = str(exc)
        rec = stored if stored is not None else {"key": job.key, **rec}
        results[i] = {**rec, "cached": False}
        stats.called += 1
        stats.ok += status == "ok"
        stats.invalid += status == "invalid"
        stats.failed += status == "failed"
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ok=stats.ok, invalid=stats.invalid, failed=stats.failed,
                            refresh=False)

    try:
        await asyncio.gather(*(one(i) for i in unique))
    finally:
        if bar is not None:
            bar.close()
    stats.seconds = time.perf_counter() - t0
    for i, j in dup_of.items():
        results[i] = {**results[j], "cached": True}
        stats.cached += 1
        status = results[j].get("status")
        stats.ok += status == "ok"
        stats.invalid += status == "invalid"
        stats.failed += status == "failed"
    logger.info("%s: %d items, %d from cache, %d called (%.1f calls/s): %d ok, %d invalid, "
                "%d failed", desc, stats.total, stats.cached, stats.called, stats.calls_per_s,
                stats.ok, stats.invalid, stats.failed)
    return [r for r in results if r is not None], stats
