"""GRPO reward functions (TRL style): small typed callables, composed by ``reward_weights``.

R = w_answer · score(answer) + w_trace · score(trace) + w_format · R_fmt   (SPEC §7)

TRL calls every function with ``prompts``, ``completions`` and every dataset column as keyword
arguments, weights them with ``GRPOConfig.reward_weights`` and logs each one separately
(``rewards/<name>/mean``). So the composition is TRL's weighted sum over:

* :class:`FormatReward` ``format``: R_fmt = 1 for exactly ``<think>…</think> <answer>…</answer>``;
* :class:`JudgeReward` ``answer_<kind>``: score of the judged ``<answer>`` text (the whole
  output when it has no answer tags, SPEC §6);
* :class:`JudgeReward` ``trace_<kind>``: score of the ``<think>`` text (0 when empty),
  left out when the trace weight is 0 (MG-without-trace), saving its judge calls.

``kind`` is the variant's score (``s``, ``r3``, ``r5``, ``mg``), all from one judge call per
text (``evads_kedro.scoring``). A failed judge call returns ``None`` (TRL: NaN, ignored in the
weighted ``nansum``), i.e. that term contributes 0, as in :func:`scoring.compose_reward`.
The judge rewards also log, for every score kind, the batch mean of answer/trace scores
(``judge/answer_mg`` …) so variants trained on different scores compare on one scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from evads_kedro.pipelines.rl_training.judge import ROLES, Judge, JudgeItem
from evads_kedro.scoring import SCORE_KINDS, RewardWeights, format_reward, score, split_completion


def completion_text(completion: Any) -> str:
    """Text of one TRL completion: a string, or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence):
        parts = []
        for message in completion:
            content = message.get("content") if isinstance(message, dict) else message
            if isinstance(content, list):  # multimodal content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(content or "")
        return "".join(parts)
    return str(completion or "")


class FormatReward:
    """R_fmt: 1.0 for a well-formed ``<think>…</think> <answer>…</answer>``, else 0.0."""

    __name__ = "format"

    def __call__(self, completions: Sequence[Any], **_: Any) -> list[float]:
        return [format_reward(completion_text(c)) for c in completions]


class JudgeReward:
    """Judge score of the answer or the trace of each completion, as the variant's ``kind``."""

    def __init__(self, judge: Judge, role: str, kind: str, trace_reference: str = "clues"):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if kind not in SCORE_KINDS:
            raise ValueError(f"kind must be one of {SCORE_KINDS}, got {kind!r}")
        if trace_reference not in ("clues", "answer"):
            raise ValueError("trace_reference must be 'clues' or 'answer'")
        self.judge, self.role, self.kind = judge, role, kind
        self.trace_reference = trace_reference
        self.__name__ = f"{role}_{kind}"

    def items(self, completions: Sequence[Any], *, question_id, question, timeline_full, clues,
              reference_answer) -> list[JudgeItem]:
        out = []
        for i, c in enumerate(completions):
            parts = split_completion(completion_text(c))
            clue = clues[i] or ""
            if self.role == "answer":
                text, reference = parts.answer, reference_answer[i]
            else:
                text = parts.think
                reference = clue if (self.trace_reference == "clues" and clue) \
                    else reference_answer[i]
            out.append(JudgeItem(question_id=question_id[i], question=question[i],
                                 metadata=timeline_full[i], clues=clue, reference=reference,
                                 output=text))
        return out

    async def __call__(self, completions: Sequence[Any], *, question_id: Sequence[str],
                       question: Sequence[str], timeline_full: Sequence[str],
                       clues: Sequence[str | None], reference_answer: Sequence[str],
                       log_metric: Callable[[str, float], None] | None = None,
                       **_: Any) -> list[float | None]:
        items = self.items(completions, question_id=question_id, question=question,
                           timeline_full=timeline_full, clues=clues,
                           reference_answer=reference_answer)
        r5s = await self.judge.judge_batch(self.role, items)
        if log_metric is not None:
            ok = [r for r in r5s if r is not None]
            for k in SCORE_KINDS:
                if ok:
                    log_metric(f"judge/{self.role}_{k}", sum(score(r, k) for r in ok) / len(ok))
            log_metric(f"judge/{self.role}_failed", float(len(r5s) - len(ok)))
        return [score(r, self.kind) if r is not None else None for r in r5s]


def build_reward_funcs(judge: Judge, kind: str, weights: RewardWeights,
                       trace_reference: str = "clues") -> tuple[list[Callable], list[float]]:
    """Reward callables and their ``reward_weights``, in TRL order: format, answer[, trace]."""
    funcs: list[Callable] = [FormatReward(), JudgeReward(judge, "answer", kind)]
    w = [weights.format, weights.answer]
    if weights.trace != 0.0:
        funcs.append(JudgeReward(judge, "trace", kind, trace_reference))
        w.append(weights.trace)
    return funcs, [float(x) for x in w]
