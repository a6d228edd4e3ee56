"""Import the released E-VAds splits (verl/EasyR1 parquet layout, SPEC §5) into tidy tables.

Every row either lands in the tables or in the import report with its split, row number,
question id and reason: nothing is dropped silently and one bad row never stops the import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from evads_kedro.prompts import split_prompt
from evads_kedro.scoring import split_completion
from evads_kedro.timeline import Timeline, parse_timeline, render_timeline

QUESTION_ID = re.compile(r"^ques_[0-9a-f]{32}$")
REQUIRED_COLUMNS = {
    "sft": ("videos", "prompt", "answer", "extra_info"),
    "rl": ("videos", "prompt", "reward_model", "extra_info"),
}

VIDEO_COLUMNS = [
    "video_id", "category", "duration_s", "video_path", "video_exists", "splits",
    "n_questions", "timeline_full", "source",
]
TIMELINE_COLUMNS = ["video_id", "second", "ocr", "asr"]
QA_COLUMNS = [
    "question_id", "video_id", "split", "category", "task", "question", "answer", "think",
    "clues", "ground_truth", "instruction", "prompt", "prompt_timeline", "timeline_full",
    "source_row",
]
ERROR_COLUMNS = ["split", "row", "question_id", "severity", "reason"]
# The longest released text field is a 43,100-character SFT prompt; a field far beyond that is
# not a benchmark row (a corrupt or hostile file) and would bloat every downstream table.
MAX_TEXT_CHARS = 200_000


class ReleasedRowError(ValueError):
    """A released row that cannot be imported; the message says what is wrong and the fix."""


def resolve_video_path(raw: str, video_root: Path) -> Path:
    """Map a released ``videos`` entry (``../videos/698.mp4``) to a path under ``video_root``.

    The official layout keeps videos in a ``videos/`` folder beside the parquet folder, so a
    leading ``../videos/`` (or ``videos/``) is the layout's own prefix and is dropped. Anything
    absolute, or a path that still climbs out (``../../outside/secret.txt``), is refused: a
    dataset row must never make the project read outside its configured root.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ReleasedRowError(f"'videos' must be a non-empty path string, got {raw!r}")
    if "\x00" in raw:
        raise ReleasedRowError("'videos' path contains a NUL byte")
    p = PurePosixPath(raw.replace("\\", "/"))
    if p.is_absolute() or re.match(r"^[A-Za-z]:", raw):
        raise ReleasedRowError(f"'videos' path {raw!r} is absolute; expected ../videos/<id>.mp4")
    parts = list(p.parts)
    if parts[:2] == ["..", "videos"]:
        parts = parts[2:]
    elif parts[:1] == ["videos"]:
        parts = parts[1:]
    if not parts or any(part in ("..", ".", "") for part in parts):
        raise ReleasedRowError(
            f"'videos' path {raw!r} escapes the video root; expected ../videos/<id>.mp4"
        )
    stem = PurePosixPath(parts[-1]).stem
    if stem.startswith(".") or any(ord(c) < 32 for c in raw):
        # the stem becomes the video id, which names files (frames/<id>.zip, timelines...)
        raise ReleasedRowError(f"'videos' path {raw!r} has no usable file name (hidden, dots "
                               "only or control characters); expected ../videos/<id>.mp4")
    root = Path(video_root).resolve()
    resolved = root.joinpath(*parts).resolve()
    if not resolved.is_relative_to(root):  # a symlink pointing outside
        raise ReleasedRowError(f"'videos' path {raw!r} resolves outside the video root {root}")
    return resolved


