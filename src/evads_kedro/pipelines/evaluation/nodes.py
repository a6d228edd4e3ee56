"""Nodes of the ``evaluation`` pipeline (SPEC §6, issue 6).

classify_tasks → select_questions → generate_answers → judge_answers → aggregate_results.
Generation and judging call models through :mod:`evads_kedro.backends.llm` and persist each
finished call in an append-only JSONL cache (catalog datasets ``evaluation_answer_cache`` and
``evaluation_judgement_cache``), then save their whole table before the next node starts, so a
rerun makes no repeated call and a killed run loses only the calls in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evads_kedro.backends import video_parts
from evads_kedro.backends.llm import ChatBackend, build_chat
from evads_kedro.calls.cache import JsonlCache, stable_hash, text_hash
from evads_kedro.calls.judge import judge_call, judge_settings
from evads_kedro.calls.runner import Job, run_jobs, run_sync
from evads_kedro.calls.templates import (
    ANSWER_FIELDS,
    load_template,
    render,
    resolve_path,
)
from evads_kedro.pipelines.evaluation import protocol as proto
from evads_kedro.pipelines.evaluation import report as rep
from evads_kedro.pipelines.evaluation import task_llm, tasks
from evads_kedro.pipelines.evaluation import test_split as ts
from evads_kedro.pipelines.evaluation.report import per_model_metrics
from evads_kedro.pipelines.evaluation.video_frames import frame_source, load_frames
from evads_kedro.scoring import all_scores, split_completion
from evads_kedro.taxonomy import TASKS, category_slug
from evads_kedro.timeline import parse_timeline

logger = logging.getLogger(__name__)

QUESTION_COLUMNS = [
    "question_id", "video_id", "split", "category", "category_slug", "task", "task_raw",
    "task_source", "dimension", "dimension_slug", "question", "answer", "clues",
    "timeline_asr_only", "timeline_full", "video_path", "video_exists", "ques_categories",
    "goods_category",
]
ANSWER_COLUMNS = [
    "model", "model_id", "question_id", "video_id", "sample_index", "seed", "answer_key",
    "status", "error", "input_mode", "frame_source", "n_frames", "text", "answer", "think",
    "well_formed", "latency_s", "prompt_tokens", "completion_tokens", "attempts", "cached",
]
JUDGEMENT_COLUMNS = [
    "model", "question_id", "sample_index", "answer_key", "judge_key", "judge_model_id",
    "judge_template_hash", "judge_status", "r5", "attempts", "raw_reply", "raw_replies",
    "error", "cached", "judged_text",
]
ITEM_COLUMNS = [
    "model", "model_id", "question_id", "video_id", "split", "sample_index", "category",
    "category_slug", "task", "task_source", "dimension", "dimension_slug", "question",
    "reference_answer", "input_mode", "answer_status", "answer", "well_formed", "judge_status",
    "r5", "r3", "s", "mg", "judge_raw_reply", "error", "ques_categories", "goods_category",
    "prediction", "judged_text",
]
# the official script's final_results.csv columns first, then ours
FINAL_RESULTS_COLUMNS = [
    "video_id", "ques_id", "question", "answer", "prediction", "ques_categories",
    "goods_category", "score_R5", "score_R3", "score_R2", "model", "model_id", "sample_index",
    "task", "dimension", "input_mode", "judged_text", "judge_status", "judge_raw_reply", "error",
]


# ------------------------------------------------------------------------------ questions
def _norm_category(label: Any) -> str:
    """Slug of a category label; the release writes ``母婴玩具 & 宠物`` for ``母婴玩具/宠物``."""
    if not isinstance(label, str):
        return "unknown"
    return category_slug(label.replace(" & ", "/").strip())


def _test_file_hint(test_raw: pd.DataFrame) -> str:
    return str(test_raw.attrs.get("missing_file") or test_raw.attrs.get("source_file")
               or ts.TEST_FILE)


def build_evaluation_source(released_qa: pd.DataFrame, released_videos: pd.DataFrame,
                            test_raw: pd.DataFrame, params: dict[str, Any]
                            ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Every evaluable question (released SFT/RL rows + the official test split when
    ``EVAds_TEST.parquet`` is in ``evads_data_dir``), their videos, the test import report, and
    the split the run evaluates with its banner.

    ``subset.splits: auto`` (or null) evaluates ``test`` when the file is there, else falls
    back to ``rl`` (E-VAds-R1's *training* data) and says so in the banner. Asking for ``test``
    without the file is an error naming the file and the fix."""
    roots = ts.video_roots(params.get("video_roots"))
    missing = bool(test_raw.attrs.get("missing_file")) or test_raw.empty
    if missing:
        test_qa = pd.DataFrame(columns=ts.QA_COLUMNS)
        test_videos = pd.DataFrame(columns=ts.VIDEO_COLUMNS)
        errors = pd.DataFrame(columns=ts.ERROR_COLUMNS)
    else:
        test_qa, test_videos, errors = ts.import_test_split(test_raw, roots)
        for r in errors.itertuples(index=False):
            logger.warning("%s row %s (%s, column %s): %s", ts.TEST_FILE, r.row, r.question_id,
                           r.column, r.reason)
    rq = released_qa.copy()
    for col in ("ques_categories", "goods_category"):
        if col not in rq.columns:
            rq[col] = None
    if len(test_qa):
        dup = rq["question_id"].isin(set(test_qa["question_id"]))
        if dup.any():  # one row per question id downstream; the test split's own row wins
            logger.warning("%d released SFT/RL question ids are also in %s; their test rows "
                           "are used", int(dup.sum()), ts.TEST_FILE)
        qa = pd.concat([rq.loc[~dup, [c for c in ts.QA_COLUMNS if c in rq.columns]], test_qa],
                       ignore_index=True)
    else:
        qa = rq
    vcols = ["video_id", "video_path", "video_exists"]
    rv = released_videos[[c for c in vcols if c in released_videos.columns]] \
        if "video_id" in released_videos.columns else pd.DataFrame(columns=vcols)
    videos = pd.concat([rv, test_videos], ignore_index=True).drop_duplicates(
        "video_id", keep="last") if len(test_videos) else rv
    sp = (params.get("subset") or {}).get("splits")
    auto = sp in (None, "auto", ["auto"], [])
    file_hint = _test_file_hint(test_raw)
    if auto:
        splits = ["test"] if len(test_qa) else ["rl"]
    else:
        splits = [sp] if isinstance(sp, str) else list(sp)
        if "test" in splits and not len(test_qa):
            raise ValueError(f"evaluation.subset.splits asks for the test split but "
                             f"{file_hint} is {'missing' if missing else 'empty'}: download "
                             "EVAds_TEST.parquet into evads_data_dir (EVADS_DATA_DIR or "
                             "--params evads_data_dir=DIR), or use evaluation.subset.splits=[rl]")
    if splits == ["test"]:
        banner = (f"Official E-VAds test split ({ts.TEST_FILE}, {len(test_qa)} questions, "
                  f"{int(test_videos['video_exists'].sum())}/{len(test_videos)} videos found).")
    elif "test" not in splits and not len(test_qa):
        banner = (f"NOT the test split: {ts.TEST_FILE} was not found ({file_hint}), so this run "
                  f"evaluates on {'+'.join(splits)}, which is E-VAds-R1's training data. Put "
                  "EVAds_TEST.parquet in evads_data_dir for numbers comparable with the paper.")
    else:
        banner = f"Splits {'+'.join(splits)} (chosen by evaluation.subset.splits)."
    logger.info("evaluation split: %s", banner)
    info = {"splits": splits, "auto": auto, "test_file": file_hint,
            "test_present": bool(len(test_qa)), "n_test_questions": int(len(test_qa)),
            "n_test_import_errors": int((errors["severity"] == "error").sum()),
            "n_test_import_warnings": int((errors["severity"] == "warning").sum()),
            "protocol": proto.protocol_name(params), "banner": banner}
    return qa, videos, errors, info


