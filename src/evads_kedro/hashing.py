"""File identity: the sha256 of a file's bytes, streamed, memoised per process.

The one ``sha256_file`` of the project (weights, videos, rendered samples). The memo key is
(resolved path, inode, size, mtime_ns): a file replaced by an atomic rename or rewritten gets
a new key; :func:`forget_hashes` (or ``memo=False``) forces a full re-read.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_BLOCK = 1 << 22
_MEMO: dict[tuple[str, int, int, int], str] = {}
_LOCK = threading.Lock()


def sha256_file(path: Path | str, *, memo: bool = True) -> str:
    """Hex sha256 of the file at ``path`` (constant memory; memoised unless ``memo=False``)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if memo:
        with _LOCK:
            if key in _MEMO:
                return _MEMO[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_BLOCK):
            h.update(chunk)
    digest = h.hexdigest()
    with _LOCK:
        _MEMO[key] = digest
    return digest


def forget_hashes() -> None:
    """Drop the memo: the next :func:`sha256_file` of every file re-reads it."""
    with _LOCK:
        _MEMO.clear()
