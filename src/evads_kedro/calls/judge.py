"""The LLM judge of SPEC §6: settings from parameters, one judgement call, strict reply parsing.

Shared by evaluation (grading answers), qa_generation (the blind check) and rl_training (the
judge reward): :func:`judge_settings` builds the backend, template and decoding once, with the
judge's identity (model id, template hash) for cache keys; :func:`judge_call` makes a coroutine
factory of one judgement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evads_kedro.backends.llm import OpenAICompatibleChat, build_chat, resolve_constrained
from evads_kedro.calls.cache import text_hash
from evads_kedro.calls.templates import JUDGE_FIELDS, load_template
from evads_kedro.scoring import InvalidScore, parse_judge_reply


def judge_settings(params: Mapping[str, Any], where: str = "evaluation.judge") -> dict[str, Any]:
    """Judge backend + template + decoding, with its identity (model id, template hash);
    ``where`` is the judge block's key path, named in a bad-key error."""
    j = dict(params.get("judge") or {})
    path = params.get("judge_prompt_path") or j.get("prompt_path")
    if not path:
        raise ValueError("set evaluation.judge_prompt_path to a judge prompt template")
    template = load_template(path, JUDGE_FIELDS)
    backend = build_chat(j.get("backend") or {}, f"{where}.backend")
    setting = j.get("constrained", False)
    official = params.get("protocol") == "official"
    if official and isinstance(backend, OpenAICompatibleChat):
        # parity: the official script's judge is a free-text endpoint (it parses the reply);
        # a local judge is no stand-in for it and keeps its constrained choice
        setting = False
    constrained, model_id = resolve_constrained(backend, setting, "evaluation.judge.constrained")
    # the official script lets its judge write up to 8,000 tokens and reads the last Answer:
    max_tokens = j.get("max_tokens") or (OFFICIAL_JUDGE_MAX_TOKENS if official else 16)
    return {"backend": backend, "template": template, "template_path": str(path),
            "template_hash": text_hash(template), "model_id": model_id,
            "constrained": bool(constrained),
            "temperature": float(j.get("temperature", 0.0)), "seed": j.get("seed", 42),
            "max_tokens": int(max_tokens),
            "invalid_retries": int(j.get("invalid_retries", 2)),
            "concurrency": int(j.get("concurrency") or (j.get("backend") or {}).get(
                "concurrency") or 1),
            "smoke_test": bool(j.get("smoke_test", False))}


OFFICIAL_JUDGE_MAX_TOKENS = 8000

# The five legal judge replies (SPEC §6), scored as fixed options by a constrained judge.
JUDGE_CHOICES = ("Answer: 0", "Answer: 0.25", "Answer: 0.5", "Answer: 0.75", "Answer: 1.0")


def judge_call(js: Mapping[str, Any], prompt: str):
    """Coroutine factory of one judgement (reused by the GRPO judge reward): ask, parse
    strictly, re-ask up to ``invalid_retries`` times, else an ``invalid`` record with the raw
    replies. A ``constrained`` judge instead picks one of :data:`JUDGE_CHOICES`: a local model
    by log-probability, an endpoint through structured outputs (``structured`` records how;
    an endpoint that honours none replies freely and is parsed as above). Transport failures
    raise :class:`~evads_kedro.backends.llm.ChatError`."""

    async def run() -> dict[str, Any]:
        replies: list[str] = []
        error = ""
        if js.get("constrained"):
            reply = await js["backend"].choose([{"role": "user", "content": prompt}],
                                               JUDGE_CHOICES)
            raw = reply.raw if isinstance(reply.raw, dict) else {}
            how = raw["structured"] if "structured" in raw else "logprobs"
            try:
                return {"kind": "judgement", "status": "ok",
                        "r5": parse_judge_reply(reply.text), "raw_reply": reply.text,
                        "raw_replies": [reply.text], "attempts": 1,
                        "choice_logprobs": raw.get("choice_logprobs"),
                        "tied": raw.get("tied") or [], "structured": how}
            except InvalidScore as exc:  # an endpoint without structured outputs replied
                replies.append(reply.text)  # freely: parse and re-ask like a free judge
                error = str(exc)
        for _ in range(js["invalid_retries"] + 1 - len(replies)):
            reply = await js["backend"].chat([{"role": "user", "content": prompt}],
                                             temperature=js["temperature"], seed=js["seed"],
                                             max_tokens=js["max_tokens"])
            replies.append(reply.text)
            try:
                r5 = parse_judge_reply(reply.text)
            except InvalidScore as exc:
                error = str(exc)
                continue
            return {"kind": "judgement", "status": "ok", "r5": r5, "raw_reply": reply.text,
                    "raw_replies": replies, "attempts": len(replies)}
        return {"kind": "judgement", "status": "invalid", "r5": None,
                "raw_reply": replies[-1] if replies else None, "raw_replies": replies,
                "attempts": len(replies), "error": error}
    return run


# A prompt that asks for exactly one legal reply: a judge able to return every level follows it.
LEVEL_PROMPT = "Reply with exactly this line and nothing else: {choice}"


async def levels_reachable(js: Mapping[str, Any]) -> list[float]:
    """The legal scores the judge returns when a prompt asks for exactly that score (one call
    per level, in :data:`JUDGE_CHOICES` order; a failed or invalid call reaches nothing)."""
    reached = []
    for choice in JUDGE_CHOICES:
        rec = await judge_call(js, LEVEL_PROMPT.format(choice=choice))()
        if rec["status"] == "ok" and rec["raw_reply"] and rec["r5"] == parse_judge_reply(choice):
            reached.append(rec["r5"])
    return reached