def classify_tasks(qa: pd.DataFrame, task_cache: JsonlCache, reference: pd.DataFrame | None,
                   params: dict[str, Any]) -> tuple[pd.DataFrame, dict]:
    """Task label (BP/CM/ML/CI/RC) of every released question + the classifier's report.

    ``method: rules`` uses the keyword rules of :mod:`.tasks`; ``method: llm`` asks the
    ``task_classifier.backend`` model per question (cached in ``task_cache``) and falls back to
    the rules for every question it cannot label. The report includes accuracy and confusion on
    the hand-checked ``reference`` questions present in ``qa``."""
    method = params.get("method", "rules")
    if method not in ("rules", "llm"):
        raise ValueError(f"evaluation.task_classifier.method {method!r} is unknown; use "
                         "'rules' or 'llm'")
    llm = None
    if method == "llm":
        llm = task_llm.llm_task_labels(qa, task_cache, params,
                                       progress=bool(params.get("progress", True)))
    labels, report = tasks.classify_tasks(
        qa.drop(columns=[c for c in ("task",) if c in qa.columns]), params,
        None if llm is None else dict(zip(llm["question_id"], llm["llm_task"], strict=True)))
    labels, report["given_labels"] = _given_labels(labels, qa)
    if llm is not None:
        labels = labels.merge(llm[["question_id", "llm_status", "llm_raw_reply"]],
                              on="question_id", how="left")
        report["llm"].update({
            "status_counts": llm["llm_status"].value_counts().to_dict(),
            "calls_from_cache": int(llm["cached"].sum()),
            "model_id": (params.get("backend") or {}).get("model_id")
            or (params.get("backend") or {}).get("model")
            or (params.get("backend") or {}).get("asset"),
        })
    report["reference"] = tasks.reference_accuracy(labels, reference)
    logger.info("task classifier (%s): raw labels form a permutation for %.1f%% of %d videos; "
                "%d labels changed by the per-video assignment", method,
                100 * (report["permutation_rate"] or 0), report["n_videos_with_5"],
                report["changed_by_assignment"])
    for sample, r in report["reference"].items():
        logger.info("task classifier on the hand-checked %s sample: %d questions, accuracy "
                    "%.3f (raw %.3f)", sample, r["n"], r["accuracy"], r["raw_accuracy"])
    return labels, report


