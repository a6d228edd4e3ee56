"""Nodes of the ``qa_generation`` pipeline (issue 8).

contexts (+ optional keyframe captions) -> persona agents (LLM) -> deterministic verifier ->
blind check -> optional critic -> MinHash / embedding dedup -> task balance -> exports (flat
table, SFT/RL parquets in the released layout, review sheet). Every candidate
that does not make it lands in ``qa_generation_rejections`` with its stage and reason.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pandas as pd

from evads_kedro.pipelines.qa_generation import agents, blind, dedup, export, verify, visual
from evads_kedro.taxonomy import TASK_CODES
from evads_kedro.timeline import TimelineParseError, parse_timeline

logger = logging.getLogger(__name__)

CONTEXT_COLUMNS = ["video_id", "category", "duration_s", "timeline_full", "timeline_asr"]
CANDIDATE_COLUMNS = ["video_id", "persona", "item_index", "call_key", "item_json"]
VERIFIED_COLUMNS = [
    "video_id", "persona", "item_index", "task", "question", "answer", "clues", "cited_seconds",
    "quotes", "status", "stage", "reason",
]
REJECTION_COLUMNS = ["video_id", "persona", "item_index", "task", "question", "stage", "reason"]
GAP_COLUMNS = ["video_id", "task", "wanted", "found"]


# ------------------------------------------------------------------------------ 1. context
def _cache_for(params: Mapping[str, Any], cache):
    """``cache``, or None when ``qa_generation.use_cache`` is false (absent: conf/base's true;
    pinned by tests/test_param_defaults.py)."""
    return cache if params.get("use_cache", True) else None


def build_contexts(videos: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """One row per video with a parseable full timeline (``ingested_videos`` or
    ``released_videos``); ``video_ids`` / ``max_videos`` select a subset in table order."""
    frame = videos.copy()
    wanted = params.get("video_ids")
    if wanted:
        frame = frame[frame["video_id"].astype(str).isin([str(v) for v in wanted])]
    rows = []
    for r in frame.to_dict("records"):
        text = r.get("timeline_full")
        try:
            tl = parse_timeline(text)
        except (TimelineParseError, TypeError, ValueError) as exc:
            logger.warning("qa_generation: video %s skipped, timeline does not parse: %s; "
                           "re-run ingestion for it", r.get("video_id"), exc)
            continue
        if not tl.events:
            logger.warning("qa_generation: video %s skipped, empty timeline (no OCR or ASR "
                           "events; check its ingestion quarantine row)", r.get("video_id"))
            continue
        asr = r.get("timeline_asr")
        rows.append({
            "video_id": str(r["video_id"]),
            "category": tl.category or r.get("category"),
            "duration_s": float(r.get("duration_s") or tl.duration_seconds),
            "timeline_full": text,
            "timeline_asr": asr if isinstance(asr, str) and asr.strip()
            else export.asr_only_text(text),
        })
    limit = params.get("max_videos")
    if limit is not None:
        rows = rows[: int(limit)]
    logger.info("qa_generation: %d video context(s)", len(rows))
    return pd.DataFrame(rows, columns=CONTEXT_COLUMNS)


def caption_keyframes(contexts: pd.DataFrame, frames: Mapping[str, Any],
                      params: Mapping[str, Any], cache=None) -> pd.DataFrame:
    """Captions of scene-change keyframes of every context video (``captions.backend`` not
    ``none``); ``frames`` are the ingestion frame-stack partitions. Empty table otherwise."""
    return visual.caption_rows(list(contexts["video_id"]), frames or {}, params,
                               _cache_for(params, cache))


# ------------------------------------------------------------------------------- 2. agents
def generate_candidates(contexts: pd.DataFrame, captions: pd.DataFrame,
                        params: Mapping[str, Any], cache=None
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every persona x video chat call (cached); returns (candidates, parse/LLM rejections).
    Keyframe captions, when present, reach the prompt as ``[second] caption`` lines."""
    from evads_kedro.backends.llm import build_chat

    personas = agents.load_personas(params)
    backend = build_chat(params["llm"], "qa_generation.llm")
    lines = visual.caption_lines(captions)
    ctxs = [{**r, "duration_s": _fmt_duration(r["duration_s"]),
             "captions": lines.get(str(r["video_id"]), "")}
            for r in contexts.to_dict("records")]
    cands, rejects = agents.generate(backend, ctxs, personas, params,
                                     _cache_for(params, cache))
    cand_df = pd.DataFrame(
        [{"video_id": c["video_id"], "persona": c["persona"], "item_index": c["item_index"],
          "call_key": c["call_key"], "item_json": json.dumps(c["item"], ensure_ascii=False)}
         for c in cands], columns=CANDIDATE_COLUMNS)
    rej_df = pd.DataFrame(
        [{"video_id": r["video_id"], "persona": r["persona"], "item_index": -1, "task": None,
          "question": None, "stage": r["stage"], "reason": r["reason"]} for r in rejects],
        columns=REJECTION_COLUMNS)
    logger.info("qa_generation: %d candidate item(s), %d failed call(s)/reply(ies)",
                len(cand_df), len(rej_df))
    return cand_df, rej_df


