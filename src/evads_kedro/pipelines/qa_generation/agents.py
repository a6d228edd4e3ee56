"""Persona agents: prompts from ``conf/``, chat calls through the project client, JSON extraction.

Each persona (Consumer, Expert, Skeptic, Pragmatist, Creative Director) is one system prompt
(its brief + the shared output format) and one user prompt (the video's context). A reply must
hold a JSON array of items ``{task, question, answer, clues, cited_seconds, quotes}``; anything
else becomes a recorded rejection (``stage=parse``) and the batch goes on. Finished calls are
kept in the evaluation pipeline's append-only JSONL cache, so a rerun is free and resumable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evads_kedro.calls.cache import JsonlCache, stable_hash
from evads_kedro.calls.runner import Job
from evads_kedro.calls.templates import render

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


#: conf/base's ``qa_generation.prompt_dir``, used when a block leaves it out (pinned by
#: tests/test_param_defaults.py).
PROMPT_DIR = "conf/base/prompts/qa_generation"


def prompt_folder(params: Mapping[str, Any]) -> Path:
    """The folder of ``qa_generation.prompt_dir`` (relative to the project when not found)."""
    return _resolve(params.get("prompt_dir") or PROMPT_DIR)


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        from evads_kedro.paths import project_root

        p = project_root() / p
    return p


def load_personas(params: Mapping[str, Any]) -> list[PersonaPrompt]:
    """Persona prompts named in ``params['personas']`` ({name: {tasks: [...]}}), read from
    ``params['prompt_dir']`` (``<name>.txt`` + ``output_format.txt`` + ``user.txt``)."""
    folder = prompt_folder(params)
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


def prefill_text(params: Mapping[str, Any], persona: PersonaPrompt, call: int) -> str | None:
    """The assistant-turn prefix the reply must continue, or None.

    ``prefill: auto`` uses :data:`LOCAL_PREFILL` for local models (small models then write the
    item instead of prose) and none for endpoints (not every server continues a trailing
    assistant turn). ``{task}`` is the persona's ``call % len(tasks)``-th task."""
    pf = params.get("prefill", "auto")
    if pf == "auto":
        pf = LOCAL_PREFILL if (params.get("llm") or {}).get("backend") == "local" else None
    if not pf:
        return None
    task = persona.tasks[call % len(persona.tasks)] if persona.tasks else ""
    return render(str(pf), task=task)


LOCAL_PREFILL = '[{"task": "{task}", "question": "'

# Lengths (characters) of the schema's strings: they bound a constrained reply, so a small
# model that loops inside a string still closes the item.
_MAX_CHARS = {"question": 40, "answer": 40, "clues": 40, "quote": 30}
# Token budget of a schema-constrained reply: the bounds above in the worst case (~1.8
# SmolLM2 tokens per CJK character, plus keys and two quotes) stay below it, so a reply is
# never cut mid-string (a cut reply would parse as its quotes array).
STRUCTURED_MIN_TOKENS = 384


def timeline_quotes(timeline_full: str, max_chars: int = _MAX_CHARS["quote"] * 2
                    ) -> list[dict[str, Any]]:
    """Every quotable line of a timeline, ``{"modality", "second", "text"}``: each OCR box and
    the ASR text of each second, verbatim (lines longer than ``max_chars`` skipped); none for
    a timeline that does not parse (the schema then leaves quotes free)."""
    from evads_kedro.timeline import TimelineParseError, parse_timeline

    try:
        records = parse_timeline(timeline_full or "").per_second()
    except TimelineParseError:
        return []
    out = []
    for rec in records:
        texts = [("ocr", t) for t in rec.ocr] + [("asr", rec.asr)]
        out += [{"modality": m, "second": int(rec.second), "text": t.strip()}
                for m, t in texts if t and t.strip() and len(t.strip()) <= max_chars]
    seen: set[str] = set()
    return [q for q in out if (k := json.dumps(q, ensure_ascii=False)) not in seen
            and not seen.add(k)]