def _first(value: Any) -> Any:
    """The first element of a list/array cell, or the cell itself (verl writes both shapes)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) == 0:
            raise ReleasedRowError("empty list where one element was expected")
        return value[0]
    return value


def _field(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict):
        raise ReleasedRowError(f"{where} must be a struct/dict, got {type(mapping).__name__}")
    if key not in mapping or mapping[key] is None:
        raise ReleasedRowError(f"missing field {where}.{key}")
    return mapping[key]


def _text(value: Any, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ReleasedRowError(f"{where} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ReleasedRowError(f"{where} is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise ReleasedRowError(f"{where} is {len(value):,} characters, over the "
                               f"{MAX_TEXT_CHARS:,} limit; the file is not a released split")
    return value


def _check_order(tl: Timeline, where: str) -> None:
    """Released timelines list events in increasing, non-overlapping seconds; anything else
    would be re-ordered or merged silently by the per-second tables."""
    prev = None
    for ev in tl.events:
        if prev is not None and ev.start <= prev.end:
            raise ReleasedRowError(
                f"{where} events out of time order: Time {ev.start}s comes after "
                f"Time {prev.start}-{prev.end}s; fix the row so seconds increase")
        prev = ev


@dataclass
class _Imported:
    qa: dict[str, Any]
    full_timeline: Timeline
    video_path: Path


@dataclass
class ImportResult:
    """The four tables of one import, as DataFrames with fixed columns."""

    videos: pd.DataFrame
    timelines: pd.DataFrame
    qa: pd.DataFrame
    errors: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def _import_row(split: str, index: int, row: pd.Series, video_root: Path) -> _Imported:
    extra = row["extra_info"]
    qid = _text(_field(extra, "id", "extra_info"), "extra_info.id")
    if not QUESTION_ID.match(qid):
        raise ReleasedRowError(f"question id {qid!r} is not ques_<32 hex>")
    raw_video = _text(_first(row["videos"]), "videos")
    video_path = resolve_video_path(raw_video, video_root)
    video_id = video_path.stem
    message = _first(row["prompt"])
    content = _text(_field(message, "content", "prompt[0]"), "prompt[0].content")
    parts = split_prompt(content, split)
    prompt_timeline = parse_timeline(parts.timeline)
    question = _text(parts.question, "question")
    if split == "sft":
        full = prompt_timeline
        completion = split_completion(_text(row["answer"], "answer"))
        if not completion.well_formed:
            raise ReleasedRowError("answer is not '<think>…</think>\\n<answer>…</answer>'")
        answer, think, clues = completion.answer, completion.think, None
        ground_truth = row["answer"]
    else:
        reward = row["reward_model"]
        verifier = _first(_field(reward, "verifier", "reward_model"))
        full = parse_timeline(_text(_field(verifier, "meta_info", "verifier[0]"), "meta_info"))
        clues = _text(_field(verifier, "clues", "verifier[0]"), "verifier[0].clues")
        answer = _text(_field(reward, "answer", "reward_model"), "reward_model.answer")
        ground_truth = _text(
            _field(reward, "ground_truth", "reward_model"), "reward_model.ground_truth"
        )
        think = None
    if full.kind != "full":
        raise ReleasedRowError(f"expected a full OCR+ASR timeline for {split}, got {full.kind}")
    _check_order(prompt_timeline, "prompt timeline")
    _check_order(full, "full timeline")
    qa = {
        "question_id": qid,
        "video_id": video_id,
        "split": split,
        "category": full.category,
        "task": None,  # the release carries no task label (SPEC §5)
        "question": question,
        "answer": answer,
        "think": think,
        "clues": clues,
        "ground_truth": ground_truth,
        "instruction": parts.instruction,
        "prompt": content,
        "prompt_timeline": parts.timeline,
        "timeline_full": render_timeline(full),
        "source_row": index,
    }
    return _Imported(qa=qa, full_timeline=full, video_path=video_path)


def import_splits(splits: Iterable[tuple[str, pd.DataFrame]], video_root: Path) -> ImportResult:
    """Import released splits (``("sft", frame)``, ``("rl", frame)``) into tidy tables."""
    errors: list[dict[str, Any]] = []
    qa_rows: list[dict[str, Any]] = []
    per_video: dict[str, dict[str, Any]] = {}
    counts = {"rows": 0, "imported": 0, "errors": 0, "warnings": 0}

    for split, frame in splits:
        missing_file = frame.attrs.get("missing_file")
        if missing_file:
            errors.append(_error(split, -1, None, "warning", f"split file not found: {missing_file}"))
            continue
        absent = [c for c in REQUIRED_COLUMNS[split] if c not in frame.columns]
        if absent:
            errors.append(_error(split, -1, None, "error",
                                 f"missing columns {absent}; is this the {split.upper()} parquet?"))
            counts["rows"] += len(frame)
            counts["errors"] += len(frame)
            continue
        for index, row in enumerate(frame.itertuples(index=False)):
            counts["rows"] += 1
            series = pd.Series(row._asdict())
            qid = _safe_qid(series)
            try:
                imported = _import_row(split, index, series, video_root)
            except Exception as exc:  # noqa: BLE001 - one bad row never stops the import
                errors.append(_error(split, index, qid, "error", f"{type(exc).__name__}: {exc}"))
                counts["errors"] += 1
                continue
            qa_rows.append(imported.qa)
            counts["imported"] += 1
            vid = imported.qa["video_id"]
            text = imported.qa["timeline_full"]
            known = per_video.get(vid)
            if known is None:
                per_video[vid] = {
                    "timeline": imported.full_timeline,
                    "text": text,
                    "path": imported.video_path,
                    "splits": {split},
                    "n": 1,
                }
            else:
                known["splits"].add(split)
                known["n"] += 1
                if known["text"] != text:
                    errors.append(_error(split, index, qid, "warning",
                                         f"video {vid}: full timeline differs from an earlier row; "
                                         "kept the first"))
                    counts["warnings"] += 1

    videos, timelines = _video_tables(per_video)
    qa = pd.DataFrame(qa_rows, columns=QA_COLUMNS)
    dup = qa["question_id"].duplicated(keep="first")
    for _, r in qa[dup].iterrows():
        errors.append(_error(r["split"], int(r["source_row"]), r["question_id"], "error",
                             "duplicate question id; kept the first occurrence"))
    counts["errors"] += int(dup.sum())
    counts["imported"] -= int(dup.sum())
    qa = qa[~dup].reset_index(drop=True)
    return ImportResult(videos, timelines, qa, pd.DataFrame(errors, columns=ERROR_COLUMNS), counts)


def _video_tables(per_video: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    video_rows, second_rows = [], []
    for vid, info in per_video.items():
        tl: Timeline = info["timeline"]
        video_rows.append({
            "video_id": vid,
            "category": tl.category,
            "duration_s": float(tl.duration_seconds),
            "video_path": str(info["path"]),
            "video_exists": info["path"].is_file(),
            "splits": ",".join(sorted(info["splits"])),
            "n_questions": info["n"],
            "timeline_full": info["text"],
            "source": "released",
        })
        for rec in tl.per_second():
            second_rows.append({"video_id": vid, "second": rec.second,
                                "ocr": list(rec.ocr), "asr": rec.asr})
    return (pd.DataFrame(video_rows, columns=VIDEO_COLUMNS),
            pd.DataFrame(second_rows, columns=TIMELINE_COLUMNS))


def _safe_qid(row: pd.Series) -> str | None:
    extra = row.get("extra_info")
    if isinstance(extra, dict) and isinstance(extra.get("id"), str):
        return extra["id"]
    return None


def _error(split: str, row: int, qid: str | None, severity: str, reason: str) -> dict[str, Any]:
    return {"split": split, "row": row, "question_id": qid, "severity": severity, "reason": reason}