def _fmt_duration(d: Any) -> str:
    f = float(d)
    return str(int(f)) if f.is_integer() else str(f)


# ----------------------------------------------------------------------------- 3. verifier
def verify_candidates(candidates: pd.DataFrame, contexts: pd.DataFrame,
                      verifier: Mapping[str, Any] | None) -> pd.DataFrame:
    """Deterministic checks (:mod:`verify`, settings ``params:qa_generation.verifier``) on
    every candidate; status verified|rejected."""
    vparams = verifier or {}
    index = {r["video_id"]: verify.second_index(r["timeline_full"])
             for r in contexts.to_dict("records")}
    from tqdm.auto import tqdm

    rows = []
    bar = tqdm(candidates.to_dict("records"), desc="qa verify", unit="item",
               disable=candidates.empty, dynamic_ncols=True)
    n_bad = 0
    for c in bar:
        item = json.loads(c["item_json"])
        reasons = verify.check_item(item, index.get(c["video_id"], {}), vparams)
        n_bad += bool(reasons)
        bar.set_postfix(rejected=n_bad, refresh=False)
        item = item if isinstance(item, dict) else {}
        task = item.get("task")
        task = task.strip().upper() if isinstance(task, str) else None
        q = item.get("question")
        rows.append({
            "video_id": c["video_id"], "persona": c["persona"], "item_index": c["item_index"],
            "task": task,
            "question": " ".join(q.split()) if isinstance(q, str) else None,
            "answer": str(item.get("answer", "")).strip(),
            "clues": str(item.get("clues") or "").strip(),
            "cited_seconds": json.dumps(item.get("cited_seconds"), ensure_ascii=False),
            "quotes": json.dumps(item.get("quotes"), ensure_ascii=False),
            "status": "rejected" if reasons else "verified",
            "stage": "verify" if reasons else None,
            "reason": ";".join(reasons) if reasons else None,
        })
    return pd.DataFrame(rows, columns=VERIFIED_COLUMNS)


def blind_check(verified: pd.DataFrame, contexts: pd.DataFrame, params: Mapping[str, Any],
                cache=None) -> pd.DataFrame:
    """Blind check over the items that passed the deterministic checks (:mod:`blind`): the
    question alone is answered and judged against the reference; ``R5 >= threshold`` rejects
    the item (``stage=blind``, ``answerable_blind:r5=...``). Unreadable/failed calls keep the
    item unless ``blind_check.on_error: reject``. ``blind_check.enabled: false`` passes the
    table through."""
    bp = params.get("blind_check") or {}
    out = verified.copy()
    for col in ("stage", "reason"):
        out[col] = out[col].astype(object)
    out["blind_r5"] = None
    out["blind_answer"] = None
    if not bp.get("enabled", True):  # conf/base: on
        return out
    todo = list(out.index[out["status"] == "verified"])
    items = [{k: out.at[i, k] for k in ("video_id", "question", "answer", "clues")}
             for i in todo]
    timelines = dict(zip(contexts["video_id"], contexts["timeline_full"], strict=True))
    verdicts = blind.blind_verdicts(items, timelines, params,
                                    _cache_for(params, cache))
    errors = 0
    for i, v in zip(todo, verdicts, strict=True):
        out.at[i, "blind_r5"] = v["r5"]
        out.at[i, "blind_answer"] = v["blind_answer"]
        if v["status"] == "answerable" or (v["status"] == "error"
                                           and bp.get("on_error", "keep") == "reject"):
            out.loc[i, ["status", "stage", "reason"]] = ["rejected", "blind", v["reason"]]
        errors += v["status"] == "error"
    logger.info("qa_generation blind check: %d item(s), %d answerable blind, %d unreadable",
                len(todo), int((out["stage"] == "blind").sum()), errors)
    return out


