"""The GRPO judge: the evaluation pipeline's judge (client, prompt, parsing, cache) per batch.

One judge call per judged text, S / R3 / R5 / MG all derived from its R5 (``evads_kedro.scoring``).
Judgements are cached in the evaluation pipeline's append-only judgement cache, keyed by
(judge model id, judge template hash, question id, hash of the judged text): an answer judged
during GRPO and the same answer judged by the evaluation pipeline share one entry. A trace is
judged against a different reference (the clues), so its key also carries ``role: trace``.

[choose] How the reasoning trace is judged (SPEC §7 leaves it open): the same judge prompt,
with the ``<think>`` text as the output to grade and the question's **clues** (the evidence
behind the reference answer) as the reference, so G(trace) rewards reasoning that finds the
right evidence. ``trace_reference: answer`` grades it against the reference answer instead.

Any object with ``async judge_batch(role, items) -> list[float | None]`` can stand in for
:class:`BatchJudge` (tests use a fake).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from evads_kedro.calls.cache import stable_hash, text_hash
from evads_kedro.calls.judge import judge_call, judge_settings
from evads_kedro.calls.runner import Job, run_jobs
from evads_kedro.calls.templates import render

logger = logging.getLogger(__name__)

ROLES = ("answer", "trace")


@dataclass(frozen=True)
class JudgeItem:
    """What the judge sees for one judged text."""

    question_id: str
    question: str
    metadata: str  # the full OCR+ASR timeline
    clues: str
    reference: str  # reference answer (answer role) or clues (trace role)
    output: str  # the judged text (inside <answer>, or the <think> trace)


class Judge(Protocol):
    model_id: str

    async def judge_batch(self, role: str, items: Sequence[JudgeItem]) -> list[float | None]:
        """R5 per item (``None`` = the judge failed or never gave a legal score)."""


class BatchJudge:
    """The evaluation judge behind the :class:`Judge` protocol, cached and concurrent.

    ``settings`` is :func:`evads_kedro.calls.judge.judge_settings` of the
    parameters (backend built with ``evads_kedro.backends.llm.build_chat``, template, decoding,
    ``invalid_retries``, ``concurrency``). Empty texts score R5 = 0 without a call.
    """

    def __init__(self, settings: Mapping[str, Any], cache, *, progress: bool = False):
        self.settings = dict(settings)
        self.cache = cache
        self.model_id = str(settings["model_id"])
        self.template_hash = str(settings["template_hash"])
        self.progress = progress
        self.stats: Counter[str] = Counter()

    @classmethod
    def from_params(cls, params: Mapping[str, Any], cache,
                    where: str = "rl_training.judge") -> BatchJudge:
        return cls(judge_settings(params, where), cache)

    def key(self, role: str, question_id: str, text: str) -> str:
        payload = {"kind": "judgement", "judge": self.model_id, "template": self.template_hash,
                   "question_id": question_id, "judged": text_hash(text)}
        if role != "answer":  # answer keys are exactly the evaluation pipeline's
            payload["role"] = role
        return stable_hash(payload)

    def prompt(self, item: JudgeItem) -> str:
        return render(self.settings["template"], question=item.question, metadata=item.metadata,
                      clues=item.clues or "", reference_answer=item.reference,
                      model_output=item.output)

    async def judge_batch(self, role: str, items: Sequence[JudgeItem]) -> list[float | None]:
        out: list[float | None] = [None] * len(items)
        jobs, where = [], []
        for i, item in enumerate(items):
            if not item.output.strip():
                out[i] = 0.0
                self.stats["empty"] += 1
                continue
            jobs.append(Job(key=self.key(role, item.question_id, item.output), group="judge",
                            run=judge_call(self.settings, self.prompt(item)),
                            meta={"question_id": item.question_id, "role": role,
                                  "judge_model_id": self.model_id}))
            where.append(i)
        if jobs:
            results, stats = await run_jobs(jobs, self.cache,
                                            concurrency={"judge": self.settings["concurrency"]},
                                            desc=f"judge {role}", progress=self.progress)
            self.stats.update(cached=stats.cached, called=stats.called, ok=stats.ok,
                              invalid=stats.invalid, failed=stats.failed)
            for i, r in zip(where, results, strict=True):
                out[i] = float(r["r5"]) if r.get("status") == "ok" and r.get("r5") is not None \
                    else None
        return out