def _given_labels(labels: pd.DataFrame, qa: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Where a split ships its task label (``ques_categories``), it replaces the classifier's:
    mapped to a task when the spelling is known, kept raw (no task) otherwise. Returns the
    labels and a report with the unknown spellings and the rule classifier's accuracy
    against the real labels."""
    raw = (qa["ques_categories"] if "ques_categories" in qa.columns
           else pd.Series([None] * len(qa))).reset_index(drop=True)
    given_task = (qa["task"] if "task" in qa.columns else pd.Series([None] * len(qa))
                  ).reset_index(drop=True)
    has_raw = raw.map(lambda v: isinstance(v, str) and bool(v.strip()))
    has_task = given_task.isin(TASKS)
    labels = labels.copy()
    labels["ques_categories"] = raw.to_numpy()
    labels["task_classifier"] = labels["task"]
    use = (has_raw | has_task).to_numpy()
    labels.loc[use, "task"] = given_task[use].to_numpy()
    labels.loc[use, "task_source"] = "given"
    known = (has_raw & has_task).to_numpy()
    report: dict[str, Any] = {
        "n_given": int(use.sum()), "n_mapped": int(known.sum()),
        "unknown_spellings": raw[(has_raw & ~has_task)].value_counts().to_dict(),
    }
    if known.any():
        hit = labels.loc[known, "task_classifier"] == labels.loc[known, "task"]
        report["classifier_accuracy_vs_given"] = float(hit.mean())
        report["classifier_accuracy_n"] = int(known.sum())
        logger.info("task classifier vs the split's own labels: accuracy %.3f on %d questions",
                    float(hit.mean()), int(known.sum()))
    if report["unknown_spellings"]:
        logger.warning("unknown ques_categories spellings (kept as given, no task): %s",
                       report["unknown_spellings"])
    return labels, report


def _asr_only(row: pd.Series) -> str:
    """The ASR-only timeline given to the model under test (SPEC §6): the RL prompt's own
    timeline when the row is from the RL split (kept as released), else derived."""
    pt = row.get("prompt_timeline")
    if row.get("split") == "test":  # the official asr_input, as given
        return pt if isinstance(pt, str) else ""
    if isinstance(pt, str) and pt.startswith("Voiceover:"):
        return pt
    return parse_timeline(row["timeline_full"]).to_asr_only().render()


def _limit(value: Any) -> int | None:
    """``max_questions`` as an int; null / "null" / "all" / 0 mean no limit (CLI strings)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in
                         ("", "null", "none", "all")):
        return None
    return int(value) or None


