"""Exports: flat QA table, the released SFT / RL parquet layouts (SPEC §5), a review sheet.

* Question ids are ``ques_`` + the first 32 hex digits of sha256(video_id, task, question), so
  a rerun (or another machine) gives the same id to the same item.
* SFT rows: ``<video>`` + full timeline + ``\\n`` + question + ``\\n\\n`` + instruction;
  answer ``<think>clues</think>\\n<answer>answer</answer>``.
* RL rows: ``<video>`` + ASR-only timeline + ``\\n\\n Question: `` + question + ``\\n`` +
  instruction; ``reward_model{accuracy_ratio, answer, format_ratio, ground_truth,
  verifier[{clues, meta_info}], verifier_parm}`` exactly as the release
  (:mod:`evads_kedro.released_layout`).
* Review sheet: one row per item with ``accept`` (yes/no) and ``edit_question`` /
  ``edit_answer`` / ``edit_clues`` / ``edit_quotes`` (a JSON list like ``quotes``) columns;
  :func:`apply_review` reads it back and re-verifies every edited row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from evads_kedro.datasets.review_sheet import REVIEW_COLUMNS
from evads_kedro.prompts import OFFICIAL_INSTRUCTION, build_prompt
from evads_kedro.released_layout import DET_REWARD_RATIO, RL_SCHEMA, SFT_SCHEMA
from evads_kedro.timeline import parse_timeline

QA_TABLE_COLUMNS = [
    "question_id", "video_id", "category", "task", "persona", "question", "answer", "clues",
    "cited_seconds", "quotes", "timeline_full", "timeline_asr",
]
REVIEW_LOG_COLUMNS = ["question_id", "action", "new_question_id", "reason"]
_ACCEPT = {"yes", "y", "1", "true", "x", "ok", "accept"}

def question_id(video_id: str, task: str, question: str) -> str:
    key = json.dumps([str(video_id), str(task), str(question)], ensure_ascii=False)
    return "ques_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def asr_only_text(timeline_full: str, timeline_asr: Any = None) -> str:
    if isinstance(timeline_asr, str) and timeline_asr.strip():
        return timeline_asr
    return parse_timeline(timeline_full).to_asr_only().render()


def video_path(video_id: str) -> str:
    return f"../videos/{video_id}.mp4"


#: conf/base's ``qa_generation.export.data_source`` (pinned by tests/test_param_defaults.py).
DATA_SOURCE = "EVAdsGen"


def sft_rows(qa: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    instr = params.get("instruction") or OFFICIAL_INSTRUCTION
    rows = []
    for r in qa.itertuples(index=False):
        vp = video_path(r.video_id)
        rows.append({
            "data_source": params.get("data_source", DATA_SOURCE),
            "videos": vp,
            "prompt": [{"content": build_prompt(r.timeline_full, r.question, "sft", instr),
                        "role": "user"}],
            "ability": "QA",
            "answer": f"<think>{r.clues}</think>\n<answer>{r.answer}</answer>",
            "extra_info": {"id": r.question_id, "video_path": vp},
        })
    return pd.DataFrame(rows, columns=SFT_SCHEMA.names)


def rl_rows(qa: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    instr = params.get("instruction") or OFFICIAL_INSTRUCTION
    det = {k: None for k in DET_REWARD_RATIO.names}
    rows = []
    for r in qa.itertuples(index=False):
        vp = video_path(r.video_id)
        asr = asr_only_text(r.timeline_full, r.timeline_asr)
        rows.append({
            "data_source": params.get("data_source", DATA_SOURCE),
            "videos": vp,
            "prompt": [{"content": build_prompt(asr, r.question, "rl", instr), "role": "user"}],
            "ability": "QA",
            "reward_model": {
                "accuracy_ratio": 1, "answer": r.answer, "format_ratio": 1,
                "ground_truth": f"<answer>{r.answer}</answer>",
                "verifier": [{"clues": r.clues, "meta_info": r.timeline_full}],
                "verifier_parm": {"det_reward_ratio": det, "det_verifier_normalized": None},
            },
            "extra_info": {"id": r.question_id, "video_path": vp},
        })
    return pd.DataFrame(rows, columns=RL_SCHEMA.names)


def split_videos(video_ids: list[str], rl_fraction: float) -> set[str]:
    """Videos assigned to RL: a stable hash order, first ``round(rl_fraction * n)``."""
    order = sorted(set(video_ids), key=lambda v: hashlib.sha256(v.encode()).hexdigest())
    return set(order[: round(float(rl_fraction) * len(order))])


# ------------------------------------------------------------------------------- review
def review_sheet(qa: pd.DataFrame) -> pd.DataFrame:
    out = qa.reindex(columns=[c for c in REVIEW_COLUMNS if c in qa.columns]).copy()
    out["accept"] = "yes"
    for c in ("edit_question", "edit_answer", "edit_clues", "edit_quotes", "reviewer_note"):
        out[c] = ""
    return out[REVIEW_COLUMNS]


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and pd.isna(v)) or str(v).strip() == ""


def apply_review(qa: pd.DataFrame, review: pd.DataFrame,
                 verifier_params: Mapping[str, Any] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply a (human-edited) review sheet to the QA table.

    Rows with ``accept`` not in yes/y/1/true/x/ok are dropped; non-blank ``edit_*`` cells
    replace the field (``edit_quotes`` must be a JSON list of ``{modality, second, text}``).
    An edited row is re-verified with the deterministic checks (:func:`verify.check_item`
    against the item's own timeline, ``verifier_params``); a failing edit is *not* exported
    and is logged as ``edit_rejected`` with the reasons. An edited question gets a new id
    (id = hash of video, task, question). Returns (reviewed QA table, log of
    ``{question_id, action, new_question_id, reason}``)."""
    from evads_kedro.pipelines.qa_generation import verify

    by_id = review.set_index(review["question_id"].astype(str))
    keep, log = [], []
    for r in qa.to_dict("records"):
        qid = r["question_id"]
        if qid not in by_id.index:
            log.append({"question_id": qid, "action": "missing_from_review",
                        "new_question_id": None, "reason": None})
            continue
        rv = by_id.loc[qid]
        if str(rv.get("accept", "")).strip().lower() not in _ACCEPT:
            log.append({"question_id": qid, "action": "rejected", "new_question_id": None,
                        "reason": _note(rv)})
            continue
        edited, bad = False, []
        for field in ("question", "answer", "clues"):
            v = rv.get(f"edit_{field}")
            if not _blank(v):
                new = " ".join(str(v).split()) if field == "question" else str(v).strip()
                edited |= new != r[field]
                r[field] = new
        v = rv.get("edit_quotes")
        if not _blank(v):
            try:
                quotes = json.loads(str(v))
            except ValueError:
                quotes = None
            if not isinstance(quotes, list):
                bad.append("schema:edit_quotes (not a JSON list of {modality, second, text})")
            else:
                new = json.dumps(quotes, ensure_ascii=False)
                edited |= new != r["quotes"]
                r["quotes"] = new
        if edited and not bad:
            bad = verify.check_item(_as_item(r), verify.second_index(r["timeline_full"]),
                                    verifier_params or {})
        if bad:
            log.append({"question_id": qid, "action": "edit_rejected", "new_question_id": None,
                        "reason": ";".join(bad)})
            continue
        if edited:
            r["question_id"] = question_id(r["video_id"], r["task"], r["question"])
        log.append({"question_id": qid, "action": "edited" if edited else "accepted",
                    "new_question_id": r["question_id"], "reason": None})
        keep.append(r)
    return (pd.DataFrame(keep, columns=qa.columns),
            pd.DataFrame(log, columns=REVIEW_LOG_COLUMNS))


def _note(rv) -> str | None:
    v = rv.get("reviewer_note")
    return None if _blank(v) else str(v).strip()


def _as_item(r: Mapping[str, Any]) -> dict[str, Any]:
    """A QA-table row back in the agents' item shape, for the verifier."""
    def load(v):
        try:
            return json.loads(v) if isinstance(v, str) else v
        except ValueError:
            return v
    return {"task": r["task"], "question": r["question"], "answer": r["answer"],
            "clues": r["clues"], "cited_seconds": load(r["cited_seconds"]),
            "quotes": load(r["quotes"])}
