"""Nodes of the video half of ``ingestion``: raw ads -> probes -> frames -> OCR / ASR -> timelines.

Stages and their artefacts (all through the catalog, see ``catalog_ingestion.yml``):

==========  =================================  =============================================
stage       per video (partition = video id)    node output
==========  =================================  =============================================
probe       -                                   ``video_probes`` (one row per file)
decode      ``frames/<id>.zip`` + record        ``frames``, ``decode_records``
ocr         record with per-frame texts         ``ocr_records``
asr         record with words + text/second     ``asr_records``
timeline    ``timelines/<id>.txt``              ``video_timelines``, ``ingested_videos``,
                                                ``timeline_texts``, ``ingestion_quarantine``
==========  =================================  =============================================

Incremental and resumable: a stage skips a video whose stored record carries the current key
(content sha256 + hash of the stage's parameters, :mod:`.stages`). The decode / OCR / ASR nodes
are *generator* nodes: Kedro saves each yielded chunk (one video) at once, every per-video file
is written atomically (temp + ``os.replace``), and the record is written after the artefact it
describes, so a run killed at any point keeps every finished video and leaves no half file.

Failures never stop the batch: each video is processed inside try/except; a failure becomes a
record with ``status: failed`` and lands in ``ingestion_quarantine`` with its stage and reason.
Failed videos are not retried on a rerun unless their content or parameters change, or
``ingestion.retry_quarantined`` is true.

Fan-out: the per-video work of decode / OCR / ASR is a module-level task (:func:`decode_one`,
:func:`ocr_one`, :func:`transcribe_one`) run by the ``ingestion.executor``
(:mod:`evads_kedro.executors`: in-process, process pool or Dask). Deciding what to skip and
saving what comes back stay in the node, so the catalog datasets, incremental keys and
quarantine records are the same under every executor.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evads_kedro.executors import executor_params, fan_out, limit_threads
from evads_kedro.pipelines.ingestion.released import TIMELINE_COLUMNS, VIDEO_COLUMNS
from evads_kedro.pipelines.ingestion.video_helpers import (
    StageProgress,
    asr_params,
    build_backend,
    check_name,
    decode_params,
    extension_of,
    ocr_params,
    stage_key,
    video_id_of,
)
from evads_kedro.timeline import SecondRecord, Timeline, render_timeline

logger = logging.getLogger(__name__)

Partitions = Mapping[str, Callable[[], Any]]

PROBE_VERSION = 1
PROBE_COLUMNS = [
    "video_id", "file", "path", "extension", "status", "reason", "duplicate_of", "probe_error",
    "size_bytes", "mtime_ns", "sha256", "container", "duration_s", "declared_duration_s", "fps",
    "n_frames", "width", "height", "rotation", "display_width", "display_height", "video_codec",
    "pix_fmt", "audio_codecs", "n_audio_streams", "has_audio", "bit_rate", "probe_version",
    "probe_s",
]
QUARANTINE_COLUMNS = ["video_id", "file", "stage", "reason", "duplicate_of", "sha256",
                      "size_bytes", "path"]
INGESTED_EXTRA_COLUMNS = [
    "timeline_asr", "content_sha256", "file", "fps", "width", "height", "rotation", "has_audio",
    "n_frames_sampled", "category_source", "ocr_key", "asr_key",
    # decoding language of the speech, Whisper's probability for the language it detected
    # (null when the language was forced and never detected), how the language was chosen
    # (sidecar | forced | detected | mandarin_prior | retry | candidates) and, when guards
    # dropped every decoded segment, the guards and counts ("compression_ratio x2")
    "asr_language", "asr_language_probability", "asr_language_source", "asr_all_dropped",
]
INGESTED_COLUMNS = VIDEO_COLUMNS + INGESTED_EXTRA_COLUMNS
DEFAULT_CATEGORY = "其他"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    """Plain JSON types only (numpy scalars, tuples, paths -> their JSON equivalents)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# ------------------------------------------------------------------------------------ probe
def _py(value: Any) -> Any:
    """A table cell as a plain Python value (NA / NaN -> None, numpy scalars unwrapped)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _cached_probe(prev: pd.DataFrame | None, file: str, path: str, st) -> dict[str, Any] | None:
    """The previous run's probe of ``file`` if the file is unchanged (path, size, mtime)."""
    if prev is None or prev.empty or "file" not in prev:
        return None
    hit = prev[prev["file"] == file]
    if hit.empty:
        return None
    row = {k: _py(v) for k, v in hit.iloc[-1].to_dict().items()}
    same = (row.get("path") == path and row.get("size_bytes") == st.st_size
            and row.get("mtime_ns") == st.st_mtime_ns
            and row.get("probe_version") == PROBE_VERSION
            and not row.get("probe_error") and isinstance(row.get("sha256"), str))
    if not same:
        return None
    return {k: row.get(k) for k in PROBE_COLUMNS
            if k not in ("status", "reason", "duplicate_of", "probe_s")}