def select_questions(qa: pd.DataFrame, task_labels: pd.DataFrame, videos: pd.DataFrame,
                     params: dict[str, Any]) -> pd.DataFrame:
    """The evaluated subset: whole videos (all their questions) from ``subset.splits``, in a
    seeded order, as many as fit in ``subset.max_questions`` (at least one video, cut only when
    the limit is below one video); or an explicit ``subset.question_ids``."""
    sp = dict(params.get("subset") or {})
    df = qa.drop(columns=[c for c in ("task",) if c in qa.columns])
    df = df.merge(task_labels[["question_id", "task", "task_raw", "task_source"]],
                  on="question_id", how="left")
    splits = sp.get("splits")
    if splits in (None, "auto", ["auto"], []):  # the test split when present, else RL
        splits = ["test"] if (df["split"] == "test").any() else ["rl"]
    splits = [splits] if isinstance(splits, str) else list(splits)
    df = df[df["split"].isin(splits)]
    if sp.get("question_ids"):
        df = df[df["question_id"].isin(list(sp["question_ids"]))]
    elif _limit(sp.get("max_questions")):
        limit = _limit(sp["max_questions"])
        vids = sorted(df["video_id"].unique())
        rng = np.random.default_rng(int(sp.get("seed", 0)))
        order = [vids[i] for i in rng.permutation(len(vids))]
        sizes = df.groupby("video_id").size()
        chosen, total = [], 0
        for v in order:  # whole videos while they fit (a video's 5 questions stay together)
            if total + int(sizes[v]) > limit:
                if not chosen:  # a limit below one video: the first video's first questions
                    chosen.append(v)
                break
            chosen.append(v)
            total += int(sizes[v])
        df = df[df["video_id"].isin(chosen)]
        if len(df) > limit:
            df = df.sort_values(["video_id", "question_id"]).head(limit)
    if df.empty:
        raise ValueError("evaluation subset is empty: check evaluation.subset (splits "
                         f"{splits}) and that the ingestion tables are there")
    vcols = [c for c in ("video_id", "video_path", "video_exists") if c in videos.columns]
    df = df.drop(columns=[c for c in ("video_path", "video_exists") if c in df.columns])
    df = df.merge(videos[vcols].drop_duplicates("video_id"), on="video_id", how="left") \
        if "video_id" in vcols else df.assign(video_path=None, video_exists=False)
    out = pd.DataFrame({
        "question_id": df["question_id"],
        "video_id": df["video_id"].astype(str),
        "split": df["split"],
        "category": df["category"],
        "category_slug": df["category"].map(_norm_category),
        "task": df["task"],
        "task_raw": df["task_raw"],
        "task_source": df["task_source"],
        "dimension": df["task"].map(lambda t: TASKS[t].dimension if t in TASKS else None),
        "question": df["question"],
        "answer": df["answer"],
        "clues": [c if isinstance(c, str) and c.strip() else (t if isinstance(t, str) else "")
                  for c, t in zip(df["clues"], df.get("think", pd.Series([None] * len(df))), strict=True)],
        "timeline_asr_only": [_asr_only(r) for _, r in df.iterrows()],
        "timeline_full": df["timeline_full"],
        "video_path": df.get("video_path"),
        "video_exists": df.get("video_exists", False),
        "ques_categories": df["ques_categories"] if "ques_categories" in df.columns else None,
        "goods_category": df["goods_category"] if "goods_category" in df.columns else None,
    })
    out["dimension_slug"] = out["dimension"].map(rep.DIMENSION_SLUG)
    out["video_exists"] = out["video_exists"].fillna(False).astype(bool)
    out = _confine_video_paths(out, params.get("video_roots"))
    out = out.sort_values(["video_id", "question_id"]).reset_index(drop=True)
    logger.info("evaluation subset: %d questions from %d videos (splits %s)", len(out),
                out["video_id"].nunique(), splits)
    return out[QUESTION_COLUMNS]


def _confine_video_paths(questions: pd.DataFrame, roots: Any) -> pd.DataFrame:
    """Drop every ``video_path`` that does not resolve (symlinks included) inside one of
    ``roots`` (``evaluation.video_roots``; relative to the project root): whatever a table
    says, frames are only ever read from the configured video folders. Such a video is then
    answered without frames (``input_mode = text_no_video``) and logged with the fix.
    ``roots`` None leaves paths as they are (no configured root = no restriction)."""
    if roots is None:
        return questions
    allowed = [resolve_path(r).resolve() for r in ([roots] if isinstance(roots, str) else roots)]
    out = questions.copy()
    refused: dict[str, str] = {}
    for i, (vid, path) in enumerate(zip(out["video_id"], out["video_path"], strict=True)):
        if not isinstance(path, str) or not path:
            continue
        real = Path(path).resolve()
        if not any(real == r or r in real.parents for r in allowed):
            refused[vid] = path
            out.iat[i, out.columns.get_loc("video_path")] = None
            out.iat[i, out.columns.get_loc("video_exists")] = False
    for vid, path in refused.items():
        logger.warning("video %s: %s is outside evaluation.video_roots %s; answered without "
                       "frames. Add its folder to evaluation.video_roots if it is yours.", vid,
                       path, [str(r) for r in allowed])
    return out


