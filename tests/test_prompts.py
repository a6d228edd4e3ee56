"""Released prompt layouts: exact split/join on every row, instruction inventory, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from evads_kedro.prompts import (
    OFFICIAL_INSTRUCTION,
    PromptLayoutError,
    PromptParts,
    build_prompt,
    join_prompt,
    split_prompt,
)
from evads_kedro.timeline import parse_timeline

FULL = (
    "Category: 服饰鞋包\nDuration: 6s\n\n[Time-aligned Events]:\n"
    'Time 0s: OCR Text: [限时特价 | ¥99] ; ASR Text: "是谁突然降温"\n'
    "Time 1-2s: OCR Text: [限时特价 | ¥99]"
)
ASR_ONLY = (
    'Voiceover: Duration: 6s\n\n[Time-aligned Events]:\nTime 0s: Audio Speech: "是谁突然降温"'
)
SFT = "<video>" + FULL + "\n价格是多少？\n\n" + OFFICIAL_INSTRUCTION
RL = "<video>" + ASR_ONLY + "\n\n Question: 谁是目标人群？\n" + OFFICIAL_INSTRUCTION


@pytest.mark.parametrize(
    ("content", "layout", "timeline", "question"),
    [
        (SFT, "sft", FULL, "价格是多少？"),
        (RL, "rl", ASR_ONLY, "谁是目标人群？"),
    ],
)
def test_split_and_join(content, layout, timeline, question):
    parts = split_prompt(content, layout)
    assert parts == PromptParts("<video>", timeline, question, OFFICIAL_INSTRUCTION)
    assert parts.instruction_is_official
    assert join_prompt(parts, layout) == content
    assert build_prompt(parse_timeline(timeline), question, layout) == content


@pytest.mark.parametrize("layout", ["sft", "rl"])
def test_custom_instruction_splits_when_question_is_one_line(layout):
    tl = FULL if layout == "sft" else ASR_ONLY
    content = build_prompt(tl, "问题？", layout, instruction="Answer briefly.\n\nIn Chinese.")
    parts = split_prompt(content, layout)
    assert (parts.question, parts.instruction) == ("问题？", "Answer briefly.\n\nIn Chinese.")
    assert not parts.instruction_is_official
    assert join_prompt(parts, layout) == content


@pytest.mark.parametrize("layout", ["sft", "rl"])
def test_timeline_without_events(layout):
    tl = (
        "Category: 其他\nDuration: 3s\n\n[Time-aligned Events]:\n"
        if layout == "sft"
        else "Voiceover: Duration: 3s\n\n[Time-aligned Events]:\n"
    )
    for instruction in (OFFICIAL_INSTRUCTION, "Custom."):
        content = build_prompt(tl, "Q?", layout, instruction=instruction)
        parts = split_prompt(content, layout)
        assert (parts.timeline, parts.question, parts.instruction) == (tl, "Q?", instruction)


@pytest.mark.parametrize(
    ("content", "layout", "reason"),
    [
        (SFT[len("<video>") :], "sft", "does not start with '<video>'"),
        (SFT, "rl", "no '\\n\\n Question: '"),
        (RL, "sft", "sft layout"),
        (
            "<video>" + FULL + "\n\n Question: Q\n" + OFFICIAL_INSTRUCTION,
            "rl",
            "expects a asr_only",
        ),
        ("<video>" + ASR_ONLY + "\n\n Question: Q", "rl", "separating the question"),
        ("<video>" + "hello\nQ\n\n" + OFFICIAL_INSTRUCTION, "sft", "does not parse: line 1"),
        (SFT, "chat", "unknown layout"),
    ],
)
def test_layout_errors(content, layout, reason):
    with pytest.raises(PromptLayoutError) as err:
        split_prompt(content, layout)
    assert reason in str(err.value)


def test_join_refuses_multiline_question():
    with pytest.raises(PromptLayoutError, match="single line"):
        join_prompt(PromptParts("<video>", FULL, "a\nb", OFFICIAL_INSTRUCTION), "sft")


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    ("layout", "file", "rows"),
    [
        ("sft", "EVAds_SFT.parquet", 1880),
        ("rl", "EVAds_RL.parquet", 980),
    ],
)
def test_every_released_prompt_round_trips(evads_data_dir: Path, layout, file, rows):
    frame = pd.read_parquet(evads_data_dir / file)
    assert len(frame) == rows
    instructions: Counter[str] = Counter()
    for prompt in frame["prompt"]:
        assert len(prompt) == 1 and prompt[0]["role"] == "user"
        content = prompt[0]["content"]
        parts = split_prompt(content, layout)
        assert join_prompt(parts, layout) == content
        assert parts.question and "\n" not in parts.question
        instructions[parts.instruction] += 1
    # one single instruction string in each file, the same in both
    assert instructions == {OFFICIAL_INSTRUCTION: rows}
