"""Released prompt layouts (SPEC §5): split a user message into parts and join it back.

Layouts (content of the single user message):

* ``rl``:  ``<video>`` + ASR-only timeline + ``"\\n\\n Question: "`` + question + ``"\\n"`` + instruction
* ``sft``: ``<video>`` + full timeline + ``"\\n"`` + question + ``"\\n\\n"`` + instruction

Contracts: ``join_prompt(split_prompt(c, layout), layout) == c`` byte for byte for all 2,860
released rows. Both files use one and the same instruction, :data:`OFFICIAL_INSTRUCTION`.
Questions never contain a line break, which is what makes the split unambiguous when the
instruction is not a known one; :func:`join_prompt` refuses a question with a line break.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from evads_kedro.timeline import Timeline, TimelineParseError, parse_timeline

PromptLayout = Literal["rl", "sft"]

VIDEO_TOKEN = "<video>"
RL_QUESTION_SEP = "\n\n Question: "
RL_INSTRUCTION_SEP = "\n"
SFT_QUESTION_SEP = "\n"
SFT_INSTRUCTION_SEP = "\n\n"

OFFICIAL_INSTRUCTION = (
    "You are permitted to gather any relevant clues, think step by step, to answer this "
    "question. Output your thought process (no length limit) and the final answer (using "
    "approximately 50 words; longer answers will be truncated) in the following format\n"
    "<think>your_thinking</think> <answer>your_answer_within_50_words</answer>"
)
# The only instruction string in EVAds_SFT (1,880/1,880) and EVAds_RL (980/980).
KNOWN_INSTRUCTIONS: tuple[str, ...] = (OFFICIAL_INSTRUCTION,)

_TIMELINE_KIND = {"rl": "asr_only", "sft": "full"}


class PromptLayoutError(ValueError):
    """Prompt content that does not fit the requested layout."""


@dataclass(frozen=True)
class PromptParts:
    """The pieces of one prompt; ``timeline`` is the verbatim timeline text."""

    prefix: str
    timeline: str
    question: str
    instruction: str

    @property
    def instruction_is_official(self) -> bool:
        return self.instruction == OFFICIAL_INSTRUCTION

    def parsed_timeline(self) -> Timeline:
        return parse_timeline(self.timeline)


def _check_layout(layout: str) -> None:
    if layout not in _TIMELINE_KIND:
        raise PromptLayoutError(f"unknown layout {layout!r}; expected 'rl' or 'sft'")


def _split_question(rest: str, sep: str, instructions: Sequence[str]) -> tuple[str, str]:
    """Split ``question + sep + instruction``; known instructions win, else the question is
    everything up to the first ``sep``."""
    for instr in instructions:
        if rest.endswith(sep + instr):
            question = rest[: len(rest) - len(sep) - len(instr)]
            if "\n" not in question:
                return question, instr
    question, found, instruction = rest.partition(sep)
    if not found:
        raise PromptLayoutError(f"no {sep!r} separating the question from the instruction")
    if "\n" in question:
        raise PromptLayoutError(f"question spans several lines: {question!r}")
    return question, instruction


def split_prompt(
    content: str,
    layout: PromptLayout,
    *,
    instructions: Sequence[str] = KNOWN_INSTRUCTIONS,
    validate_timeline: bool = True,
) -> PromptParts:
    """Split a released prompt into :class:`PromptParts`.

    ``instructions`` lists instruction strings recognised as a suffix (default: the official
    one); any other instruction is accepted when the question is a single line. With
    ``validate_timeline`` the timeline must parse and be of the layout's kind (``rl`` ->
    ASR-only, ``sft`` -> full). Raises :class:`PromptLayoutError` with the reason otherwise.
    """
    _check_layout(layout)
    if not content.startswith(VIDEO_TOKEN):
        raise PromptLayoutError(f"content does not start with {VIDEO_TOKEN!r}: {content[:40]!r}")
    body = content[len(VIDEO_TOKEN) :]
    if layout == "rl":
        timeline, found, rest = body.partition(RL_QUESTION_SEP)
        if not found:
            raise PromptLayoutError(f"rl layout: no {RL_QUESTION_SEP!r} after the timeline")
        question, instruction = _split_question(rest, RL_INSTRUCTION_SEP, instructions)
    else:
        timeline, question, instruction = _split_sft(body, instructions)
    if validate_timeline:
        try:
            tl = parse_timeline(timeline)
        except TimelineParseError as exc:
            raise PromptLayoutError(f"{layout} layout: timeline does not parse: {exc}") from exc
        if tl.kind != _TIMELINE_KIND[layout]:
            raise PromptLayoutError(
                f"{layout} layout expects a {_TIMELINE_KIND[layout]} timeline, got {tl.kind}"
            )
    return PromptParts(VIDEO_TOKEN, timeline, question, instruction)


def _split_sft(body: str, instructions: Sequence[str]) -> tuple[str, str, str]:
    for instr in instructions:
        if body.endswith(SFT_INSTRUCTION_SEP + instr):
            head = body[: len(body) - len(SFT_INSTRUCTION_SEP) - len(instr)]
            timeline, found, question = head.rpartition(SFT_QUESTION_SEP)
            if not found:
                raise PromptLayoutError("sft layout: no line break before the question")
            return timeline, question, instr
    # Unknown instruction: the question is the first line after the timeline's events, i.e.
    # the first line after the events header that is not a 'Time ...' event line.
    lines = body.split("\n")
    try:
        k = lines.index("[Time-aligned Events]:") + 1
    except ValueError:
        raise PromptLayoutError("sft layout: no '[Time-aligned Events]:' line") from None
    first = k
    while k < len(lines) and lines[k].startswith("Time "):
        k += 1
    timeline = "\n".join(lines[:k])
    if (
        k == first and k < len(lines) and lines[k] == ""
    ):  # no events: the timeline text ends with the header's newline
        timeline += "\n"
        k += 1
    if k + 2 >= len(lines) or lines[k + 1] != "":
        raise PromptLayoutError(
            "sft layout: expected timeline, '\\n', one-line question, '\\n\\n', instruction"
        )
    return timeline, lines[k], "\n".join(lines[k + 2 :])


def join_prompt(parts: PromptParts, layout: PromptLayout) -> str:
    """Inverse of :func:`split_prompt`. Refuses a multi-line question (it would not split back)."""
    _check_layout(layout)
    if "\n" in parts.question:
        raise PromptLayoutError(f"question must be a single line: {parts.question!r}")
    if layout == "rl":
        return (
            parts.prefix
            + parts.timeline
            + RL_QUESTION_SEP
            + parts.question
            + RL_INSTRUCTION_SEP
            + parts.instruction
        )
    return (
        parts.prefix
        + parts.timeline
        + SFT_QUESTION_SEP
        + parts.question
        + SFT_INSTRUCTION_SEP
        + parts.instruction
    )


def build_prompt(
    timeline: Timeline | str,
    question: str,
    layout: PromptLayout,
    instruction: str = OFFICIAL_INSTRUCTION,
) -> str:
    """Compose a prompt in a released layout from a timeline (object or text) and a question."""
    text = timeline if isinstance(timeline, str) else timeline.render()
    return join_prompt(PromptParts(VIDEO_TOKEN, text, question, instruction), layout)
