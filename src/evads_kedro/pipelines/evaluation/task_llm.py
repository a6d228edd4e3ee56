"""LLM task classifier: one cached chat call per released question -> BP / CM / ML / CI / RC.

The prompt (``task_classifier.prompt_path``, placeholder ``{question}``) asks for one line
``Task: <code>``; :func:`~.tasks.parse_task_reply` accepts a reply only when it names exactly one
code. An unusable reply is re-asked up to ``invalid_retries`` times and then recorded
``invalid`` with the raw replies; a failed call (transport, 5xx after retries) is recorded
``failed``. Either way the question falls back to the rules (:func:`.tasks.classify_tasks`).
With ``constrained`` (``auto``: whenever the backend can score fixed options, i.e. a local text
model) the model instead picks the most likely of ``Task: BP`` ... ``Task: RC``, each scored
as a complete reply (ties to the first listed, recorded in ``tied``).

Calls are cached like every other model call, keyed by (classifier model id, prompt template
hash, question id, hash of the question text): a rerun makes no call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from evads_kedro.backends.llm import build_chat, resolve_constrained
from evads_kedro.calls.cache import JsonlCache, stable_hash, text_hash
from evads_kedro.calls.runner import Job, run_jobs, run_sync
from evads_kedro.calls.templates import load_template, render
from evads_kedro.pipelines.evaluation.tasks import parse_task_reply
from evads_kedro.taxonomy import TASK_CODES

LLM_LABEL_COLUMNS = ["question_id", "llm_status", "llm_task", "llm_raw_reply", "llm_error",
                     "cached"]
DEFAULT_PROMPT = "conf/base/prompts/evaluation/task_classifier.txt"


CHOICES = tuple(f"Task: {code}" for code in TASK_CODES)


def _classify_call(backend, prompt: str, settings: Mapping[str, Any], constrained: bool):
    async def run() -> dict[str, Any]:
        replies: list[str] = []
        if constrained:
            reply = await backend.choose([{"role": "user", "content": prompt}], CHOICES)
            raw = reply.raw if isinstance(reply.raw, dict) else {}
            code = parse_task_reply(reply.text)
            if code is not None:
                return {"kind": "task_label", "status": "ok", "task": code,
                        "raw_reply": reply.text, "raw_replies": [reply.text], "attempts": 1,
                        "choice_logprobs": raw.get("choice_logprobs"),
                        "tied": raw.get("tied") or [],
                        "structured": raw["structured"] if "structured" in raw else "logprobs"}
            replies.append(reply.text)  # an endpoint without structured outputs: free text
        for _ in range(int(settings.get("invalid_retries", 1)) + 1 - len(replies)):
            reply = await backend.chat([{"role": "user", "content": prompt}],
                                       temperature=float(settings.get("temperature", 0.0)),
                                       seed=settings.get("seed", 0),
                                       max_tokens=int(settings.get("max_tokens", 8)))
            replies.append(reply.text)
            code = parse_task_reply(reply.text)
            if code is not None:
                return {"kind": "task_label", "status": "ok", "task": code,
                        "raw_reply": reply.text, "raw_replies": replies,
                        "attempts": len(replies)}
        return {"kind": "task_label", "status": "invalid", "task": None,
                "raw_reply": replies[-1] if replies else None, "raw_replies": replies,
                "attempts": len(replies),
                "error": "reply names none or several of BP, CM, ML, CI, RC"}
    return run


def llm_task_labels(qa: pd.DataFrame, cache: JsonlCache, settings: Mapping[str, Any],
                    *, progress: bool = True) -> pd.DataFrame:
    """One row per question of ``qa``: llm_status (ok / invalid / failed), llm_task (None
    unless ok), the raw reply and error, and whether it came from ``cache``."""
    backend_spec = settings.get("backend")
    if not backend_spec:
        raise ValueError("evaluation.task_classifier.method is llm but task_classifier.backend "
                         "is empty; give a backend (e.g. {backend: openai, base_url: ..., "
                         "model: ...}) or use method: rules")
    template = load_template(settings.get("prompt_path") or DEFAULT_PROMPT, ("question",))
    backend = build_chat(backend_spec, "evaluation.task_classifier.backend")
    constrained, model_id = resolve_constrained(backend, settings.get("constrained", "auto"),
                                                "task_classifier.constrained")
    template_hash = text_hash(template)
    jobs = []
    for qid, question in zip(qa["question_id"], qa["question"], strict=True):
        q = question if isinstance(question, str) else ""
        key = stable_hash({"kind": "task_label", "model": model_id,
                           "template": template_hash, "question_id": qid,
                           "question": text_hash(q)})
        jobs.append(Job(key=key, group="task_classifier", meta={"question_id": qid},
                        run=_classify_call(backend, render(template, question=q), settings,
                                           constrained)))
    concurrency = int(settings.get("concurrency") or backend_spec.get("concurrency") or 1)
    results, _ = run_sync(run_jobs(jobs, cache, concurrency={"task_classifier": concurrency},
                                   desc="task labels", progress=progress))
    rows = [{"question_id": job.meta["question_id"], "llm_status": r.get("status"),
             "llm_task": r.get("task") if r.get("status") == "ok" else None,
             "llm_raw_reply": r.get("raw_reply"), "llm_error": r.get("error"),
             "cached": bool(r.get("cached"))}
            for job, r in zip(jobs, results, strict=True)]
    return pd.DataFrame(rows, columns=LLM_LABEL_COLUMNS)