def critic_pass(verified: pd.DataFrame, contexts: pd.DataFrame, params: Mapping[str, Any],
                cache=None) -> pd.DataFrame:
    """Optional LLM critic over the items that passed the deterministic checks: a ``reject``
    verdict marks the item rejected (``stage=critic``, the critic's reason). An unreadable or
    failed critic reply keeps the item unless ``critic.on_error: reject``. Disabled by default
    (``critic.enabled: false``): the table passes through unchanged."""
    cp = params.get("critic") or {}
    if not cp.get("enabled", False):
        return verified
    from evads_kedro.backends.llm import build_chat

    out = verified.copy()
    for col in ("stage", "reason"):
        out[col] = out[col].astype(object)
    todo = out.index[out["status"] == "verified"]
    ctx = {r["video_id"]: r for r in contexts.to_dict("records")}
    jobs = [(ctx[out.at[i, "video_id"]],
             {k: out.at[i, k] for k in ("task", "question", "answer", "clues")}
             | {"quotes": json.loads(out.at[i, "quotes"])}) for i in todo]
    system = (agents.prompt_folder(params) / "critic.txt").read_text(encoding="utf-8")
    backend = (build_chat(cp["llm"], "qa_generation.critic.llm") if cp.get("llm")
               else build_chat(params["llm"], "qa_generation.llm"))
    verdicts = agents.critique(backend, jobs, system, cp,
                               _cache_for(params, cache))
    errors = 0
    for i, (verdict, reason) in zip(todo, verdicts, strict=True):
        if verdict == "error":
            errors += 1
            if cp.get("on_error", "keep") != "reject":
                continue
            reason = f"critic_error:{reason}"
        elif verdict == "accept":
            continue
        else:
            reason = f"critic:{reason}"
        out.loc[i, ["status", "stage", "reason"]] = ["rejected", "critic", reason]
    logger.info("qa_generation critic: %d item(s) judged, %d rejected, %d unreadable",
                len(jobs), int((out["stage"] == "critic").sum()), errors)
    return out


