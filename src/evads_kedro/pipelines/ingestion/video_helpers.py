"""Helpers of the video half of ``ingestion``: names, keys, backends, progress.

* Video ids are file stems; :func:`check_name` refuses names that cannot safely become
  partition file names.
* Every per-video artefact records a *key*: the video's sha256 plus a hash of the parameters
  (and code version) that produced it (:func:`stage_key`). A rerun skips a video whose stored
  key equals the current one, so changing OCR parameters redoes OCR only, editing a video
  (new content) redoes everything for it, and moving to a GPU (``device``) redoes nothing.
* :func:`build_backend` builds the ASR / OCR backend named by the parameters. Besides the
  built-in names, ``backend: "package.module:ClassName"`` instantiates a user class with the
  other parameters as keyword arguments (tests plug deterministic fakes in this way; users can
  plug in a cloud OCR the same way).
* :class:`StageProgress` is one tqdm bar per stage (videos/s) plus the stage's counters.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evads_kedro.backends.ocr import STACK_KEYS

logger = logging.getLogger(__name__)

#: Bump a stage's version when its output for the same input and parameters changes.
STAGE_VERSIONS = {"decode": 1, "ocr": 1, "asr": 1}
#: Parameters that choose *where* or *how fast* a model runs, not what it outputs.
NON_SEMANTIC_KEYS = frozenset({"device", "cpu_threads", "threads", "progress"})
MAX_ID_BYTES = 180  # leaves room for suffixes and temp-file prefixes under the 255-byte limit


# ------------------------------------------------------------------------------------ names
def check_name(partition_id: str) -> str | None:
    """Why ``partition_id`` (a path relative to the video root) is unsafe as a video, or None.

    Non-ASCII, emoji and spaces are fine; refused: undecodable bytes, control characters,
    backslashes, hidden names and over-long stems.
    """
    name = partition_id.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    try:
        partition_id.encode("utf-8")
    except UnicodeEncodeError:
        return "unsafe file name: not valid UTF-8 (rename the file)"
    bad = [c for c in partition_id if unicodedata.category(c) == "Cc"]
    if bad:
        return f"unsafe file name: contains control character {bad[0]!r} (rename the file)"
    if "\\" in partition_id:  # fsspec partition ids use "/" on every OS
        return "unsafe file name: contains a backslash (rename the file)"
    if not stem.strip():
        return "unsafe file name: empty name before the extension"
    if stem.startswith("."):
        return "unsafe file name: hidden file"
    if len(stem.encode("utf-8")) > MAX_ID_BYTES:
        return f"unsafe file name: longer than {MAX_ID_BYTES} bytes (rename the file)"
    return None


def video_id_of(partition_id: str) -> str:
    """The video id of a file: its name without the extension (``ads/x/798.mp4`` -> ``798``)."""
    name = partition_id.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def extension_of(partition_id: str) -> str:
    name = partition_id.rsplit("/", 1)[-1]
    return ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""


# ------------------------------------------------------------------------------------- keys
def semantic(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` without the keys that do not change results (device, threads)."""
    return {k: v for k, v in sorted((params or {}).items()) if k not in NON_SEMANTIC_KEYS}


def params_hash(stage: str, params: Mapping[str, Any]) -> str:
    """16 hex digits identifying the stage version and its semantic parameters."""
    blob = json.dumps({"stage": stage, "version": STAGE_VERSIONS[stage],
                       "params": semantic(params)}, sort_keys=True, ensure_ascii=False,
                      default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def stage_key(stage: str, sha256: str, params: Mapping[str, Any]) -> str:
    """``<content sha256>:<params hash>``: what a stored artefact must match to be reused."""
    return f"{sha256}:{params_hash(stage, params)}"


def decode_params(p: Mapping[str, Any]) -> dict[str, Any]:
    # the decode method does not change the frames (both give the frame shown at each t)
    return {"fps": float(p.get("fps", 1.0)), "max_side": p.get("frame_max_side")}


def ocr_params(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"ocr": dict(p.get("ocr") or {}), "frames": decode_params(p)}


def asr_params(p: Mapping[str, Any]) -> dict[str, Any]:
    return dict(p.get("asr") or {})


# --------------------------------------------------------------------------------- backends
_CUSTOM: dict[str, Any] = {}
_CUSTOM_LOCK = threading.Lock()


def build_backend(kind: str, params: Mapping[str, Any]) -> Any:
    """The ``asr`` or ``ocr`` backend for ``params`` (built once per process and parameters)."""
    params = dict(params or {})
    name = str(params.get("backend", ""))
    if ":" in name:
        kwargs = {k: v for k, v in params.items() if k not in ("backend", *STACK_KEYS)}
        key = json.dumps([kind, name, kwargs], sort_keys=True, default=str)
        with _CUSTOM_LOCK:
            if key not in _CUSTOM:
                module, _, cls = name.partition(":")
                try:
                    factory = getattr(importlib.import_module(module), cls)
                except (ImportError, AttributeError) as exc:
                    raise ValueError(f"{kind}.backend {name!r}: cannot import {cls} from "
                                     f"{module} ({exc})") from exc
                _CUSTOM[key] = factory(**kwargs)
            return _CUSTOM[key]
    if kind == "asr":
        from evads_kedro.backends.asr import build_asr

        return build_asr(params)
    if kind == "ocr":
        from evads_kedro.backends.ocr import build_ocr

        return build_ocr(params)
    raise ValueError(f"unknown backend kind {kind!r}")


# --------------------------------------------------------------------------------- progress
@dataclass
class StageStats:
    """Counters of one stage in one run (compute time excludes skipped videos)."""

    stage: str
    todo: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    video_s: float = 0.0
    compute_s: float = 0.0
    setup_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "todo": self.todo, "done": self.done,
                "skipped": self.skipped, "failed": self.failed,
                "video_s": round(self.video_s, 3), "compute_s": round(self.compute_s, 3),
                "setup_s": round(self.setup_s, 3), **self.extra}


class StageProgress:
    """A tqdm bar (unit ``video``, so the rate reads videos/s) over the videos a stage must
    process, with per-video timing into :class:`StageStats`."""

    def __init__(self, stage: str, total: int, skipped: int, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.stats = StageStats(stage, todo=total, skipped=skipped)
        self._bar = tqdm(total=total, desc=f"ingestion {stage}", unit="video",
                         disable=not enabled or total == 0, leave=True, dynamic_ncols=True)
        self._t0 = time.perf_counter()

    def done(self, seconds: float, video_s: float, ok: bool) -> None:
        s = self.stats
        s.compute_s += seconds
        if ok:
            s.done += 1
            s.video_s += video_s
        else:
            s.failed += 1
        self._bar.update(1)
        self._bar.set_postfix(failed=s.failed, refresh=False)

    def close(self) -> dict[str, Any]:
        self._bar.close()
        self.stats.extra["wall_s"] = round(time.perf_counter() - self._t0, 3)
        return self.stats.as_dict()
