"""Append-only JSONL cache of finished model/judge calls.

One line per finished call: ``{"key": <sha256>, ...record}``. Appends are written with a
single ``write`` on an ``O_APPEND`` descriptor and fsync'd before :meth:`JsonlCache.put`
returns (concurrent puts share one write + fsync: group commit), so a killed run loses at most
the calls still in flight. Loading tolerates a torn last line (a write cut by a kill)
and ignores it; the next append first terminates that line so it never glues onto a record.
When a key appears twice (two concurrent runs), the last record wins.

Nodes get a :class:`JsonlCache` handle through the catalog
(:class:`evads_kedro.datasets.jsonl_cache.JsonlCacheDataset`), look
keys up before calling a model and append right after each call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON-serialisable object (sorted keys, UTF-8, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JsonlCache:
    """Key → record store backed by an append-only JSONL file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._enqueued = 0  # sequence number of the last queued line
        self._durable = 0  # every line up to this sequence number is fsync'd
        self._writing = False
        self._failed: list[tuple[int, int, BaseException]] = []
        self._records: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        self.bad_lines = 0
        self._needs_newline = False
        self.reload()

    def reload(self) -> None:
        """(Re)read the file; skip a torn last line and count undecodable lines."""
        self._records.clear()
        self.torn_lines = self.bad_lines = 0
        self._needs_newline = False
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            self._needs_newline = True
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            last = i == len(lines) - 1  # no newline after it: possibly torn
            try:
                rec = json.loads(line)
                key = rec["key"]
            except (ValueError, KeyError, TypeError):
                if last:
                    self.torn_lines += 1
                else:
                    self.bad_lines += 1
                continue
            self._records[key] = rec
        if self.torn_lines or self.bad_lines:
            logger.warning("%s: ignored %d torn and %d undecodable line(s)", self.path,
                           self.torn_lines, self.bad_lines)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def put(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` under ``key`` durably (write + fsync) and remember it.

        Group commit: concurrent callers (worker threads) queue their lines; whichever is free
        writes every queued line with one ``write`` and one ``fsync``, and each caller returns
        only once its own line is on disk. One fsync per call would cap a batch at ~1/fsync
        calls per second (~170/s at 6 ms)."""
        rec = {"key": key, **{k: v for k, v in record.items() if k != "key"}}
        line = (json.dumps(rec, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._cond:
            self._pending.append(line)
            self._enqueued += 1
            mine = self._enqueued
            while self._durable < mine:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                batch, self._pending = self._pending, []
                first, last = self._durable + 1, self._enqueued
                self._cond.release()
                error: BaseException | None = None
                try:
                    self._write(b"".join(batch))
                except BaseException as exc:  # reported to every caller of this batch
                    error = exc
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._durable = last
                    if error is not None:
                        self._failed.append((first, last, error))
                    self._cond.notify_all()
            for first, last_seq, exc in self._failed:
                if first <= mine <= last_seq:
                    raise OSError(f"cache append to {self.path} failed: {exc}") from exc
            self._records[key] = rec
        return rec

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if self._needs_newline:
                data = b"\n" + data
                self._needs_newline = False
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
