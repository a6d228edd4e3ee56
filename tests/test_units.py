"""Density units (SPEC §3) and the measured A_den / O_den of the released splits."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest

from evads_kedro.prompts import split_prompt
from evads_kedro.timeline import Timeline, asr_text, ocr_text, parse_timeline
from evads_kedro.units import count_units, is_cjk


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("", 0),
        ("   ，。！？、…—「」《》【】()[]|;:\"'", 0),
        ("是谁突然降温", 6),
        ("buy 2 get 1", 4),
        ("iPhone15Pro", 1),  # one alnum run
        ("可以穿到140斤", 6),  # 5 CJK + "140"
        ("¥99 特价", 3),
        ("β-葡聚糖", 3),  # β is not [A-Za-z0-9]
        ("苏G妆网备字2019002615", 7),  # 苏 G 妆网备字 2019002615 -> 1+1+4+1
        ("ＡＢＣ１２３", 1),  # full-width alnum is NFKC-folded into one run
        ("ＡＢＣ　１２３", 2),  # ideographic space separates runs
        ("Ｇ妆", 2),
        ("m²", 1),  # superscript two folds to '2' and joins the run
        ("①②", 1),  # circled digits fold to "12"
        ("⼀⼆", 2),  # Kangxi radicals fold to 一 二
        ("〇", 1),
        ("㐀", 1),  # CJK extension A
        ("\U00020000", 1),  # extension B
        ("café", 1),  # 'caf' ; é is not ASCII
        ("ピース 한국", 0),  # kana and hangul are not CJK ideographs here
        ("A1-B2_C3", 3),
    ],
)
def test_count_units(text, units):
    assert count_units(text) == units


def test_is_cjk_boundaries():
    assert is_cjk("一") and is_cjk("鿿") and is_cjk("豈")
    assert not any(is_cjk(ch) for ch in "A1。ア한⼀")  # Kangxi radical only after NFKC


@pytest.fixture(scope="module")
def video_timelines(evads_data_dir: Path) -> dict[str, dict[str, Timeline]]:
    """One full timeline per video: the SFT prompt timeline, the RL verifier meta_info."""
    sft = pd.read_parquet(evads_data_dir / "EVAds_SFT.parquet")
    rl = pd.read_parquet(evads_data_dir / "EVAds_RL.parquet")
    out: dict[str, dict[str, Timeline]] = {"sft": {}, "rl": {}}
    for video, prompt in zip(sft["videos"], sft["prompt"], strict=True):
        out["sft"].setdefault(
            video, parse_timeline(split_prompt(prompt[0]["content"], "sft").timeline)
        )
    for video, reward in zip(rl["videos"], rl["reward_model"], strict=True):
        out["rl"].setdefault(video, parse_timeline(reward["verifier"][0]["meta_info"]))
    return out


def _means(timelines: dict[str, Timeline]) -> tuple[float, float]:
    a = [count_units(asr_text(tl)) / tl.duration_seconds for tl in timelines.values()]
    o = [count_units(ocr_text(tl)) / tl.duration_seconds for tl in timelines.values()]
    return statistics.mean(a), statistics.mean(o)


@pytest.mark.needs_shared
def test_measured_text_density_matches_spec(video_timelines):
    # SPEC §3: ASR ~5.0/s, OCR 17-19/s (paper: 5.08 / 18.66). Measured with this rule:
    # SFT 4.908 / 16.983 (376 videos), RL 5.054 / 19.172 (196 videos).
    assert {k: len(v) for k, v in video_timelines.items()} == {"sft": 376, "rl": 196}
    a_sft, o_sft = _means(video_timelines["sft"])
    a_rl, o_rl = _means(video_timelines["rl"])
    assert (a_sft, o_sft) == pytest.approx((4.908, 16.983), abs=5e-4)
    assert (a_rl, o_rl) == pytest.approx((5.054, 19.172), abs=5e-4)
