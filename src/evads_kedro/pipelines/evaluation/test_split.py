"""Import of the official test split ``EVAds_TEST.parquet`` (SPEC §4, issue 17 item 1).

The file is a flat table in the official evaluation script's schema: ``question, answer,
ques_categories, goods_category, asr_input, video_id, ques_id, evidence, asr_ocr_meta``. It is
turned into rows shaped like ``released_qa`` (split ``test``) plus the raw official columns, and
a video table in which each video is looked up as ``<root>/<video_id>.{mp4,avi,mov,mkv}`` (the
official lookup) inside ``evaluation.video_roots`` only.

Nothing is dropped silently: a row that cannot be evaluated (no ``ques_id``, a duplicate id) is
an ``error`` row of the import report (row, column, reason, fix); a row that can still be
evaluated but is damaged (null question, unknown ``ques_categories`` spelling, a ``video_id``
that would escape the video roots) is kept and gets a ``warning`` row; a missing optional
column is one ``error`` naming it (its values become empty and the run goes on), a missing
required column stops the import with the column named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from evads_kedro.calls.templates import resolve_path
from evads_kedro.taxonomy import task_from_label

REQUIRED_COLUMNS = ("ques_id", "video_id", "question", "answer")
OPTIONAL_COLUMNS = ("ques_categories", "goods_category", "asr_input", "evidence", "asr_ocr_meta")
TEST_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")  # the official script's lookup order
ERROR_COLUMNS = ["split", "row", "question_id", "column", "severity", "reason"]
# released_qa columns + the raw official ones
QA_COLUMNS = [
    "question_id", "video_id", "split", "category", "task", "question", "answer", "think",
    "clues", "ground_truth", "instruction", "prompt", "prompt_timeline", "timeline_full",
    "source_row", "ques_categories", "goods_category",
]
VIDEO_COLUMNS = ["video_id", "video_path", "video_exists"]
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
TEST_FILE = "EVAds_TEST.parquet"


class TestSplitError(ValueError):
    """The test file cannot be imported at all (a required column is missing)."""

    __test__ = False  # not a pytest class


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value if isinstance(value, str) else str(value)


def find_video(video_id: str, roots: list[Path]) -> tuple[str | None, str | None]:
    """``(path, problem)`` of ``<root>/<video_id>.<ext>`` for the first root and extension that
    exist. ``problem`` names why a ``video_id`` is refused (it would name a file outside the
    roots); a plain id with no file gives ``(None, None)``."""
    if not _SAFE_ID.match(video_id) or ".." in video_id:
        return None, (f"video_id {video_id!r} is not a plain file name and would escape "
                      "evaluation.video_roots; the question is answered without its video. "
                      "Fix the row's video_id (letters, digits, '_', '-', '.')")
    for root in roots:
        for ext in VIDEO_EXTENSIONS:
            p = root / f"{video_id}{ext}"
            if p.is_file():
                real = p.resolve()
                if not (real == root or root in real.parents):
                    return None, (f"{p} is a link to {real}, outside evaluation.video_roots "
                                  f"{[str(r) for r in roots]}; copy the file into a root")
                return str(real), None
    return None, None


def video_roots(params_roots: Any) -> list[Path]:
    """``evaluation.video_roots`` (relative to the project root) as resolved folders."""
    if not params_roots:
        return []
    roots = [params_roots] if isinstance(params_roots, str) else list(params_roots)
    return [resolve_path(r).resolve() for r in roots]


def import_test_split(frame: pd.DataFrame, roots: list[Path]
                      ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(qa, videos, errors)`` of an ``EVAds_TEST``-shaped ``frame`` (see module doc)."""
    errors: list[dict[str, Any]] = []

    def err(row: int, qid: Any, column: str | None, severity: str, reason: str) -> None:
        errors.append({"split": "test", "row": row, "question_id": qid, "column": column,
                       "severity": severity, "reason": reason})

    source = frame.attrs.get("source_file", TEST_FILE)
    absent = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if absent:
        raise TestSplitError(f"{source} lacks required column(s) {absent} (has "
                             f"{list(frame.columns)}); it is not the official EVAds_TEST.parquet"
                             f" (columns {list(TEST_COLUMNS)}). Re-download it.")
    frame = frame.copy()
    for col in OPTIONAL_COLUMNS:
        if col not in frame.columns:
            err(-1, None, col, "error",
                f"{source} has no '{col}' column; its values are taken as empty "
                f"({'the task rules label the questions' if col == 'ques_categories' else 'the prompts get an empty field'})."
                " Use the official file with all columns " + ", ".join(TEST_COLUMNS))
            frame[col] = None
    rows: list[dict[str, Any]] = []
    videos: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    unknown: dict[str, int] = {}
    for i, r in enumerate(frame[list(TEST_COLUMNS)].itertuples(index=False)):
        rec = dict(zip(TEST_COLUMNS, r, strict=True))
        qid = _text(rec["ques_id"])
        if not qid or not qid.strip():
            err(i, None, "ques_id", "error", "null or empty ques_id: the row cannot be keyed "
                "and is not evaluated; give it its ques_<hex> id")
            continue
        if qid in seen:
            err(i, qid, "ques_id", "error", "duplicate ques_id; kept the first occurrence")
            continue
        seen.add(qid)
        vid = _text(rec["video_id"]) or ""
        question = _text(rec["question"])
        if not question or not question.strip():
            err(i, qid, "question", "warning", "null or empty question: kept, its generation "
                "fails and is counted as failed; fill the row's question")
        if _text(rec["answer"]) is None:
            err(i, qid, "answer", "warning", "null reference answer: kept, judged against an "
                "empty reference; fill the row's answer")
        raw_task = _text(rec["ques_categories"])
        code = task_from_label(raw_task) if raw_task else None
        if raw_task and code is None:
            unknown[raw_task] = unknown.get(raw_task, 0) + 1
            err(i, qid, "ques_categories", "warning",
                f"unknown ques_categories spelling {raw_task!r}: kept as given in the "
                "ques_categories breakdown, no task/dimension; add the spelling to "
                "taxonomy.TASK_NAMES_ZH if it names one of BP, CM, ML, CI, RC")
        if vid not in videos:
            path, problem = find_video(vid, roots) if vid else (None, "empty video_id")
            if problem:
                err(i, qid, "video_id", "warning", problem)
            videos[vid] = {"video_id": vid, "video_path": path, "video_exists": path is not None}
        asr = _text(rec["asr_input"]) or ""
        rows.append({
            "question_id": qid, "video_id": vid, "split": "test",
            "category": _text(rec["goods_category"]), "task": code,
            "question": question, "answer": _text(rec["answer"]) or "", "think": None,
            "clues": _text(rec["evidence"]) or "", "ground_truth": _text(rec["answer"]) or "",
            "instruction": "", "prompt": "", "prompt_timeline": asr,
            "timeline_full": _text(rec["asr_ocr_meta"]) or "", "source_row": i,
            "ques_categories": raw_task, "goods_category": _text(rec["goods_category"]),
        })
    qa = pd.DataFrame(rows, columns=QA_COLUMNS)
    vids = pd.DataFrame(list(videos.values()), columns=VIDEO_COLUMNS)
    return qa, vids, pd.DataFrame(errors, columns=ERROR_COLUMNS)
