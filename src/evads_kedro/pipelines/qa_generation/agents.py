"""Persona agents: prompts from ``conf/``, chat calls through the project client, JSON extraction.

Each persona (Consumer, Expert, Skeptic, Pragmatist, Creative Director) is one system prompt
(its brief + the shared output format) and one user prompt (the video's context). A reply must
hold a JSON array of items ``{task, question, answer, clues, cited_seconds, quotes}``; anything
else becomes a recorded rejection (``stage=parse``) and the batch goes on. Finished calls are
kept in the evaluation pipeline's append-only JSONL cache, so a rerun is free and resumable.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evads_kedro.pipelines.evaluation.cache import JsonlCache, stable_hash
from evads_kedro.pipelines.evaluation.runner import run_sync

PERSONAS: dict[str, str] = {
    "consumer": "Consumer",
    "expert": "Expert",
    "skeptic": "Skeptic",
    "pragmatist": "Pragmatist",
    "creative_director": "Creative Director",
}
ITEM_KEYS = ("task", "question", "answer", "clues", "cited_seconds", "quotes")


@dataclass(frozen=True)
class PersonaPrompt:
    name: str
    system: str
    user_template: str
    tasks: tuple[str, ...]


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        from evads_kedro.paths import project_root

        p = project_root() / p
    return p


def load_personas(params: Mapping[str, Any]) -> list[PersonaPrompt]:
    """Persona prompts named in ``params['personas']`` ({name: {tasks: [...]}}), read from
    ``params['prompt_dir']`` (``<name>.txt`` + ``output_format.txt`` + ``user.txt``)."""
    folder = _resolve(params.get("prompt_dir", "conf/base/prompts/qa_generation"))
    fmt = (folder / "output_format.txt").read_text(encoding="utf-8")
    user = (folder / "user.txt").read_text(encoding="utf-8")
    out = []
    for name, cfg in (params.get("personas") or {}).items():
        cfg = cfg or {}
        if not cfg.get("enabled", True):
            continue
        tasks = tuple(cfg.get("tasks") or ())
        brief = (folder / f"{name}.txt").read_text(encoding="utf-8")
        system = brief.rstrip() + "\n\n" + fmt.format(
            tasks=", ".join(tasks), max_answer_units=params.get("max_answer_units", 50))
        out.append(PersonaPrompt(name, system, user, tasks))
    return out


def build_messages(persona: PersonaPrompt, ctx: Mapping[str, Any], n_items: int) -> list[dict]:
    user = persona.user_template.format(
        video_id=ctx["video_id"], category=ctx["category"], duration=ctx["duration_s"],
        timeline=ctx["timeline_full"], n_items=n_items, tasks=", ".join(persona.tasks))
    return [{"role": "system", "content": persona.system}, {"role": "user", "content": user}]


# ------------------------------------------------------------------------------ extraction
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class MalformedReply(ValueError):
    """A reply with no usable JSON array/object of items."""


def extract_items(text: str) -> list[dict[str, Any]]:
    """Items from a model reply: the first JSON array (or object; ``{"items": [...]}`` and a
    single item object are accepted) found in the text, code fences allowed around it.
    Raises :class:`MalformedReply` with a short reason otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise MalformedReply("empty reply")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for i, ch in enumerate(chunk):
            if ch not in "[{":
                continue
            try:
                value, _ = decoder.raw_decode(chunk, i)
            except ValueError:
                continue
            items = _as_items(value)
            if items is not None:
                return items
    raise MalformedReply("no JSON array of items in the reply")


def _as_items(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, dict):
        if isinstance(value.get("items"), list):
            value = value["items"]
        elif "question" in value:
            value = [value]
        else:
            return None
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):  # [] = no items
        return value
    return None


# ----------------------------------------------------------------------------------- calls
async def _call(backend, messages, decoding, cache: JsonlCache | None, key: str) -> dict:
    if cache is not None and key in cache:
        return {**cache.get(key), "cached": True}
    from evads_kedro.backends.llm import ChatError

    try:
        reply = await backend.chat(messages, temperature=float(decoding.get("temperature", 0.7)),
                                   seed=decoding.get("seed"),
                                   max_tokens=int(decoding.get("max_tokens", 1024)))
    except ChatError as exc:
        return {"text": None, "error": exc.reason, "cached": False}
    rec = {"text": reply.text, "error": None, "model_id": backend.model_id}
    if cache is not None:
        cache.put(key, rec)
    return {**rec, "cached": False}


