"""Per-video fan-out: run one function over many items in-process, in a local process pool or
on a Dask distributed cluster, chosen by a parameter block::

    executor: {kind: inprocess | process_pool | dask, workers: 2, scheduler_address: local,
               threads_per_worker: 1}

Contract of every executor (:meth:`Executor.imap`): ``fn`` is a module-level function (it is
pickled by reference), each item is passed as ``fn(item)``, and the results come back as
``(index, result)`` pairs *as they complete* (in order in-process), so a generator node can save
each video as soon as it is done. At most ``2 * workers`` items are in flight, so memory stays
bounded on 100k videos. An exception raised by ``fn`` propagates to the caller: per-video
failures must be caught inside ``fn`` and returned as data (a failure record); what escapes is
a configuration error that stops the run.

Models are loaded once per worker process, not per video: the backend builders
(``build_backend`` of ingestion, ``build_encoder``) cache per process and parameter set, and the
pool / cluster is kept for the whole Python process (one per distinct parameter block), so the
processes, and the models in them, serve every node of a run. :func:`shutdown_executors` (also
run at exit) closes them.

``dask`` with ``scheduler_address: local`` starts a ``LocalCluster`` of ``workers`` processes
with ``threads_per_worker`` threads each; any other address (``tcp://host:8786``) connects to a
running scheduler (``dask scheduler`` + ``dask worker --nthreads 1 tcp://host:8786``; the
workers need this package installed and the same paths to the videos and data).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

KINDS = ("inprocess", "process_pool", "dask")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
DEFAULTS: dict[str, Any] = {"kind": "inprocess", "workers": 2, "scheduler_address": "local",
                            "threads_per_worker": 1}


def executor_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The executor block completed with :data:`DEFAULTS`; raises ``ValueError`` naming the
    bad key and its allowed values."""
    p = {**DEFAULTS, **{k: v for k, v in (params or {}).items() if v is not None}}
    unknown = set(p) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"executor: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    if p["kind"] not in KINDS:
        raise ValueError(f"executor.kind {p['kind']!r}: use one of {', '.join(KINDS)}")
    for key in ("workers", "threads_per_worker"):
        if int(p[key]) < 1:
            raise ValueError(f"executor.{key} must be >= 1, got {p[key]!r}")
        p[key] = int(p[key])
    p["scheduler_address"] = str(p["scheduler_address"] or "local")
    return p


def limit_threads(n: int | None) -> None:
    """Cap this process's compute threads (BLAS/OpenMP env for libraries loaded later, and
    torch's intra-op pool if torch is already loaded). ``None`` leaves them alone."""
    if not n:
        return
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(int(n))
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != int(n):
        torch.set_num_threads(int(n))


class Executor(ABC):
    """Maps a function over items; see the module docstring for the contract."""

    kind: str = "abstract"
    #: compute threads each worker may use (None: library defaults, in-process)
    threads: int | None = None

    @abstractmethod
    def imap(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(items[index]))`` for every item, as each completes."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op in-process
        """Release workers (no-op in-process)."""

    def describe(self) -> str:
        return self.kind


class InProcessExecutor(Executor):
    """Calls ``fn`` in the calling process, one item after the other (the default)."""

    kind = "inprocess"

    def imap(self, fn, items):
        for i, item in enumerate(items):
            yield i, fn(item)


def _windowed(submit: Callable[[int], Any], n: int, window: int,
              wait_one: Callable[[set], tuple[Any, set]], result: Callable[[Any], Any],
              index_of: dict) -> Iterator[tuple[int, Any]]:
    """Keep at most ``window`` futures pending; yield results as they complete."""
    pending: set = set()
    nxt = 0
    try:
        while nxt < n or pending:
            while nxt < n and len(pending) < window:
                fut = submit(nxt)
                index_of[fut] = nxt
                pending.add(fut)
                nxt += 1
            done, pending = wait_one(pending)
            for fut in done:
                yield index_of.pop(fut), result(fut)
    finally:
        for fut in pending:  # the consumer stopped early (error, generator closed)
            fut.cancel()


class ProcessPoolExecutor(Executor):
    """A local pool of ``workers`` spawned processes (spawn: no forked copies of loaded models
    or of the parent's threads), each capped at ``threads_per_worker`` compute threads."""

    kind = "process_pool"

    def __init__(self, workers: int, threads_per_worker: int | None = 1) -> None:
        import concurrent.futures as cf
        import multiprocessing as mp

        self.workers, self.threads = int(workers), threads_per_worker
        self._pool = cf.ProcessPoolExecutor(max_workers=self.workers,
                                            mp_context=mp.get_context("spawn"),
                                            initializer=limit_threads,
                                            initargs=(threads_per_worker,))

    def imap(self, fn, items):
        import concurrent.futures as cf

        def wait_one(pending):
            done, rest = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            return done, rest

        yield from _windowed(lambda i: self._pool.submit(fn, items[i]), len(items),
                             2 * self.workers, wait_one, lambda f: f.result(), {})

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def describe(self) -> str:
        return f"process_pool({self.workers} workers x {self.threads} threads)"


