"""Timeline model: exact round trip on every released timeline, per-second view, parse errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from evads_kedro.prompts import split_prompt
from evads_kedro.timeline import (
    SecondRecord,
    Timeline,
    TimelineEvent,
    TimelineParseError,
    asr_text,
    ocr_text,
    parse_timeline,
    render_timeline,
)
from evads_kedro.units import count_units

FULL = (
    "Category: 服饰鞋包\nDuration: 26s\n\n[Time-aligned Events]:\n"
    'Time 0s: OCR Text: [是谁突然降温没有衣服穿啊] ; ASR Text: "是谁突然降温"\n'
    'Time 1s: ASR Text: "没有衣服穿啊"\n'
    "Time 3-4s: OCR Text: [限时 | ¥99]\n"
    "Time 23-25s: OCR Text: [EXIT]"
)
ASR_ONLY = (
    "Voiceover: Duration: 26s\n\n[Time-aligned Events]:\n"
    'Time 0s: Audio Speech: "是谁突然降温"\n'
    'Time 1s: Audio Speech: "没有衣服穿啊"'
)


# ---------------------------------------------------------------- hand-made timelines


def test_parse_full_example():
    tl = parse_timeline(FULL)
    assert (tl.kind, tl.category, tl.duration, tl.trailing_newline) == (
        "full",
        "服饰鞋包",
        26,
        False,
    )
    assert tl.events == [
        TimelineEvent(0, 0, ("是谁突然降温没有衣服穿啊",), "是谁突然降温"),
        TimelineEvent(1, 1, (), "没有衣服穿啊"),
        TimelineEvent(3, 4, ("限时", "¥99"), None),
        TimelineEvent(23, 25, ("EXIT",), None),
    ]
    assert render_timeline(tl) == FULL


def test_parse_asr_only_example():
    tl = parse_timeline(ASR_ONLY)
    assert (tl.kind, tl.category, tl.duration) == ("asr_only", None, 26)
    assert [e.asr for e in tl.events] == ["是谁突然降温", "没有衣服穿啊"]
    assert render_timeline(tl) == ASR_ONLY


def test_per_second_expands_ranges_and_skips_silence():
    secs = parse_timeline(FULL).per_second()
    assert [r.second for r in secs] == [0, 1, 3, 4, 23, 24, 25]
    assert secs[2] == SecondRecord(3, ("限时", "¥99"), None)


def test_density_texts_count_every_snapshot():
    tl = parse_timeline(FULL)
    # "限时 | ¥99" on 3-4s and "EXIT" on 23-25s count once per second: no de-duplication.
    assert count_units(ocr_text(tl)) == 12 + 2 * 3 + 3 * 1
    assert count_units(asr_text(tl)) == 12


def test_to_asr_only_drops_ocr_and_remerges():
    full = parse_timeline(
        "Category: 其他\nDuration: 5s\n\n[Time-aligned Events]:\n"
        'Time 0s: OCR Text: [A] ; ASR Text: "痘"\n'
        'Time 1s: OCR Text: [B] ; ASR Text: "痘"\n'
        "Time 2s: OCR Text: [B]\n"
        'Time 3s: ASR Text: "好"'
    )
    assert render_timeline(full.to_asr_only()) == (
        "Voiceover: Duration: 5s\n\n[Time-aligned Events]:\n"
        'Time 0-1s: Audio Speech: "痘"\n'
        'Time 3s: Audio Speech: "好"'
    )


def test_from_seconds_merges_only_contiguous_identical_seconds():
    recs = [
        SecondRecord(0, ("a",), "x"),
        SecondRecord(1, ("a",), "x"),
        SecondRecord(2, ("a",), "y"),  # same OCR, other ASR: whole line differs
        SecondRecord(3),  # empty: no line
        SecondRecord(4, ("a",), "y"),  # identical to 2 but not contiguous
    ]
    tl = Timeline.from_seconds(recs, kind="full", category="其他", duration=5)
    assert [(e.start, e.end) for e in tl.events] == [(0, 1), (2, 2), (4, 4)]


@pytest.mark.parametrize(
    ("records", "kind", "message"),
    [
        ([SecondRecord(2, (), "a"), SecondRecord(1, (), "b")], "full", "increase strictly"),
        ([SecondRecord(0, ("ocr",), "a")], "asr_only", "cannot hold OCR"),
    ],
)
def test_from_seconds_rejects(records, kind, message):
    with pytest.raises(ValueError, match=message):
        Timeline.from_seconds(records, kind=kind, duration=3)


def test_per_second_rejects_overlapping_events():
    tl = Timeline("full", None, 3, [TimelineEvent(0, 1, (), "a"), TimelineEvent(1, 2, (), "b")])
    with pytest.raises(ValueError, match="second 1"):
        tl.per_second()


@pytest.mark.parametrize(
    "text",
    [
        # odd but representable: empty brackets, empty box, bare '|', quotes, brackets and ';'
        # inside texts, blank ASR, spaces kept, missing Category, decimals, trailing newline,
        # no events, out-of-order events
        "Duration: 3.5s\n\n[Time-aligned Events]:\n"
        'Time 0s: OCR Text: [] ; ASR Text: ""\n'
        'Time 1s: OCR Text: [a |  | b|c | [x]; "q"] ; ASR Text: " 他说"好" "\n'
        "Time 0s: OCR Text: [ok]\n",
        "Category: \nDuration: 26.50s\n\n[Time-aligned Events]:\n",
        "Voiceover: Duration: 0s\n\n[Time-aligned Events]:\n\n",
        'Voiceover: Duration: 7s\n\n[Time-aligned Events]:\nTime 0-13s: Audio Speech: " "',
    ],
)
def test_round_trip_of_quirky_text(text):
    tl = parse_timeline(text)
    assert render_timeline(tl) == text
    assert parse_timeline(render_timeline(tl)) == tl


def test_duration_types_are_kept_as_found():
    def dur(s):
        return parse_timeline(f"Duration: {s}\n\n[Time-aligned Events]:\n").duration

    assert (dur("26s"), dur("26.5s"), dur("26.50s")) == (26, 26.5, "26.50")


def test_empty_brackets_are_not_absent_ocr():
    tl = parse_timeline("Duration: 1s\n\n[Time-aligned Events]:\nTime 0s: OCR Text: []")
    assert tl.events[0].ocr == ("",)


@pytest.mark.parametrize(
    ("text", "line_no", "reason"),
    [
        ("hello", 1, "expected 'Category"),
        ("Category: x\nDuration: 3\n\n[Time-aligned Events]:\n", 2, "Duration: <number>s"),
        ("Category: x\nDuration: 3s\n[Time-aligned Events]:\n", 3, "expected ''"),
        ("Category: x\nDuration: 3s\n\nEvents:\n", 4, "[Time-aligned Events]:"),
        ("Category: x\nDuration: 3s\n\n[Time-aligned Events]:", 4, "missing newline"),
        (FULL + "\nnonsense", 9, "expected 'Time <s>s"),
        (FULL + "\n\nTime 30s: OCR Text: [x]", 9, "empty line"),
        (FULL + "\nTime 5-5s: OCR Text: [x]", 9, "greater than its start"),
        (FULL + "\nTime 07s: OCR Text: [x]", 9, "expected 'Time <s>s"),
        (FULL + '\nTime 30s: Audio Speech: "x"', 9, "full timeline events"),
        (FULL + '\nTime 30s: OCR Text: [x] ; ASR Text: "y', 9, "full timeline events"),
        (ASR_ONLY + '\nTime 30s: ASR Text: "x"', 6, "Audio Speech"),
        ("Voiceover: Duration: 3s\r\n\n[Time-aligned Events]:\n", 1, "carriage return"),
    ],
)
def test_parse_errors_carry_line_number_and_line(text, line_no, reason):
    with pytest.raises(TimelineParseError, match=r"^line \d+: ") as err:
        parse_timeline(text)
    assert err.value.line_no == line_no
    assert reason in err.value.reason
    assert err.value.line == text.split("\n")[line_no - 1]
    assert isinstance(err.value, ValueError)


def test_render_refuses_unrepresentable_events():
    with pytest.raises(ValueError, match="line break"):
        TimelineEvent(0, 0, ("a\nb",), None)
    tl = Timeline("full", None, 1, [TimelineEvent(0, 0, ('x] ; ASR Text: "y',), None)])
    with pytest.raises(ValueError, match="cannot render"):
        render_timeline(tl)
    with pytest.raises(ValueError, match="no Category"):
        Timeline("asr_only", "其他", 1, [])


# ---------------------------------------------------------------- every released timeline


@pytest.fixture(scope="module")
def released(evads_data_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """(video, timeline text) for every row: SFT prompts, RL prompts, RL verifier meta_info."""
    sft = pd.read_parquet(evads_data_dir / "EVAds_SFT.parquet")
    rl = pd.read_parquet(evads_data_dir / "EVAds_RL.parquet")
    out: dict[str, list[tuple[str, str]]] = {"sft": [], "rl": [], "meta": []}
    for video, prompt in zip(sft["videos"], sft["prompt"], strict=True):
        out["sft"].append((video, split_prompt(prompt[0]["content"], "sft").timeline))
    for video, prompt, reward in zip(rl["videos"], rl["prompt"], rl["reward_model"], strict=True):
        out["rl"].append((video, split_prompt(prompt[0]["content"], "rl").timeline))
        out["meta"].extend((video, v["meta_info"]) for v in reward["verifier"])
    return out


@pytest.mark.needs_shared
def test_every_released_timeline_round_trips_byte_for_byte(released):
    kinds = {"sft": "full", "rl": "asr_only", "meta": "full"}
    counts = Counter()
    for source, items in released.items():
        for _, text in items:
            tl = parse_timeline(text)
            assert tl.kind == kinds[source]
            assert render_timeline(tl) == text
            assert isinstance(tl.duration, int)  # every released duration is whole seconds
            counts[source] += 1
    assert counts == {"sft": 1880, "rl": 980, "meta": 980}


@pytest.mark.needs_shared
def test_per_second_round_trip_on_released_data(released):
    # Measured: 3,840/3,840 timelines (100 %) are rebuilt identically from their per-second
    # records, i.e. merging is on the whole line, only for contiguous seconds, and the
    # ASR-only prompts are merged the same way (on ASR text).
    total = same = 0
    for items in released.values():
        for _, text in items:
            tl = parse_timeline(text)
            rebuilt = Timeline.from_seconds(
                tl.per_second(), kind=tl.kind, category=tl.category, duration=tl.duration
            )
            total += 1
            same += render_timeline(rebuilt) == text
    assert (same, total) == (3840, 3840)


@pytest.mark.needs_shared
def test_released_quirks_are_present_and_preserved(released):
    """Counts over distinct videos (each video's timeline is repeated in its 5 rows)."""
    per_video = {
        (src, video): parse_timeline(text)
        for src, items in released.items()
        for video, text in items
    }
    c: Counter[str] = Counter()
    for (src, _), tl in per_video.items():
        c[f"{src}_videos"] += 1
        c[f"{src}_ranges"] += sum(e.start < e.end for e in tl.events)
        covered = {r.second for r in tl.per_second()}
        c[f"{src}_gap_seconds"] += len(set(range(max(covered) + 1)) - covered)
        c[f"{src}_asr_padded"] += sum(
            e.asr is not None and e.asr != e.asr.strip() for e in tl.events
        )
        ocr = [" | ".join(e.ocr) for e in tl.events if e.ocr]
        c[f"{src}_ocr_with_quote"] += sum('"' in o for o in ocr)
        c[f"{src}_ocr_with_bracket"] += sum("[" in o or "]" in o for o in ocr)
        c[f"{src}_ocr_bare_pipe"] += sum(any("|" in b for b in e.ocr) for e in tl.events)
    assert (c["sft_videos"], c["rl_videos"], c["meta_videos"]) == (376, 196, 196)
    assert (c["sft_ranges"], c["rl_ranges"], c["meta_ranges"]) == (62, 4, 29)
    assert (c["sft_gap_seconds"], c["rl_gap_seconds"], c["meta_gap_seconds"]) == (57, 105, 23)
    # leading/trailing spaces in ASR exist only in the RL (ASR-only) prompts
    assert (c["sft_asr_padded"], c["rl_asr_padded"], c["meta_asr_padded"]) == (0, 117, 0)
    assert (c["sft_ocr_with_quote"], c["meta_ocr_with_quote"]) == (62, 4)
    assert (c["sft_ocr_with_bracket"], c["meta_ocr_with_bracket"]) == (17, 11)
    assert (c["sft_ocr_bare_pipe"], c["meta_ocr_bare_pipe"]) == (26, 10)


@pytest.mark.needs_shared
def test_rl_prompt_vs_asr_only_view_of_meta(released):
    """The RL prompt is *not* meta_info.to_asr_only(): same seconds and durations, but ASR
    spacing differs (SPEC §5). Measured per video: 8/196 identical, 195/196 identical once
    spaces are ignored; the last one has an extra blank ASR second in the prompt."""
    prompts = {video: text for video, text in released["rl"]}
    metas = {video: text for video, text in released["meta"]}
    exact = ignoring_spaces = 0
    for video, text in prompts.items():
        derived = render_timeline(parse_timeline(metas[video]).to_asr_only())
        exact += derived == text
        ignoring_spaces += derived.replace(" ", "") == text.replace(" ", "")
    assert (exact, ignoring_spaces, len(prompts)) == (8, 195, 196)


def test_find_evads_data_dir_prefers_env(monkeypatch, tmp_path):
    from evads_kedro.paths import find_evads_data_dir

    monkeypatch.setenv("EVADS_DATA_DIR", str(tmp_path))
    assert find_evads_data_dir() == tmp_path.resolve()
    monkeypatch.setenv("EVADS_DATA_DIR", str(tmp_path / "missing"))
    assert find_evads_data_dir() is None  # an explicit but wrong setting is not replaced