def generate(backend, contexts: Sequence[Mapping[str, Any]], personas: Sequence[PersonaPrompt],
             params: Mapping[str, Any], cache: JsonlCache | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ask every persona about every video. Returns (candidates, rejections); a candidate is
    the raw item dict plus ``video_id``, ``persona``, ``item_index``; a rejection names the
    stage (``llm`` or ``parse``) and reason."""
    decoding = dict(params.get("decoding") or {})
    n_items = int(params.get("items_per_agent", 2))
    concurrency = max(1, int(params.get("concurrency", 4)))

    jobs = []
    for ctx in contexts:
        for p in personas:
            msgs = build_messages(p, ctx, n_items)
            key = stable_hash({"kind": "qa_generation", "model": backend.model_id,
                               "messages": msgs, "decoding": decoding})
            jobs.append((ctx["video_id"], p.name, msgs, key))

    async def run_all():
        sem = asyncio.Semaphore(concurrency)

        async def one(msgs, key):
            async with sem:
                return await _call(backend, msgs, decoding, cache, key)
        try:
            return await asyncio.gather(*(one(m, k) for _, _, m, k in jobs))
        finally:
            await backend.aclose()

    results = run_sync(run_all())
    candidates: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    for (vid, persona, _msgs, key), res in zip(jobs, results, strict=True):
        base = {"video_id": vid, "persona": persona, "call_key": key}
        if res["text"] is None:
            rejections.append({**base, "stage": "llm", "reason": f"llm_error:{res['error']}",
                               "raw": None})
            continue
        try:
            items = extract_items(res["text"])
        except MalformedReply as exc:
            rejections.append({**base, "stage": "parse", "reason": f"malformed_json:{exc}",
                               "raw": res["text"][:2000]})
            continue
        for i, item in enumerate(items):
            candidates.append({**base, "item_index": i, "item": item})
    return candidates, rejections


# ---------------------------------------------------------------------------------- critic
def critic_messages(system: str, ctx: Mapping[str, Any], item: Mapping[str, Any]) -> list[dict]:
    shown = {k: item.get(k) for k in ("task", "question", "answer", "clues", "quotes")}
    user = (f"Timeline:\n{ctx['timeline_full']}\n\nCandidate item:\n"
            + json.dumps(shown, ensure_ascii=False, indent=1))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_verdict(text: str | None) -> tuple[str, str]:
    """``("accept"|"reject", reason)`` from a critic reply; ``("error", why)`` if unreadable."""
    if not text:
        return "error", "empty reply"
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch != "{":
            continue
        try:
            value, _ = decoder.raw_decode(text, i)
        except ValueError:
            continue
        if isinstance(value, dict) and str(value.get("verdict", "")).lower() in ("accept",
                                                                                  "reject"):
            return str(value["verdict"]).lower(), str(value.get("reason", "")).strip()
    return "error", "no {verdict, reason} object in the reply"


def critique(backend, jobs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], system: str,
             params: Mapping[str, Any], cache: JsonlCache | None = None
             ) -> list[tuple[str, str]]:
    """One critic call per ``(context, item)``; returns a verdict per job (cached)."""
    decoding = dict(params.get("decoding") or {"temperature": 0.0, "seed": 42,
                                               "max_tokens": 256})
    concurrency = max(1, int(params.get("concurrency", 4)))
    calls = []
    for ctx, it in jobs:
        msgs = critic_messages(system, ctx, it)
        calls.append((msgs, stable_hash({"kind": "qa_critic", "model": backend.model_id,
                                         "messages": msgs, "decoding": decoding})))

    async def run_all():
        sem = asyncio.Semaphore(concurrency)

        async def one(msgs, key):
            async with sem:
                return await _call(backend, msgs, decoding, cache, key)
        try:
            return await asyncio.gather(*(one(m, k) for m, k in calls))
        finally:
            await backend.aclose()

    results = run_sync(run_all()) if calls else []
    return [parse_verdict(r["text"]) if r["text"] is not None else ("error", r["error"])
            for r in results]