class DaskExecutor(Executor):
    """Runs items on a ``dask.distributed`` cluster: a ``LocalCluster`` of worker processes
    when ``scheduler_address`` is ``local``, else the scheduler at that address."""

    kind = "dask"

    def __init__(self, scheduler_address: str = "local", workers: int = 2,
                 threads_per_worker: int | None = 1) -> None:
        from distributed import Client, LocalCluster

        self.threads = threads_per_worker
        self.address = scheduler_address
        self._cluster = None
        if scheduler_address == "local":
            env = {v: str(threads_per_worker) for v in THREAD_ENV_VARS} if threads_per_worker \
                else {}
            self._cluster = LocalCluster(n_workers=int(workers),
                                         threads_per_worker=int(threads_per_worker or 1),
                                         processes=True, dashboard_address=None,
                                         env=env, silence_logs=logging.WARNING)
            self._client = Client(self._cluster)
        else:
            self._client = Client(scheduler_address)
        if threads_per_worker:
            self._client.run(limit_threads, threads_per_worker)
        self.workers = len(self._client.scheduler_info().get("workers", {})) or int(workers)
        logger.info("Dask executor: %s", self.describe())

    @property
    def client(self):
        return self._client

    def imap(self, fn, items):
        from distributed import wait

        def wait_one(pending):
            res = wait(list(pending), return_when="FIRST_COMPLETED")
            return set(res.done), set(res.not_done)

        def result(fut):
            try:
                return fut.result()
            finally:
                fut.release()

        yield from _windowed(lambda i: self._client.submit(fn, items[i], pure=False),
                             len(items), 2 * max(1, self.workers), wait_one, result, {})

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def describe(self) -> str:
        where = "LocalCluster" if self._cluster is not None else self.address
        return f"dask({where}, {self.workers} workers x {self.threads} threads)"


_EXECUTORS: dict[str, Executor] = {}
_LOCK = threading.Lock()


def get_executor(params: Mapping[str, Any] | None) -> Executor:
    """The executor for the ``executor`` parameter block, created once per process and block
    (so worker processes, and the models they loaded, serve every node of a run)."""
    p = executor_params(params)
    if p["kind"] == "inprocess":
        return InProcessExecutor()
    key = json.dumps(p, sort_keys=True)
    with _LOCK:
        if key not in _EXECUTORS:
            if p["kind"] == "process_pool":
                _EXECUTORS[key] = ProcessPoolExecutor(p["workers"], p["threads_per_worker"])
            else:
                _EXECUTORS[key] = DaskExecutor(p["scheduler_address"], p["workers"],
                                               p["threads_per_worker"])
        return _EXECUTORS[key]


def longest_first(items: Sequence[Any], cost: Callable[[Any], float]) -> list[int]:
    """Indices of ``items`` by decreasing ``cost`` (ties keep their order): the submission
    order of longest-processing-time-first scheduling, so no long video starts last and keeps
    one worker busy while the others idle."""
    return sorted(range(len(items)), key=lambda i: -float(cost(items[i])))


def fan_out(params: Mapping[str, Any] | None, fn: Callable[[Any], Any],
            items: Sequence[Any], cost: Callable[[Any], float] | None = None
            ) -> Iterator[tuple[int, Any]]:
    """``get_executor(params).imap(fn, items)``; starts no pool or cluster when there is
    nothing to do (an incremental rerun), and drops a pool or cluster that failed (a crashed
    worker breaks a process pool for good) so the next node gets a fresh one. With ``cost``
    (e.g. a video's duration), a pool or cluster gets the items longest first
    (:func:`longest_first`); the yielded indices are still those of ``items``."""
    if not items:
        return
    ex = get_executor(params)
    order = (longest_first(items, cost) if cost is not None and ex.kind != "inprocess"
             else list(range(len(items))))
    try:
        for i, result in ex.imap(fn, [items[i] for i in order]):
            yield order[i], result
    except Exception:
        if ex.kind != "inprocess":
            discard_executor(params)
        raise


def discard_executor(params: Mapping[str, Any] | None) -> None:
    """Close and forget one cached executor (after a worker crash broke it)."""
    key = json.dumps(executor_params(params), sort_keys=True)
    with _LOCK:
        ex = _EXECUTORS.pop(key, None)
    if ex is not None:
        try:
            ex.close()
        except Exception as exc:  # noqa: BLE001 - already broken
            logger.debug("closing a broken executor: %s", exc)


def shutdown_executors() -> None:
    """Close every pool / cluster this process started (run at interpreter exit)."""
    with _LOCK:
        items = list(_EXECUTORS.values())
        _EXECUTORS.clear()
    for ex in items:
        try:
            ex.close()
        except Exception as exc:  # noqa: BLE001 - best effort at exit
            logger.debug("closing %s: %s", ex.describe(), exc)


atexit.register(shutdown_executors)
