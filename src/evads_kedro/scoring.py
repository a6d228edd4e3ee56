"""Judge scores and rewards (SPEC §6-7), written once for evaluation and RL training.

A judge returns R5 in {0, 0.25, 0.5, 0.75, 1}. From it derive
R3 (0.75 -> 0.5, 0.25 -> 0), S (1 iff R5 == 1) and the multi-grained G = (S + R3 + R5) / 3.
Anything outside the five legal values is rejected, never rounded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

R5_VALUES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
SCORE_KINDS: tuple[str, ...] = ("r5", "r3", "s", "mg")

_R3 = {0.0: 0.0, 0.25: 0.0, 0.5: 0.5, 0.75: 0.5, 1.0: 1.0}


class InvalidScore(ValueError):
    """A judge value that is not one of the five legal R5 values."""


def validate_r5(value: float) -> float:
    """Return ``value`` as a float if it is a legal R5 value, else raise :class:`InvalidScore`."""
    if isinstance(value, bool):
        raise InvalidScore(f"judge score must be a number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidScore(f"judge score must be a number, got {value!r}") from None
    for legal in R5_VALUES:
        if math.isclose(f, legal, abs_tol=1e-9):
            return legal
    raise InvalidScore(f"judge score {value!r} is not one of {R5_VALUES}")


def r3(r5: float) -> float:
    """Three-level score: 0.75 -> 0.5 and 0.25 -> 0, others unchanged."""
    return _R3[validate_r5(r5)]


def strict(r5: float) -> float:
    """Strict score S ("R2"): 1 iff R5 == 1."""
    return 1.0 if validate_r5(r5) == 1.0 else 0.0


def multi_grained(r5: float) -> float:
    """G = (S + R3 + R5) / 3: levels 0, .083, .333, .417, 1."""
    v = validate_r5(r5)
    return (strict(v) + r3(v) + v) / 3.0


SCORERS = {"r5": validate_r5, "r3": r3, "s": strict, "mg": multi_grained}


def score(r5: float, kind: str) -> float:
    """Score of ``kind`` (one of :data:`SCORE_KINDS`) derived from a judge's R5."""
    try:
        return SCORERS[kind](r5)
    except KeyError:
        raise ValueError(f"unknown score kind {kind!r}; expected one of {SCORE_KINDS}") from None


def all_scores(r5: float) -> dict[str, float]:
    """Every derived score of one judge value, keyed by :data:`SCORE_KINDS`."""
    return {k: score(r5, k) for k in SCORE_KINDS}


# "Answer: 0.75" anywhere in the reply; the number alone must be a legal value.
_ANSWER_LINE = re.compile(r"Answer\s*[:：]\s*([0-9]+(?:\.[0-9]+)?)\s*$", re.IGNORECASE | re.MULTILINE)


def parse_judge_reply(reply: str) -> float:
    """Extract R5 from a judge reply of the form ``Answer: <score>``.

    Strict: the last ``Answer:`` line must hold exactly one legal value ("1", "1.0", "0.25"...).
    Replies like ``Answer: 0.8``, ``Answer: 1.0/1`` or ``Answer:`` raise :class:`InvalidScore`
    with the offending text, so callers can retry or record the item as invalid.
    """
    if not isinstance(reply, str) or not reply.strip():
        raise InvalidScore("empty judge reply")
    matches = _ANSWER_LINE.findall(reply)
    if not matches:
        raise InvalidScore(f"no 'Answer: <score>' line in judge reply: {reply[:200]!r}")
    return validate_r5(matches[-1])


_FORMAT = re.compile(r"^\s*<think>(?P<think>.+?)</think>\s*<answer>(?P<answer>.+?)</answer>\s*$", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass(frozen=True)
class Completion:
    """A model output split into its reasoning trace and final answer."""

    think: str
    answer: str
    well_formed: bool


def split_completion(text: str) -> Completion:
    """Split ``<think>…</think> <answer>…</answer>``.

    Per SPEC §6 only the inside of ``<answer>`` is judged when present; otherwise the whole
    output is the answer. ``well_formed`` is True only for exactly one think block followed by
    exactly one non-empty answer block and nothing else.
    """
    text = text or ""
    m = _FORMAT.match(text)
    well = bool(m) and len(_ANSWER.findall(text)) == 1 and len(_THINK.findall(text)) == 1
    answers = _ANSWER.findall(text)
    thinks = _THINK.findall(text)
    answer = answers[-1].strip() if answers else text.strip()
    think = thinks[0].strip() if thinks else ""
    return Completion(think=think, answer=answer, well_formed=well and bool(answer.strip()))


def format_reward(text: str) -> float:
    """R_fmt: 1.0 for a well-formed ``<think>…</think> <answer>…</answer>``, else 0.0."""
    return 1.0 if split_completion(text).well_formed else 0.0


@dataclass(frozen=True)
class RewardWeights:
    """Weights of R = w_answer·score(answer) + w_trace·score(trace) + w_format·R_fmt (SPEC §7)."""

    answer: float = 0.8
    trace: float = 0.2
    format: float = 1.0


def compose_reward(
    answer_r5: float | None,
    trace_r5: float | None,
    fmt: float,
    kind: str = "mg",
    weights: RewardWeights = RewardWeights(),
) -> float:
    """Total reward of one completion from judge values of its answer and trace.

    ``kind`` picks the variant's score (``s``, ``r3``, ``r5``, ``mg``); a ``None`` judge value
    (a failed judge call) contributes 0 for that term. ``weights.trace = 0`` is MG-without-trace.
    """
    a = score(answer_r5, kind) if answer_r5 is not None else 0.0
    t = score(trace_r5, kind) if trace_r5 is not None else 0.0
    return weights.answer * a + weights.trace * t + weights.format * fmt