def probe_videos(
    raw_videos: Partitions, previous: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Discover every video under the video root and probe it (duration, fps, size, rotation,
    codecs, audio streams, sha256), then apply the batch rules: duration limits, duplicate
    content (the second name is quarantined as a duplicate of the first, in path order) and
    duplicate video ids. Returns one row per video file (``status`` ok / quarantined,
    ``reason``) and the stage's statistics.

    ``previous`` is the last run's table: a file whose path, size and mtime are unchanged is
    not hashed or probed again.
    """
    from evads_kedro.video import InvalidVideo, probe_video

    exts = {e.lower() if e.startswith(".") else "." + e.lower()
            for e in params.get("extensions", [".mp4", ".mov", ".mkv", ".webm", ".avi"])}
    files = sorted(raw_videos or {})
    candidates = [f for f in files if extension_of(f) in exts]
    ignored = len(files) - len(candidates)
    if not files:
        logger.warning("No files under ingestion.video_root (%s): nothing to ingest. Put ads "
                       "there or run with --params \"ingestion.video_root=/path/to/ads\".",
                       params.get("video_root"))
    elif ignored:
        logger.info("%d files under the video root are not videos (%s) and were ignored "
                    "(sidecars, notes...)", ignored, ", ".join(sorted(exts)))
    prev = previous if isinstance(previous, pd.DataFrame) and not previous.empty else None
    progress = StageProgress("probe", len(candidates), 0, bool(params.get("progress", True)))
    rows: list[dict[str, Any]] = []
    cached_files: set[str] = set()
    for file in candidates:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"video_id": video_id_of(file), "file": file,
                               "extension": extension_of(file), "probe_version": PROBE_VERSION}
        try:
            bad_name = check_name(file)
            handle = raw_videos[file]()
            path = Path(handle.path)
            row["path"] = str(path)
            if bad_name:
                raise InvalidVideo(bad_name)
            root = Path(str(path)[: -len(file)] if str(path).endswith(file) else path.parent)
            if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
                raise InvalidVideo("unsafe: symlink pointing outside the video root")
            st = path.stat()
            row.update(size_bytes=int(st.st_size), mtime_ns=int(st.st_mtime_ns))
            cached = _cached_probe(prev, file, str(path), st)
            if cached is not None:
                row.update(cached)
                cached_files.add(file)
            else:
                probe = probe_video(path)
                row.update({k: v for k, v in probe.as_record().items() if k in PROBE_COLUMNS})
                row["path"] = str(path)
        except InvalidVideo as exc:
            row["probe_error"] = exc.reason
        except OSError as exc:
            row["probe_error"] = f"unreadable: {exc.strerror or exc}"
        except Exception as exc:  # one strange file never stops the batch
            logger.exception("probing %s crashed", file)
            row["probe_error"] = f"probe crashed: {type(exc).__name__}: {exc}"
        row["probe_s"] = round(time.perf_counter() - t0, 4)
        rows.append(row)
        progress.done(row["probe_s"], float(row.get("duration_s") or 0.0),
                      not row.get("probe_error"))
    table = _apply_rules(rows, params)
    stats = progress.close()
    ok = table["status"] == "ok" if len(table) else pd.Series(dtype=bool)
    cached = table["file"].isin(cached_files) if len(table) else pd.Series(dtype=bool)
    # probe row of the summary: done = probed now, skipped = unchanged since the last run
    # (not re-hashed), failed = quarantined by any probe rule (incl. duplicates and limits)
    stats.update(found=len(candidates), ignored_files=ignored, cache_hits=int(cached.sum()),
                 done=int((ok & ~cached).sum()), skipped=int((ok & cached).sum()),
                 failed=int((~ok).sum()), quarantined=int((~ok).sum()),
                 video_s=round(float(table.loc[ok, "duration_s"].sum()), 3) if len(table) else 0.0)
    return table, stats


def _apply_rules(rows: list[dict[str, Any]], params: dict[str, Any]) -> pd.DataFrame:
    lo = float(params.get("min_duration_s", 1.0) or 0.0)
    hi = float(params.get("max_duration_s", 600.0) or 0.0)
    first_by_hash: dict[str, str] = {}
    first_by_id: dict[str, str] = {}
    for row in rows:
        row["status"], row["reason"], row["duplicate_of"] = "ok", None, None
        if row.get("probe_error"):
            row["status"], row["reason"] = "quarantined", row["probe_error"]
            continue
        sha = row["sha256"]
        if sha in first_by_hash:
            row["status"], row["duplicate_of"] = "quarantined", first_by_hash[sha]
            row["reason"] = f"duplicate content of {first_by_hash[sha]} (same sha256)"
            continue
        first_by_hash[sha] = row["file"]
        dur = float(row.get("duration_s") or 0.0)
        if dur < lo:
            row["status"] = "quarantined"
            row["reason"] = f"too short: {dur:.2f} s < min_duration_s {lo:g}"
            continue
        if hi and dur > hi:
            row["status"] = "quarantined"
            row["reason"] = f"too long: {dur:.2f} s > max_duration_s {hi:g}"
            continue
        vid = row["video_id"].casefold()
        if vid in first_by_id:
            row["status"], row["duplicate_of"] = "quarantined", first_by_id[vid]
            row["reason"] = (f"duplicate video id {row['video_id']!r}: {first_by_id[vid]} has the "
                             "same file name; rename one of them")
            continue
        first_by_id[vid] = row["file"]
    for row in rows:
        if row["status"] == "quarantined":
            logger.warning("quarantined %s (probe): %s", row["file"], row["reason"])
    table = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    for col in ("size_bytes", "mtime_ns", "n_frames", "width", "height", "rotation",
                "display_width", "display_height", "n_audio_streams", "bit_rate"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("Int64")
    for col in ("duration_s", "declared_duration_s", "fps", "probe_s"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    table["has_audio"] = table["has_audio"].astype("boolean")
    return table


# ------------------------------------------------------------------------ stage machinery
def _ok_videos(probes: pd.DataFrame) -> pd.DataFrame:
    if probes is None or probes.empty:
        return pd.DataFrame(columns=PROBE_COLUMNS)
    return probes[probes["status"] == "ok"].sort_values("file").reset_index(drop=True)


def _load_record(existing: Partitions, video_id: str) -> dict[str, Any] | None:
    loader = (existing or {}).get(video_id)
    if loader is None:
        return None
    try:
        rec = loader()
    except Exception as exc:  # an unreadable record means "not done"
        logger.warning("stored record of %s unreadable (%s): redoing it", video_id, exc)
        return None
    return rec if isinstance(rec, dict) else None


def _is_done(rec: dict[str, Any] | None, key: str, retry_failed: bool) -> bool:
    if not rec or rec.get("key") != key:
        return False
    return rec.get("status") == "ok" or (rec.get("status") == "failed" and not retry_failed)


def _record(stage: str, row: pd.Series, key: str, status: str, compute_s: float,
            reason: str | None = None, **data: Any) -> dict[str, Any]:
    return _jsonable({
        "video_id": row["video_id"], "stage": stage, "key": key, "sha256": row["sha256"],
        "status": status, "reason": reason, "file": row["file"],
        "video_s": float(row["duration_s"]), "compute_s": round(compute_s, 4), "at": _now(),
        **data,
    })


def _fail_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return reason or f"{type(exc).__name__}: {exc}".strip()


# ------------------------------------------------------------------------ fan-out helpers
def _row_dict(row: pd.Series) -> dict[str, Any]:
    """The probe row as plain Python values (what is shipped to a worker process)."""
    return {k: _py(v) for k, v in row.items()}


def _worker_cfg(cfg: dict[str, Any], key: str, threads: int | None) -> dict[str, Any]:
    """A built-in backend's parameters with its thread count capped to the executor's
    ``threads_per_worker`` (unless set): a non-semantic key, so stage keys do not change.
    User classes (``module:Class``) get their parameters untouched."""
    if not threads or ":" in str(cfg.get("backend", "")) or cfg.get(key):
        return cfg
    return {**cfg, key: int(threads)}


def _account(progress: StageProgress, rec: dict[str, Any]) -> None:
    """Count a finished video in the stage's progress; log it when it was quarantined."""
    ok = rec.get("status") == "ok"
    if not ok:
        logger.warning("quarantined %s (%s): %s", rec["file"], rec["stage"], rec["reason"])
    progress.done(float(rec.get("compute_s") or 0.0), float(rec["video_s"]) if ok else 0.0, ok)


# ----------------------------------------------------------------------------------- decode
def decode_one(job: dict[str, Any]) -> dict[str, Any]:
    """Worker task of :func:`decode_frames`: one video -> ``{"stack": FrameStack | None,
    "record": decode record}``. A failure of the video is returned as a ``failed`` record."""
    from evads_kedro.video import sample_frames

    limit_threads(job.get("threads"))
    row, key, dp = job["row"], job["key"], job["dp"]
    t0 = time.perf_counter()
    try:
        stack = sample_frames(
            row["path"], fps=dp["fps"], max_side=dp["max_side"], method=job["method"],
            video_id=row["video_id"], duration_s=float(row["duration_s"]),
            meta={"decode_key": key, "sha256": row["sha256"], "file": row["file"]},
        )
        if len(stack) == 0:
            raise ValueError("no frames decoded")
        rec = _record("decode", row, key, "ok", time.perf_counter() - t0, n_frames=len(stack),
                      method=stack.meta.get("method"), rotation=stack.meta.get("rotation"),
                      frame_shape=list(stack.frames[0].shape))
        return {"stack": stack, "record": rec}
    except Exception as exc:  # noqa: BLE001 - quarantined with its reason
        return {"stack": None, "record": _record("decode", row, key, "failed",
                                                 time.perf_counter() - t0, _fail_reason(exc))}


def decode_frames(
    probes: pd.DataFrame, frames_existing: Partitions, records_existing: Partitions,
    params: dict[str, Any],
) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Sample every valid video at ``ingestion.fps`` (frames shown at t = 0, 1, 2... s, display
    rotated, longer side <= ``frame_max_side``) into the ``frames`` artefact, once per video.

    Generator node: yields ``({id: FrameStack}, {id: record}, stats)`` per processed video and a
    last chunk with the final stats, so each video is saved as soon as it is done. Videos are
    processed by the ``ingestion.executor`` (in-process, process pool or Dask); the frames come
    back to this process and are saved through the catalog.
    """
    dp = decode_params(params)
    retry = bool(params.get("retry_quarantined", False))
    videos = _ok_videos(probes)
    todo = []
    for _, row in videos.iterrows():
        key = stage_key("decode", row["sha256"], dp)
        rec = _load_record(records_existing, row["video_id"])
        ok_frames = rec is None or rec.get("status") != "ok" or row["video_id"] in (frames_existing or {})
        if _is_done(rec, key, retry) and ok_frames:
            continue
        todo.append((row, key))
    progress = StageProgress("decode", len(todo), len(videos) - len(todo),
                             bool(params.get("progress", True)))
    ex = executor_params(params.get("executor"))
    threads = ex["threads_per_worker"] if ex["kind"] != "inprocess" else None
    jobs = [{"row": _row_dict(row), "key": key, "dp": dp, "threads": threads,
             "method": params.get("decode_method", "auto")} for row, key in todo]
    for _, out in fan_out(ex, decode_one, jobs, cost=_job_seconds):
        rec = out["record"]
        _account(progress, rec)
        vid = rec["video_id"]
        yield ({vid: out["stack"]} if out["stack"] is not None else {}), {vid: rec}, \
            progress.stats.as_dict()
    yield {}, {}, progress.close()


# -------------------------------------------------------------------------------------- OCR
def ocr_one(job: dict[str, Any]) -> dict[str, Any]:
    """Worker task of :func:`ocr_frames`: one video's frame stack (loaded here through the
    catalog's partition loader) -> ``{"record", "setup_s", "calls", "reused"}``.

    The backend is built once per process and parameter set (``build_backend``); a backend
    that cannot be built raises (a configuration error, not the video's fault)."""
    from evads_kedro.backends.ocr_reuse import ocr_frame_stack

    limit_threads(job.get("threads"))
    row, key, dkey = job["row"], job["key"], job["dkey"]
    t_setup = time.perf_counter()
    backend = build_backend("ocr", _worker_cfg(job["ocr_cfg"], "threads", job.get("threads")))
    setup_s = time.perf_counter() - t_setup
    t0 = time.perf_counter()
    try:
        stack = job["load"]()
        if stack.meta.get("decode_key") != dkey:
            raise ValueError("frame stack is stale (decoded from other content or with "
                             "other parameters); delete it and rerun")
        texts, stats = ocr_frame_stack(backend, stack, **job["stack"])
        rec = _record("ocr", row, key, "ok", time.perf_counter() - t0,
                      frames=[{"t": float(t), "texts": list(tx)}
                              for t, tx in zip(stack.timestamps, texts, strict=True)],
                      stats=stats)
        return {"record": rec, "setup_s": setup_s, "calls": int(stats.get("ocr_calls", 0)),
                "reused": int(stats.get("reused", 0))}
    except Exception as exc:  # noqa: BLE001
        rec = _record("ocr", row, key, "failed", time.perf_counter() - t0, _fail_reason(exc))
        return {"record": rec, "setup_s": setup_s, "calls": 0, "reused": 0}


def ocr_frames(
    probes: pd.DataFrame, frames: Partitions, decode_records: Partitions,
    records_existing: Partitions, params: dict[str, Any],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """OCR each video's frame stack (``frames``, decoded once by :func:`decode_frames`) with the
    ``ingestion.ocr`` backend; frames nearly identical to the previous one reuse its result.
    Videos are processed by the ``ingestion.executor``. Generator node: yields
    ``({id: record}, stats)`` per video."""
    from evads_kedro.backends.ocr_reuse import stack_options

    op = ocr_params(params)
    ocr_cfg = dict(params.get("ocr") or {})
    retry = bool(params.get("retry_quarantined", False))
    dkey_params = decode_params(params)
    videos = _ok_videos(probes)
    todo = []
    for _, row in videos.iterrows():
        key = stage_key("ocr", row["sha256"], op)
        if _is_done(_load_record(records_existing, row["video_id"]), key, retry):
            continue
        dkey = stage_key("decode", row["sha256"], dkey_params)
        drec = _load_record(decode_records, row["video_id"])
        if not drec or drec.get("key") != dkey or drec.get("status") != "ok":
            continue  # decode failed: quarantined at the decode stage
        todo.append((row, key, dkey))
    progress = StageProgress("ocr", len(todo), len(videos) - len(todo),
                             bool(params.get("progress", True)))
    ex = executor_params(params.get("executor"))
    threads = ex["threads_per_worker"] if ex["kind"] != "inprocess" else None
    jobs = [{"row": _row_dict(row), "key": key, "dkey": dkey, "load": _stack_loader(frames, row),
             "ocr_cfg": ocr_cfg, "stack": stack_options(ocr_cfg), "threads": threads}
            for row, key, dkey in todo]
    calls = reused = 0
    for _, out in fan_out(ex, ocr_one, jobs, cost=_job_seconds):
        progress.stats.setup_s += out["setup_s"]
        calls += out["calls"]
        reused += out["reused"]
        _account(progress, out["record"])
        yield {out["record"]["video_id"]: out["record"]}, progress.stats.as_dict()
    progress.stats.extra.update(ocr_calls=calls, ocr_reused=reused)
    yield {}, progress.close()


def _job_seconds(job: dict[str, Any]) -> float:
    """A per-video job's cost for longest-first scheduling: the video's duration."""
    d = job["row"].get("duration_s")
    return float(d) if d is not None and math.isfinite(float(d)) else 0.0


def _stack_loader(frames: Partitions, row: pd.Series) -> Callable[[], Any]:
    loader = (frames or {}).get(row["video_id"])
    if loader is None:
        return functools.partial(_missing_stack, row["video_id"])
    return loader


def _missing_stack(video_id: str) -> Any:
    raise FileNotFoundError(f"frame stack of {video_id} missing from data/02_intermediate/frames "
                            "although its decode record says ok; delete the record and rerun")


# -------------------------------------------------------------------------------------- ASR
_LANG = re.compile(r"[a-z]{2,3}")


def _sidecar(raw_videos: Partitions | None, file: str) -> dict[str, Any] | None:
    loader = (raw_videos or {}).get(file)
    if loader is None:
        return None
    try:
        return loader().read_sidecar_json()
    except (ValueError, OSError) as exc:
        logger.warning("%s: %s (ignored)", file, exc)
        return None


def video_asr_params(params: dict[str, Any], sidecar: dict[str, Any] | None) -> dict[str, Any]:
    """The ASR parameters of one video: ``ingestion.asr``, with ``language`` forced by the
    sidecar's ``language`` field (an ISO code such as ``en``) when ``sidecar_language`` is on.
    ``mixed`` (Mandarin/English code-switching, as the synthetic samples write it) decodes as
    zh unless Whisper gives en a probability >= ``language_switch_prob``. A sidecar's language
    is taken as known: no retry in another language when guards drop the decode
    (``retry_dropped: false``), since a retry would only swap dropped speech for a language the
    sidecar rules out. Without a sidecar the backend's ``language`` applies (default ``auto``:
    detected per video)."""
    ap = asr_params(params)
    lang = _forced_language(params, sidecar)
    if lang is not None:
        ap["language"] = list(lang) if isinstance(lang, tuple) else lang
        ap["retry_dropped"] = False
    return ap


def _forced_language(params: dict[str, Any], sidecar: dict[str, Any] | None
                     ) -> str | tuple[str, ...] | None:
    lang = (sidecar or {}).get("language")
    if not params.get("sidecar_language", True) or not isinstance(lang, str):
        return None
    if lang == "mixed":
        return ("zh", "en")
    return lang if _LANG.fullmatch(lang) else None


def _sidecar_language(params: dict[str, Any], raw_videos: Partitions, row: pd.Series) -> bool:
    """True when the video's sidecar sets its ASR language."""
    return _forced_language(params, _sidecar(raw_videos, row["file"])) is not None


def transcribe_one(job: dict[str, Any]) -> dict[str, Any]:
    """Worker task of :func:`transcribe_audio`: one video -> ``{"record", "setup_s",
    "silent"}``. An unreadable audio track fails the video; a backend that cannot be built
    raises (a configuration error for the whole run, e.g. missing weights)."""
    from evads_kedro.backends.asr_audio import load_audio

    limit_threads(job.get("threads"))
    row, key, ap = job["row"], job["key"], job["ap"]
    duration = float(row["duration_s"])
    t0 = time.perf_counter()
    failure: BaseException | None = None
    try:
        audio = load_audio(row["path"]) if bool(row["has_audio"]) else np.zeros(0, np.float32)
    except Exception as exc:  # noqa: BLE001 - an unreadable audio track is the video's fault
        audio, failure = None, exc
    backend, setup_s = None, 0.0
    if audio is not None and audio.size:
        t_setup = time.perf_counter()
        # cached per process and parameters: only the first video of a worker loads the model
        backend = build_backend("asr", _worker_cfg(ap, "cpu_threads", job.get("threads")))
        setup_s = time.perf_counter() - t_setup
        t0 += setup_s
    try:
        if audio is None:
            raise failure  # type: ignore[misc]
        if backend is None:
            per_second, words, meta = {}, [], {"no_audio": True}
        else:
            result = backend.transcribe(audio, duration)
            per_second = result.per_second(duration)
            words = [{"start": float(w.start), "end": float(w.end), "text": w.text}
                     for w in result.words]
            meta = {**(result.meta or {}), "language": result.language, "text": result.text}
            if job.get("sidecar_language"):
                meta["language_source"] = "sidecar"
        rec = _record("asr", row, key, "ok", time.perf_counter() - t0,
                      per_second={str(s): t for s, t in sorted(per_second.items())},
                      words=words, meta=meta)
        return {"record": rec, "setup_s": setup_s, "silent": backend is None}
    except Exception as exc:  # noqa: BLE001
        rec = _record("asr", row, key, "failed", time.perf_counter() - t0, _fail_reason(exc))
        return {"record": rec, "setup_s": setup_s, "silent": False}


def transcribe_audio(
    probes: pd.DataFrame, decode_records: Partitions, raw_videos: Partitions,
    records_existing: Partitions, params: dict[str, Any],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Transcribe each valid video's first audio track with the ``ingestion.asr`` backend into
    text per second (decoding language: see :func:`video_asr_params`). A video without audio
    (or with an empty track) gets an empty transcript without loading a model. Videos are
    processed by the ``ingestion.executor``.
    Generator node: yields ``({id: record}, stats)`` per video."""
    retry = bool(params.get("retry_quarantined", False))
    dkey_params = decode_params(params)
    videos = _ok_videos(probes)
    todo = []
    for _, row in videos.iterrows():
        ap = video_asr_params(params, _sidecar(raw_videos, row["file"]))
        key = stage_key("asr", row["sha256"], ap)
        if _is_done(_load_record(records_existing, row["video_id"]), key, retry):
            continue
        drec = _load_record(decode_records, row["video_id"])
        if not drec or drec.get("status") != "ok" or \
                drec.get("key") != stage_key("decode", row["sha256"], dkey_params):
            continue  # quarantined at the decode stage: no point transcribing it
        todo.append((row, key, ap, _sidecar_language(params, raw_videos, row)))
    progress = StageProgress("asr", len(todo), len(videos) - len(todo),
                             bool(params.get("progress", True)))
    ex = executor_params(params.get("executor"))
    threads = ex["threads_per_worker"] if ex["kind"] != "inprocess" else None
    jobs = [{"row": _row_dict(row), "key": key, "ap": ap, "threads": threads,
             "sidecar_language": side} for row, key, ap, side in todo]
    silent = 0
    for _, out in fan_out(ex, transcribe_one, jobs, cost=_job_seconds):
        progress.stats.setup_s += out["setup_s"]
        silent += int(out["silent"])
        _account(progress, out["record"])
        yield {out["record"]["video_id"]: out["record"]}, progress.stats.as_dict()
    progress.stats.extra["no_audio"] = silent
    yield {}, progress.close()


# --------------------------------------------------------------------------------- timeline
def _clean(text: str) -> str:
    return " ".join(str(text).replace("\r", " ").replace("\n", " ").split())


def _ocr_by_second(rec: dict[str, Any]) -> dict[int, tuple[str, ...]]:
    """Texts of the frame sampled at each whole second (frames between seconds are ignored:
    the timeline has one line per second)."""
    out: dict[int, tuple[str, ...]] = {}
    for fr in rec.get("frames", []):
        t = float(fr["t"])
        s = int(round(t))
        if abs(t - s) < 1e-6 and s not in out:
            boxes = tuple(b for b in (_clean(x) for x in fr.get("texts", [])) if b)
            out[s] = tuple(b.replace('] ; ASR Text: "', "] ; ASR Text: ”") for b in boxes)
    return out


def _category(row: pd.Series, side: dict[str, Any] | None,
              params: dict[str, Any]) -> tuple[str, str]:
    mapping = params.get("categories") or {}
    if row["video_id"] in mapping:
        return str(mapping[row["video_id"]]), "param"
    if params.get("sidecar_category", True) and side:
        if isinstance(side.get("category"), str) and side["category"].strip():
            return _clean(side["category"]), "sidecar"
    return str(params.get("default_category") or DEFAULT_CATEGORY), "default"


def timeline_duration(duration_s: float) -> int:
    """The ``Duration: Ns`` header: whole seconds, rounded (the released data uses integers)."""
    return max(1, int(math.floor(duration_s + 0.5)))


def build_timelines(
    probes: pd.DataFrame, decode_records: Partitions, ocr_records: Partitions,
    asr_records: Partitions, raw_videos: Partitions, texts_existing: Partitions,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], pd.DataFrame]:
    """Per-second OCR + ASR -> the two official timeline renderings of every ingested video.

    Returns ``video_timelines`` (video_id, second, ocr, asr; seconds with OCR or ASR only, as
    the released table), ``ingested_videos`` (the released ``videos`` columns + ASR-only
    timeline, content hash, probe facts), the timeline texts that are new or changed
    (``data/03_primary/timelines/<id>.txt``) and the quarantine table of every stage.
    """
    from evads_kedro.taxonomy import CATEGORIES

    dp, op = decode_params(params), ocr_params(params)
    second_rows: list[dict[str, Any]] = []
    video_rows: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    texts: dict[str, str] = {}
    if probes is None:
        probes = pd.DataFrame(columns=PROBE_COLUMNS)
    for _, row in probes.sort_values("file").iterrows() if len(probes) else []:
        base = {"video_id": row["video_id"], "file": row["file"], "path": row.get("path"),
                "sha256": row.get("sha256"), "size_bytes": row.get("size_bytes"),
                "duplicate_of": row.get("duplicate_of")}
        if row["status"] != "ok":
            quarantine.append({**base, "stage": "probe", "reason": row["reason"]})
            continue
        vid, sha = row["video_id"], row["sha256"]
        sidecar = _sidecar(raw_videos, row["file"])
        ap = video_asr_params(params, sidecar)
        recs = {}
        problem = None
        for stage, store, key in (("decode", decode_records, stage_key("decode", sha, dp)),
                                  ("ocr", ocr_records, stage_key("ocr", sha, op)),
                                  ("asr", asr_records, stage_key("asr", sha, ap))):
            rec = _load_record(store, vid)
            if not rec or rec.get("key") != key:
                problem = (stage, "not processed (run the ingestion pipeline to completion)")
                break
            if rec.get("status") != "ok":
                problem = (stage, rec.get("reason") or "failed")
                break
            recs[stage] = rec
        if problem:
            quarantine.append({**base, "stage": problem[0], "reason": problem[1]})
            continue
        try:
            ocr = _ocr_by_second(recs["ocr"])
            asr = {int(s): _clean(t) for s, t in recs["asr"].get("per_second", {}).items()}
            asr = {s: t for s, t in asr.items() if t}
            seconds = sorted(set(ocr) | set(asr))
            records = [SecondRecord(s, ocr.get(s, ()), asr.get(s)) for s in seconds]
            category, cat_source = _category(row, sidecar, params)
            if category not in CATEGORIES:
                logger.warning("%s: category %r (%s) is not one of the 8 E-VAds categories",
                               row["file"], category, cat_source)
            duration = timeline_duration(float(row["duration_s"]))
            full = Timeline.from_seconds(records, kind="full", category=category,
                                         duration=duration)
            full_text, asr_text = render_timeline(full), render_timeline(full.to_asr_only())
        except Exception as exc:  # noqa: BLE001
            logger.warning("quarantined %s (timeline): %s", row["file"], _fail_reason(exc))
            quarantine.append({**base, "stage": "timeline", "reason": _fail_reason(exc)})
            continue
        for rec in full.per_second():
            second_rows.append({"video_id": vid, "second": rec.second, "ocr": list(rec.ocr),
                                "asr": rec.asr})
        video_rows.append({
            "video_id": vid, "category": category, "duration_s": float(row["duration_s"]),
            "video_path": row["path"], "video_exists": True, "splits": "", "n_questions": 0,
            "timeline_full": full_text, "source": "ingested", "timeline_asr": asr_text,
            "content_sha256": sha, "file": row["file"], "fps": float(row["fps"]),
            "width": int(row["display_width"]), "height": int(row["display_height"]),
            "rotation": int(row["rotation"]), "has_audio": bool(row["has_audio"]),
            "n_frames_sampled": int(recs["decode"].get("n_frames", 0)),
            "category_source": cat_source, "ocr_key": recs["ocr"]["key"],
            "asr_key": recs["asr"]["key"], **_asr_language_columns(recs["asr"]),
        })
        if _text_changed(texts_existing, vid, full_text):
            texts[vid] = full_text
    timelines = pd.DataFrame(second_rows, columns=TIMELINE_COLUMNS)
    timelines["second"] = timelines["second"].astype("int64")
    videos = pd.DataFrame(video_rows, columns=INGESTED_COLUMNS)
    q = pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS)
    logger.info("Timelines: %d videos ingested, %d quarantined, %d timeline texts written",
                len(videos), len(q), len(texts))
    return timelines, videos, texts, q


def _asr_language_columns(rec: dict[str, Any]) -> dict[str, Any]:
    meta = rec.get("meta") or {}
    if meta.get("no_audio") or meta.get("skipped"):
        return {"asr_language": None, "asr_language_probability": None,
                "asr_language_source": None, "asr_all_dropped": None}
    prob = meta.get("language_probability")
    return {"asr_language": meta.get("language"),
            "asr_language_probability": None if prob is None else float(prob),
            "asr_language_source": meta.get("language_source"),
            "asr_all_dropped": meta.get("all_dropped")}


def _text_changed(existing: Partitions, vid: str, text: str) -> bool:
    loader = (existing or {}).get(vid)
    if loader is None:
        return True
    try:
        return loader() != text
    except Exception:  # noqa: BLE001 - unreadable: rewrite it
        return True