# -------------------------------------------------------------------- 4. dedup and balance
def select_items(verified: pd.DataFrame, call_rejections: pd.DataFrame, contexts: pd.DataFrame,
                 params: Mapping[str, Any]
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Dedup (MinHash / embeddings) then per-video task balance over verified items, in a fixed priority
    order (video order of ``contexts``, persona order of ``params.personas``, item index).

    Returns (QA table, all rejections, gaps, MLflow metrics)."""
    persona_rank = {p: i for i, p in enumerate(params.get("personas") or {})}
    video_rank = {v: i for i, v in enumerate(contexts["video_id"])}
    v = verified.copy()
    v["_order"] = list(zip(v["video_id"].map(video_rank).fillna(1e9),
                           v["persona"].map(persona_rank).fillna(1e9), v["item_index"],
                           strict=True))
    v = v.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    ok = v[v["status"] == "verified"].reset_index(drop=True)

    dups = dedup.find_duplicates_detailed(
        list(zip(ok["video_id"], ok["question"], strict=True)), params.get("dedup") or {})
    ok["stage"] = ok["stage"].astype(object)
    ok["reason"] = ok["reason"].astype(object)
    for i, (j, how) in dups.items():
        ok.loc[i, ["status", "stage"]] = ["rejected", "dedup"]
        ok.loc[i, "reason"] = (f"duplicate_of:{ok.loc[j, 'persona']}#{ok.loc[j, 'item_index']}"
                               f" '{ok.loc[j, 'question']}' ({how})")
    alive = ok[ok["status"] == "verified"]
    tasks = list((params.get("balance") or {}).get("tasks") or TASK_CODES)
    per_task = int((params.get("balance") or {}).get("per_task", 1))
    in_tasks = alive[alive["task"].isin(tasks)]
    kept_pos, dropped, gaps = dedup.balance(in_tasks.to_dict("records"), tasks, per_task,
                                            video_ids=list(contexts["video_id"]))
    idx = list(in_tasks.index)
    for pos, reason in dropped.items():
        ok.loc[idx[pos], ["status", "stage", "reason"]] = ["rejected", "balance", reason]
    final = ok.loc[[idx[p] for p in kept_pos]].copy()

    ctx = contexts.set_index("video_id")
    final["category"] = final["video_id"].map(ctx["category"])
    final["timeline_full"] = final["video_id"].map(ctx["timeline_full"])
    final["timeline_asr"] = final["video_id"].map(ctx["timeline_asr"])
    final["question_id"] = [export.question_id(a, b, c) for a, b, c in
                            zip(final["video_id"], final["task"], final["question"], strict=True)]
    qa = final.reindex(columns=export.QA_TABLE_COLUMNS).reset_index(drop=True)

    rejected = pd.concat([
        call_rejections.reindex(columns=REJECTION_COLUMNS),
        v[v["status"] == "rejected"].reindex(columns=REJECTION_COLUMNS),
        ok[ok["status"] == "rejected"].reindex(columns=REJECTION_COLUMNS),
    ], ignore_index=True)
    gaps_df = pd.DataFrame(gaps, columns=GAP_COLUMNS)
    for g in gaps:
        logger.warning("qa_generation gap: video %s task %s has %d/%d item(s)",
                       g["video_id"], g["task"], g["found"], g["wanted"])
    metrics = _metrics(verified, call_rejections, rejected, qa, gaps_df)
    return qa, rejected, gaps_df, metrics


def _metrics(verified, call_rej, rejected, qa, gaps) -> dict[str, Any]:
    m: dict[str, float] = {
        "candidates": len(verified),
        "failed_calls": len(call_rej),
        "verified": int((verified["status"] == "verified").sum()),
        "final_items": len(qa),
        "gaps": len(gaps),
    }
    final_by_persona = Counter(qa["persona"])
    for persona, g in verified.groupby("persona"):
        m[f"candidates.{persona}"] = len(g)
        m[f"verify_rate.{persona}"] = float((g["status"] == "verified").mean())
        # acceptance = share of the persona's candidates that became final items
        m[f"accept_rate.{persona}"] = final_by_persona.get(persona, 0) / len(g)
    final_by_task = Counter(qa["task"])
    for task, g in verified.groupby("task"):
        m[f"candidates_task.{task}"] = len(g)
        m[f"accept_rate_task.{task}"] = final_by_task.get(task, 0) / len(g)
    for task, n in final_by_task.items():
        m[f"final.{task}"] = n
    for stage, n in Counter(rejected["stage"]).items():
        m[f"rejected.{stage}"] = n
    heads = Counter(str(r).split(";")[0].split(":")[0] for r in rejected["reason"])
    for reason, n in heads.items():
        m[f"reason.{reason}"] = n
    logger.info("qa_generation summary: %s", m)
    return {k: {"value": float(val), "step": 0} for k, val in m.items()}


# ------------------------------------------------------------------------------- 5. export
def export_items(qa: pd.DataFrame, export_params: Mapping[str, Any] | None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(SFT rows, RL rows, review sheet); ``export_params`` = ``params:qa_generation.export``.
    ``both_splits`` writes every item to both layouts; otherwise videos are split by a stable
    hash with ``rl_fraction`` to RL."""
    ep = export_params or {}
    if ep.get("both_splits", False):
        sft_qa, rl_qa = qa, qa
    else:
        rl_videos = export.split_videos(list(qa["video_id"]), float(ep.get("rl_fraction", 0.34)))
        is_rl = qa["video_id"].isin(rl_videos)
        sft_qa, rl_qa = qa[~is_rl], qa[is_rl]
    return export.sft_rows(sft_qa, ep), export.rl_rows(rl_qa, ep), export.review_sheet(qa)


def apply_review_sheet(qa: pd.DataFrame, review: pd.DataFrame,
                       verifier: Mapping[str, Any] | None,
                       export_params: Mapping[str, Any] | None
                       ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Re-import an edited review sheet: (reviewed QA, log, SFT rows, RL rows). Edited rows are
    re-verified with the deterministic checks (``params:qa_generation.verifier``) and exported
    as :func:`export_items` does (``params:qa_generation.export``); a failing edit is logged
    (``edit_rejected`` + reasons) and not exported. Without a sheet (file absent) every output is empty and a
    warning says so."""
    if review.attrs.get("missing_file"):
        logger.warning("qa_generation: no edited review sheet at %s; reviewed outputs are empty",
                       review.attrs["missing_file"])
        review = pd.DataFrame(columns=export.REVIEW_COLUMNS)
    reviewed, log = export.apply_review(qa, review, verifier or {})
    for r in log[log["action"] == "edit_rejected"].itertuples():
        logger.warning("qa_generation review: edit of %s rejected (%s); the item is not "
                       "exported, fix the edit_* cells and re-import", r.question_id, r.reason)
    sft, rl, _ = export_items(reviewed, export_params)
    return reviewed, log, sft, rl
