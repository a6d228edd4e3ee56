"""Blind check (issue 8, verifier step 2): does the question need the video at all?

For every item that passed the deterministic checks, the answering model gets the question
alone (no timeline, no captions) and the evaluation judge (same template, strict
``Answer: <R5>`` parsing and retries as :func:`evads_kedro.calls.judge.judge_call`)
grades that blind answer against the reference. ``R5 >= threshold`` means the item is answerable
blind and is rejected as ``answerable_blind``. Both calls are cached: the blind answer by
(model, messages, decoding), the judgement by (judge model, template hash, question, reference,
blind answer). A failed or unreadable call keeps the item unless ``on_error: reject``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from evads_kedro.calls.cache import stable_hash, text_hash
from evads_kedro.calls.judge import judge_call, judge_settings
from evads_kedro.calls.runner import Job
from evads_kedro.calls.templates import render
from evads_kedro.scoring import split_completion

logger = logging.getLogger(__name__)


def judge_settings_for(bp: Mapping[str, Any], default_llm: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation judge settings (backend, template, decoding, identity) for the blind
    check: ``blind_check.judge`` with its backend defaulting to the agents' llm."""
    j = dict(bp.get("judge") or {})
    j["backend"] = j.get("backend") or dict(default_llm)
    return judge_settings({"judge_prompt_path": bp.get("judge_prompt_path",
                                                       "conf/base/prompts/evaluation/judge.txt"),
                           "judge": j}, "qa_generation.blind_check.judge")


def blind_verdicts(items: list[Mapping[str, Any]], timelines: Mapping[str, str],
                   params: Mapping[str, Any], cache=None) -> list[dict[str, Any]]:
    """One ``{status: answerable|needs_video|error, r5, blind_answer, reason}`` per item
    (``items`` carry video_id, question, answer, clues)."""
    from evads_kedro.backends.llm import build_chat
    from evads_kedro.pipelines.qa_generation.agents import (
        _chat_job,
        _text_or_error,
        prompt_folder,
    )
    from evads_kedro.pipelines.qa_generation.calls import run_calls

    bp = dict(params.get("blind_check") or {})
    if not items:
        return []
    threshold = float(bp.get("threshold", 0.75))
    answerer = (build_chat(bp["llm"], "qa_generation.blind_check.llm") if bp.get("llm")
                else build_chat(params["llm"], "qa_generation.llm"))
    decoding = dict(bp.get("decoding") or {"temperature": 0.0, "seed": 42, "max_tokens": 128})
    folder = prompt_folder(params)
    template = (folder / bp.get("prompt_file", "blind_answer.txt")).read_text(encoding="utf-8")
    conc = int(params.get("concurrency", 4))

    jobs = []
    for it in items:
        msgs = [{"role": "user", "content": render(template.strip(), question=it["question"])}]
        key = stable_hash({"kind": "qa_blind_answer", "model": answerer.model_id,
                           "messages": msgs, "decoding": decoding})
        jobs.append(_chat_job(answerer, msgs, decoding, key, {}))
    answers = run_calls(jobs, cache, concurrency=conc, desc="qa blind answers",
                        backends=[answerer])

    js = judge_settings_for(bp, params["llm"])
    out: list[dict[str, Any]] = [{} for _ in items]
    judge_jobs, judge_pos = [], []
    for i, (it, res) in enumerate(zip(items, answers, strict=True)):
        text, error = _text_or_error(res)
        if text is None or not text.strip():
            out[i] = {"status": "error", "r5": None, "blind_answer": text,
                      "reason": f"blind_answer_error:{error or 'empty'}"}
            continue
        blind = split_completion(text).answer
        prompt = render(js["template"], question=it["question"],
                        metadata=timelines.get(it["video_id"], ""), clues=it.get("clues") or "",
                        reference_answer=it["answer"], model_output=blind)
        key = stable_hash({"kind": "qa_blind_judgement", "judge": js["model_id"],
                           "template": js["template_hash"], "question": it["question"],
                           "reference": it["answer"], "judged": text_hash(blind)})
        judge_jobs.append(Job(key=key, run=judge_call(js, prompt), group="judge"))
        judge_pos.append((i, blind))
    judged = run_calls(judge_jobs, cache, concurrency=js["concurrency"], desc="qa blind judge",
                       backends=[js["backend"]])
    for (i, blind), r in zip(judge_pos, judged, strict=True):
        if r.get("status") != "ok" or r.get("r5") is None:
            out[i] = {"status": "error", "r5": None, "blind_answer": blind,
                      "reason": f"blind_judge_error:{r.get('status')}"}
        elif float(r["r5"]) >= threshold:
            out[i] = {"status": "answerable", "r5": float(r["r5"]), "blind_answer": blind,
                      "reason": f"answerable_blind:r5={float(r['r5']):g}>={threshold:g}"}
        else:
            out[i] = {"status": "needs_video", "r5": float(r["r5"]), "blind_answer": blind,
                      "reason": None}
    return out