def items_schema(tasks: Sequence[str], n_items: int,
                 quotes: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """JSON schema of a persona's reply: an array of 1..``n_items`` items with exactly
    :data:`ITEM_KEYS` (in that order), ``task`` one of ``tasks``, bounded strings/lists.
    Given the timeline's ``quotes`` (:func:`timeline_quotes`), a quote is one of them and a
    cited second one of their seconds: the verifier's verbatim-quote rule holds by
    construction."""
    s = {"type": "string"}
    quote: dict[str, Any] = {
        "type": "object", "additionalProperties": False,
        "required": ["modality", "second", "text"],
        "properties": {"modality": {"type": "string", "enum": ["ocr", "asr"]},
                       "second": {"type": "integer", "minimum": 0},
                       "text": {**s, "minLength": 1, "maxLength": _MAX_CHARS["quote"]}}}
    second: dict[str, Any] = {"type": "integer", "minimum": 0}
    if quotes:
        quote = {"enum": [dict(q) for q in quotes]}
        second = {"type": "integer", "enum": sorted({int(q["second"]) for q in quotes})}
    item = {"type": "object", "additionalProperties": False, "required": list(ITEM_KEYS),
            "properties": {
                "task": {"type": "string", "enum": list(tasks)} if tasks else s,
                "question": {**s, "minLength": 1, "maxLength": _MAX_CHARS["question"]},
                "answer": {**s, "minLength": 1, "maxLength": _MAX_CHARS["answer"]},
                "clues": {**s, "maxLength": _MAX_CHARS["clues"]},
                "cited_seconds": {"type": "array", "maxItems": 3, "items": second},
                "quotes": {"type": "array", "minItems": 1, "maxItems": 2, "items": quote}}}
    return {"type": "array", "minItems": 1, "maxItems": max(1, int(n_items)), "items": item}


def structured_json(params: Mapping[str, Any], backend) -> bool:
    """Ask ``backend`` for schema-constrained JSON? ``structured: auto`` (default): local
    text models (a grammar); true: endpoints too (``response_format: json_schema`` / vLLM
    ``structured_outputs`` / ``guided_json``, detected once, free text counted); false: never."""
    setting = params.get("structured", "auto")
    can = bool(getattr(backend, "supports_json_schema", False))
    if setting == "auto":
        return can and bool(getattr(backend, "json_schema_by_default", can))
    if setting and not can:
        raise ValueError(f"qa_generation.structured is true but {backend!r} cannot constrain "
                         "replies to a JSON schema; use structured: auto/false")
    return bool(setting)


def build_messages(persona: PersonaPrompt, ctx: Mapping[str, Any], n_items: int,
                   prefill: str | None = None) -> list[dict]:
    caps = ctx.get("captions") or ""
    block = (f"\nKeyframe captions (what is seen at scene changes, [second] caption):\n{caps}\n"
             if isinstance(caps, str) and caps.strip() else "")
    user = persona.user_template.format(
        video_id=ctx["video_id"], category=ctx["category"], duration=ctx["duration_s"],
        timeline=ctx["timeline_full"], n_items=n_items, tasks=", ".join(persona.tasks),
        captions_block=block)
    msgs = [{"role": "system", "content": persona.system}, {"role": "user", "content": user}]
    if prefill:
        msgs.append({"role": "assistant", "content": prefill})
    return msgs


# ------------------------------------------------------------------------------ extraction
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class MalformedReply(ValueError):
    """A reply with no usable JSON array/object of items."""


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def extract_items(text: str) -> list[dict[str, Any]]:
    """Items from a model reply: the first JSON array (or object; ``{"items": [...]}`` and a
    single item object are accepted) found in the text, code fences allowed around it.

    Lenient only where the meaning is unambiguous: trailing commas before ``}``/``]`` are
    dropped, and an array cut off by the token limit yields the item objects that were
    complete before the cut. Raises :class:`MalformedReply` with a short reason otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise MalformedReply("empty reply")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    candidates += [_TRAILING_COMMA.sub(r"\1", c) for c in candidates]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for i, ch in enumerate(chunk):
            if ch not in "[{":
                continue
            try:
                value, _ = decoder.raw_decode(chunk, i)
            except ValueError:
                value = _complete_prefix(decoder, chunk, i) if ch == "[" else None
            items = _as_items(value)
            if items:
                return items
            if items == [] and ch == "[":
                return []
    raise MalformedReply("no JSON array of items in the reply")


def _complete_prefix(decoder: json.JSONDecoder, chunk: str, start: int) -> list[dict] | None:
    """The complete objects at the head of a truncated array ``[{...}, {...}, {..``."""
    out, i = [], start + 1
    while True:
        while i < len(chunk) and chunk[i] in " \t\r\n,":
            i += 1
        if i >= len(chunk) or chunk[i] != "{":
            break
        try:
            value, i = decoder.raw_decode(chunk, i)
        except ValueError:
            break
        if not isinstance(value, dict):
            break
        out.append(value)
    return out or None


def _as_items(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, dict):
        if isinstance(value.get("items"), list):
            value = value["items"]
        elif "question" in value:
            value = [value]
        else:
            return None
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):  # [] = no items
        return _merge_fragments(value)
    return None


def _merge_fragments(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Small models sometimes split one item over several objects
    (``[{"task", "question"}, {"answer"}, {"quotes"}]``): an object without a ``question`` is
    merged into the previous item when none of its keys is already there."""
    out: list[dict[str, Any]] = []
    for it in items:
        if out and "question" not in it and not set(it) & set(out[-1]):
            out[-1] = {**out[-1], **it}
        else:
            out.append(dict(it))
    return out


# ----------------------------------------------------------------------------------- calls
def _chat_job(backend, messages, decoding, key: str, meta: Mapping[str, Any],
              json_schema: Mapping[str, Any] | None = None):
    # a key missing from ``decoding`` falls back to qa_generation.decoding's conf/base value
    # (the blind check and the critic pass complete decoding blocks of their own)
    async def run() -> dict[str, Any]:
        kw = {"json_schema": json_schema} if json_schema is not None else {}
        reply = await backend.chat(messages, temperature=float(decoding.get("temperature", 0.2)),
                                   seed=decoding.get("seed"),
                                   max_tokens=int(decoding.get("max_tokens", 320)), **kw)
        raw = reply.raw if isinstance(reply.raw, dict) else {}
        return {"status": "ok", "text": reply.text, "error": None, "model_id": backend.model_id,
                "structured": raw.get("structured", "grammar" if kw else None),
                "completion_tokens": (reply.usage or {}).get("completion_tokens")}
    return Job(key=key, run=run, group="chat", meta=dict(meta))


def _text_or_error(res: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(reply text, None) or (None, error reason) from a runner result (old cache records
    carry ``text`` without ``status``)."""
    if res.get("status", "ok") == "failed" or res.get("text") is None:
        return None, str(res.get("error_reason") or res.get("error") or "no_reply")
    return res["text"], None


def generate(backend, contexts: Sequence[Mapping[str, Any]], personas: Sequence[PersonaPrompt],
             params: Mapping[str, Any], cache: JsonlCache | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ask every persona about every video (``calls_per_agent`` calls of ``items_per_agent``
    items each, call ``k`` seeded ``seed + k``). Returns (candidates, rejections); a candidate
    is the raw item dict plus ``video_id``, ``persona``, ``item_index``; a rejection names the
    stage (``llm`` or ``parse``) and reason. Progress: one bar over the calls."""
    from evads_kedro.pipelines.qa_generation.calls import run_calls

    decoding = dict(params.get("decoding") or {})
    n_items = int(params.get("items_per_agent", 1))
    n_calls = max(1, int(params.get("calls_per_agent", 2)))
    concurrency = max(1, int(params.get("concurrency", 4)))

    structured = structured_json(params, backend)
    jobs, meta = [], []
    for ctx in contexts:
        for p in personas:
            for k in range(n_calls):
                schema = None
                if structured:  # the grammar holds the reply to JSON: no prefill needed;
                    # call k asks for the persona's k-th task, as the local prefill does
                    task = [p.tasks[k % len(p.tasks)]] if p.tasks else []
                    schema = items_schema(task, n_items, timeline_quotes(ctx["timeline_full"]))
                msgs = build_messages(p, ctx, n_items,
                                      None if structured else prefill_text(params, p, k))
                dec = dict(decoding)
                if structured:
                    dec["max_tokens"] = max(int(dec.get("max_tokens", 320)),
                                            STRUCTURED_MIN_TOKENS)
                if k and dec.get("seed") is not None:
                    dec["seed"] = int(dec["seed"]) + k
                ident = {"kind": "qa_generation", "model": backend.model_id,
                         "messages": msgs, "decoding": dec}
                if schema is not None:
                    ident["json_schema"] = schema
                key = stable_hash(ident)
                jobs.append(_chat_job(backend, msgs, dec, key, {}, schema))
                meta.append((ctx["video_id"], p.name, key, msgs[-1]["content"]
                             if msgs[-1]["role"] == "assistant" else None))
    results = run_calls(jobs, cache, concurrency=concurrency, desc="qa agents",
                        backends=[backend])
    candidates: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    next_index: dict[tuple[str, str], int] = {}
    for (vid, persona, key, prefill), res in zip(meta, results, strict=True):
        base = {"video_id": vid, "persona": persona, "call_key": key}
        text, error = _text_or_error(res)
        if text is not None and prefill and not text.lstrip().startswith(prefill[:1]):
            text = prefill + text  # the reply continues the prefilled assistant turn
        if text is None:
            rejections.append({**base, "stage": "llm", "reason": f"llm_error:{error}",
                               "raw": None})
            continue
        try:
            items = extract_items(text)
        except MalformedReply as exc:
            rejections.append({**base, "stage": "parse", "reason": f"malformed_json:{exc}",
                               "raw": text[:2000]})
            continue
        for item in items:
            i = next_index.get((vid, persona), 0)
            next_index[(vid, persona)] = i + 1
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
    from evads_kedro.pipelines.qa_generation.calls import run_calls

    decoding = dict(params.get("decoding") or {"temperature": 0.0, "seed": 42,
                                               "max_tokens": 256})
    calls = []
    for ctx, it in jobs:
        msgs = critic_messages(system, ctx, it)
        key = stable_hash({"kind": "qa_critic", "model": backend.model_id,
                           "messages": msgs, "decoding": decoding})
        calls.append(_chat_job(backend, msgs, decoding, key, {}))
    results = run_calls(calls, cache, concurrency=int(params.get("concurrency", 4)),
                        desc="qa critic", backends=[backend])
    out = []
    for r in results:
        text, error = _text_or_error(r)
        out.append(parse_verdict(text) if text is not None else ("error", error))
    return out