# ------------------------------------------------------------------------------ generation
def _enabled_models(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The models under test of this run: exactly the names in ``evaluation.models`` when it
    is set (their ``enabled`` flags ignored), else every entry whose ``enabled`` is not false.
    An entry's keys are passed on as they are (e.g. ``backend.adapter_dir``)."""
    table = params.get("models_under_test") or {}
    chosen = params.get("models")
    if isinstance(chosen, str):
        chosen = [chosen.strip("[]")]
    if chosen:  # "a;b" too: kedro's --params splits on every comma, even inside [a,b]
        chosen = [c.strip() for item in chosen for c in re.split(r"[;,+]", str(item))
                  if c.strip()]
    if chosen:
        unknown = [m for m in chosen if not table.get(m)]
        if unknown:
            raise ValueError(f"evaluation.models names {unknown}, not in "
                             f"evaluation.models_under_test ({sorted(table)}); fix the name or "
                             "add the entry")
        return {m: dict(table[m]) for m in chosen}
    models = {name: dict(spec) for name, spec in table.items()
              if spec and spec.get("enabled", True)}
    if not models:
        raise ValueError("no enabled model under test: set evaluation.models_under_test or "
                         "evaluation.models=[name,...]")
    return models


def _model_settings(spec: Mapping[str, Any], gen: Mapping[str, Any],
                    params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Generation settings of one model: the protocol's defaults, then the pipeline's
    ``generation`` keys, then the model's own keys (null values do not override)."""
    params = params or {}
    defaults = proto.protocol_defaults(params)
    keys = ("temperature", "seed", "n_samples", "max_tokens", "prompt_path", "video_token",
            "n_frames", "max_side", "system_prompt", "concurrency", "video_native")
    s = {k: gen.get(k) for k in keys}
    s.update({k: spec[k] for k in keys if k in spec and spec[k] is not None})
    if s.get("prompt_path") is None:
        s["prompt_path"] = defaults["answer_prompt_path"]
    for k in ("temperature", "max_tokens"):
        if s.get(k) is None:
            s[k] = defaults[k]
    s["timeline"] = spec.get("timeline", "asr_only")
    s["video"] = proto.video_mode(spec, params)
    if s["timeline"] not in ("asr_only", "full", "none"):
        raise ValueError(f"timeline must be asr_only, full or none, got {s['timeline']!r}")
    return s


def _messages(prompt: str, system_prompt: str | None) -> list[dict[str, Any]]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": prompt}]


def _answer_jobs(questions: pd.DataFrame, params: Mapping[str, Any]):
    gen = dict(params.get("generation") or {})
    frames_dir = params.get("frames_dir")
    frames_dir = str(resolve_path(frames_dir)) if frames_dir else None
    jobs: list[Job] = []
    concurrency: dict[str, int] = {}
    models_meta: dict[str, dict[str, Any]] = {}
    for name, spec in _enabled_models(params).items():
        s = _model_settings(spec, gen, params)
        bparams = dict(spec.get("backend") or {})
        if s["video"] == "native":
            if bparams.get("backend", "openai") != "openai":
                raise ValueError(f"model {name!r}: video: native sends the video file to an "
                                 "OpenAI-compatible endpoint (vLLM, SGLang); a local backend "
                                 "takes video: frames or none")
            extra = dict(bparams.get("extra_body") or {})
            extra.setdefault("mm_processor_kwargs",
                             video_parts.processor_kwargs(s.get("video_native")))
            bparams["extra_body"] = extra
        backend: ChatBackend = build_chat(
            bparams, f"evaluation.models_under_test.{name}.backend")
        if s["video"] == "frames" and not backend.supports_images:
            raise ValueError(f"model {name!r} asks for video frames but {backend!r} has no "
                             "image input; use video: none or a vision model")
        template = load_template(s["prompt_path"], ANSWER_FIELDS)
        concurrency[name] = int(s.get("concurrency") or spec.get("backend", {}).get(
            "concurrency") or 1)
        models_meta[name] = {"model_id": backend.model_id, "timeline": s["timeline"],
                             "video": s["video"], "n_frames": s.get("n_frames")}
        n_samples = int(s.get("n_samples") or 1)
        base_seed = s.get("seed")
        for q in questions.itertuples(index=False):
            timeline = {"asr_only": q.timeline_asr_only, "full": q.timeline_full,
                        "none": ""}[s["timeline"]]
            prompt = render(template, video_token=s.get("video_token") or "",
                            timeline=timeline, question=q.question)
            messages = _messages(prompt, s.get("system_prompt"))
            src = None
            image_spec = None
            video_spec = None
            if s["video"] == "native":
                vpath = q.video_path if isinstance(q.video_path, str) and q.video_exists \
                    else None
                if vpath and Path(vpath).is_file():
                    src = vpath
                    video_spec = {"path": vpath, **video_parts.video_identity(vpath)}
            elif s["video"] == "frames":
                vpath = q.video_path if isinstance(q.video_path, str) else None
                src = frame_source(q.video_id, vpath, frames_dir)
                if src is not None:
                    image_spec = {"video_id": q.video_id, "source": src,
                                  "n_frames": int(s["n_frames"]), "max_side": s.get("max_side")}
            input_mode = ("text" if s["video"] == "none" else
                          "video+text" if video_spec else
                          "frames+text" if src else "text_no_video")
            for k in range(n_samples):
                seed = None if base_seed is None else int(base_seed) + k
                decoding = {"temperature": float(s["temperature"]),
                            "max_tokens": int(s["max_tokens"])}
                key = stable_hash({"kind": "answer", "model": backend.model_id,
                                   "messages": messages, "images": image_spec,
                                   **({"video": {k: video_spec[k] for k in ("name", "sha256")},
                                       "video_kwargs": bparams.get("extra_body")}
                                      if video_spec else {}),
                                   "decoding": decoding, "seed": seed, "sample_index": k})
                meta = {"model_id": backend.model_id, "question_id": q.question_id,
                        "sample_index": k, "seed": seed, "input_mode": input_mode,
                        "frame_source": src}
                jobs.append(Job(key=key, group=name, meta={**meta, "_model": name,
                                                           "_video_id": q.video_id},
                                run=_answer_call(backend, messages, decoding, seed,
                                                 image_spec, q, frames_dir, video_spec)))
    return jobs, concurrency, models_meta


def _answer_call(backend, messages, decoding, seed, image_spec, q, frames_dir,
                 video_spec=None):
    async def run() -> dict[str, Any]:
        if not isinstance(q.question, str) or not q.question.strip():  # a failed item, no call
            raise ValueError(f"released_qa row {q.question_id} has no question text; re-import "
                             "the release (kedro run --pipelines ingestion --tags released)")
        images = None
        if image_spec is not None:
            vpath = q.video_path if isinstance(q.video_path, str) else None
            frames, _ = await asyncio.to_thread(load_frames, q.video_id, vpath, frames_dir,
                                                image_spec["n_frames"], image_spec["max_side"])
            images = list(frames)
        if video_spec is not None:
            part = await asyncio.to_thread(video_parts.video_url_part, video_spec["path"])
            messages_sent = video_parts.with_video(messages, part)
        else:
            messages_sent = messages
        reply = await backend.chat(messages_sent, temperature=decoding["temperature"], seed=seed,
                                   max_tokens=decoding["max_tokens"], images=images)
        return {"kind": "answer", "status": "ok", "text": reply.text, "usage": reply.usage,
                "latency_s": round(reply.latency, 4), "attempts": reply.attempts,
                "n_frames": len(images or [])}
    return run


def _run_options(params: Mapping[str, Any]) -> dict[str, bool]:
    """``run_jobs``' options from ``evaluation.progress`` / ``evaluation.cache_failures``
    (absent: conf/base's true / false; pinned by tests/test_param_defaults.py)."""
    return {"progress": bool(params.get("progress", True)),
            "cache_failures": bool(params.get("cache_failures", False))}


def generate_answers(questions: pd.DataFrame, answer_cache: JsonlCache,
                     params: dict[str, Any]) -> pd.DataFrame:
    """Answer every (model under test, question, sample); one row each, failures included."""
    jobs, concurrency, _ = _answer_jobs(questions, params)
    results, stats = run_sync(run_jobs(
        jobs, answer_cache, concurrency=concurrency, desc="answers", **_run_options(params)))
    rows = []
    for job, r in zip(jobs, results, strict=True):
        ok = r.get("status") == "ok"
        comp = split_completion(r.get("text") or "") if ok else None
        usage = r.get("usage") or {}
        rows.append({
            "model": job.meta["_model"], "model_id": job.meta["model_id"],
            "question_id": job.meta["question_id"], "video_id": job.meta["_video_id"],
            "sample_index": job.meta["sample_index"], "seed": job.meta["seed"],
            "answer_key": job.key, "status": r.get("status"), "error": r.get("error"),
            "input_mode": job.meta["input_mode"], "frame_source": job.meta["frame_source"],
            "n_frames": r.get("n_frames", 0), "text": r.get("text"),
            "answer": comp.answer if comp else None, "think": comp.think if comp else None,
            "well_formed": comp.well_formed if comp else None,
            "latency_s": r.get("latency_s"), "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "attempts": r.get("attempts"), "cached": bool(r.get("cached")),
        })
    out = pd.DataFrame(rows, columns=ANSWER_COLUMNS)
    out["seed"] = out["seed"].astype("Int64")
    return out


# ---------------------------------------------------------------------------------- judge
def judge_answers(questions: pd.DataFrame, answers: pd.DataFrame, judgement_cache: JsonlCache,
                  params: dict[str, Any]) -> pd.DataFrame:
    """Judge every answered item (only the inside of ``<answer>`` when present, SPEC §6).

    Cache key: (judge model id, judge template hash, question id, hash of the judged text).
    An answer whose generation failed gets ``judge_status = skipped`` (counted as failed)."""
    js = judge_settings(proto.with_judge_prompt(params))
    official = proto.protocol_name(params) == "official"
    qs = questions.set_index("question_id")
    jobs: list[Job] = []
    rows: list[dict[str, Any]] = []
    job_rows: list[int] = []
    for a in answers.itertuples(index=False):
        base = {"model": a.model, "question_id": a.question_id, "sample_index": a.sample_index,
                "answer_key": a.answer_key, "judge_model_id": js["model_id"],
                "judge_template_hash": js["template_hash"]}
        if a.status != "ok":
            rows.append({**base, "judge_key": None, "judge_status": "skipped", "r5": None,
                         "attempts": 0, "raw_reply": None, "raw_replies": None,
                         "error": f"generation {a.status}: {a.error}", "cached": False})
            continue
        q = qs.loc[a.question_id]
        judged = proto.judged_text(a.text) if official else (a.answer or "")
        key = stable_hash({"kind": "judgement", "judge": js["model_id"],
                           "template": js["template_hash"], "question_id": a.question_id,
                           "judged": text_hash(judged)})
        prompt = render(js["template"], question=q["question"], metadata=q["timeline_full"],
                        clues=q["clues"] or "", reference_answer=q["answer"],
                        model_output=judged)
        jobs.append(Job(key=key, group="judge", run=judge_call(js, prompt),
                        meta={"question_id": a.question_id, "judge_model_id": js["model_id"]}))
        job_rows.append(len(rows))
        rows.append({**base, "judge_key": key, "judged_text": judged})
    results, stats = run_sync(run_jobs(
        jobs, judgement_cache, concurrency={"judge": js["concurrency"]}, desc="judgements",
        **_run_options(params)))
    for i, r in zip(job_rows, results, strict=True):
        replies = r.get("raw_replies")
        rows[i].update({"judge_status": r.get("status"), "r5": r.get("r5"),
                        "attempts": r.get("attempts"), "raw_reply": r.get("raw_reply"),
                        "raw_replies": None if replies is None else
                        json.dumps(replies, ensure_ascii=False),
                        "error": r.get("error"), "cached": bool(r.get("cached"))})
    out = pd.DataFrame(rows, columns=JUDGEMENT_COLUMNS)
    out["r5"] = out["r5"].astype(float)
    n_inv = int((out["judge_status"] == "invalid").sum())
    if n_inv:
        logger.warning("%d of %d judgements invalid (no legal 'Answer: <score>' after %d "
                       "tries); counted in the report, raw replies kept", n_inv, len(out),
                       js["invalid_retries"] + 1)
    return out



# ---------------------------------------------------------------------------- aggregation
def final_results(item_table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{"<model>/final_results": table}``: per model, one row per (question, sample) in the
    official script's ``final_results.csv`` layout (``score_R2`` is our S), then our columns.
    Scores are empty where the judgement is invalid or failed (counted in the breakdown)."""
    t = item_table.rename(columns={"question_id": "ques_id", "reference_answer": "answer_ref"})
    out = pd.DataFrame({
        "video_id": t["video_id"], "ques_id": t["ques_id"], "question": t["question"],
        "answer": t["answer_ref"], "prediction": t["prediction"],
        "ques_categories": t["ques_categories"], "goods_category": t["goods_category"],
        "score_R5": t["r5"], "score_R3": t["r3"], "score_R2": t["s"], "model": t["model"],
        "model_id": t["model_id"], "sample_index": t["sample_index"], "task": t["task"],
        "dimension": t["dimension"], "input_mode": t["input_mode"],
        "judged_text": t["judged_text"], "judge_status": t["judge_status"],
        "judge_raw_reply": t["judge_raw_reply"], "error": t["error"],
    })[FINAL_RESULTS_COLUMNS]
    return {f"{m}/final_results": g.reset_index(drop=True)
            for m, g in out.groupby("model", sort=False)}


def aggregate_results(questions: pd.DataFrame, answers: pd.DataFrame,
                      judgements: pd.DataFrame, task_report: dict[str, Any],
                      params: dict[str, Any], split_info: dict[str, Any] | None = None):
    """Per-item table, long breakdown, leaderboard (CSV + markdown + plot), MLflow metrics,
    ``{model: {metric: value}}`` for one MLflow run per model (:func:`per_model_metrics`) and
    the per-model ``final_results`` tables (:func:`final_results`)."""
    rp = dict(params.get("report") or {})
    j = judgements.drop(columns=["answer_key"]).rename(columns={
        "error": "judge_error", "attempts": "judge_attempts", "cached": "judge_cached"})
    items = answers.merge(j, on=["model", "question_id", "sample_index"], how="left")
    items = items.merge(questions.drop(columns=["video_id"]).rename(
        columns={"answer": "reference_answer"}), on="question_id", how="left")
    items["judge_status"] = items["judge_status"].fillna("skipped")
    scores = items["r5"].map(lambda v: all_scores(v) if pd.notna(v) else {})
    for k in ("r3", "s", "mg"):
        items[k] = scores.map(lambda d, k=k: d.get(k, np.nan)).astype(float)
    items["r5"] = items["r5"].astype(float)
    item_table = pd.DataFrame({
        "model": items["model"], "model_id": items["model_id"],
        "question_id": items["question_id"], "video_id": items["video_id"],
        "split": items["split"], "sample_index": items["sample_index"],
        "category": items["category"], "category_slug": items["category_slug"],
        "task": items["task"], "task_source": items["task_source"],
        "dimension": items["dimension"], "dimension_slug": items["dimension_slug"],
        "question": items["question"], "reference_answer": items["reference_answer"],
        "input_mode": items["input_mode"], "answer_status": items["status"],
        "answer": items["answer"],
        "well_formed": items["well_formed"], "judge_status": items["judge_status"],
        "r5": items["r5"], "r3": items["r3"], "s": items["s"], "mg": items["mg"],
        "judge_raw_reply": items["raw_reply"],
        "error": items["error"].where(items["error"].notna(), items["judge_error"]),
        "ques_categories": items["ques_categories"],
        "goods_category": items["goods_category"].where(items["goods_category"].notna(),
                                                        items["category"]),
        "prediction": items["text"], "judged_text": items["judged_text"],
    })[ITEM_COLUMNS]
    table = rep.breakdown(item_table, n_boot=int(rp.get("bootstrap", 1000)),
                          level=float(rp.get("level", 0.95)), seed=int(rp.get("seed", 0)))
    models = (answers.groupby("model", sort=False)
              .agg(model_id=("model_id", "first"),
                   input=("input_mode", lambda s: ", ".join(
                       f"{m}×{n}" if len(s.unique()) > 1 else m
                       for m, n in s.value_counts().items())))
              .reset_index())
    models_cfg = params.get("models_under_test") or {}
    models["timeline"] = models["model"].map(lambda m: (models_cfg.get(m) or {}).get(
        "timeline", "asr_only"))
    models["input"] = models["timeline"] + " timeline; " + models["input"]
    jp = dict(params.get("judge") or {})
    judged = judgements["judge_model_id"].dropna()
    judge = {"model_id": judged.iloc[0] if len(judged) else "none",
             "template": proto.judge_prompt_path(params),
             "template_hash": (judgements["judge_template_hash"].dropna().iloc[0]
                               if judgements["judge_template_hash"].notna().any() else ""),
             "temperature": jp.get("temperature", 0.0), "seed": jp.get("seed", 42),
             "smoke_test": bool(jp.get("smoke_test", False))}
    board = rep.leaderboard(table, models)
    board.insert(3, "judge", judge["model_id"] + (" (smoke test)" if judge["smoke_test"] else ""))
    md = rep.markdown_report(
        board, table, judge=judge,
        task_report=task_report,
        subset={"n_questions": int(questions["question_id"].nunique()),
                "n_videos": int(questions["video_id"].nunique()),
                "splits": sorted(questions["split"].unique().tolist())},
        banner=(split_info or {}).get("banner"))
    mets = rep.metrics(table, task_report)
    fig = rep.plot(board, title="E-VAds evaluation" + (" (smoke-test judge)"
                                                      if judge["smoke_test"] else ""))
    return (item_table, table, board, md, mets, fig, per_model_metrics(board),
            final_results(item_table))
