"""A_den / O_den on hand-made timelines, and the per-dataset table with the paper's rows."""

import pandas as pd
import pytest

from evads_kedro.pipelines.density.nodes import (
    density_report,
    density_table,
    text_density_per_video,
)

PAPER = {"E-VAds": {"v_den": 60.44, "a_den": 5.08, "o_den": 18.66}}


def _tables():
    timelines = pd.DataFrame([
        # video a, 4 s: OCR "¥99 特价" (1 + 2 units) on seconds 0 and 1 counts twice; ASR 4 + 2 units.
        {"video_id": "a", "second": 0, "ocr": ["¥99", "特价"], "asr": "买一送一"},
        {"video_id": "a", "second": 1, "ocr": ["¥99", "特价"], "asr": "buy now"},
        {"video_id": "b", "second": 0, "ocr": [], "asr": None},
    ])
    videos = pd.DataFrame([
        {"video_id": "a", "category": "其他", "duration_s": 4.0},
        {"video_id": "b", "category": "其他", "duration_s": 10.0},
        {"video_id": "c", "category": "其他", "duration_s": 5.0},  # no timeline rows at all
    ])
    qa = pd.DataFrame([
        {"split": "sft", "video_id": "a"}, {"split": "sft", "video_id": "a"},
        {"split": "rl", "video_id": "a"}, {"split": "rl", "video_id": "b"}, {"split": "rl", "video_id": "c"},
    ])
    return timelines, videos, qa


def test_text_density_counts_every_snapshot():
    per_video = text_density_per_video(*_tables())
    a = per_video[(per_video.dataset == "evads_sft") & (per_video.video_id == "a")].iloc[0]
    assert (a.ocr_units, a.asr_units) == (6, 6)
    assert (a.o_den, a.a_den) == (1.5, 1.5)
    assert per_video.groupby("dataset").size().to_dict() == {"evads_rl": 3, "evads_sft": 1}
    silent = per_video[per_video.video_id == "c"].iloc[0]
    assert (silent.a_den, silent.o_den) == (0, 0)


def test_table_means_over_videos_and_keeps_paper_rows():
    table = density_table(text_density_per_video(*_tables()), PAPER)
    rl = table.set_index("dataset").loc["evads_rl"]
    assert rl.n_videos == 3 and rl.a_den == pytest.approx(1.5 / 3) and rl.source == "measured"
    paper = table[table.source == "paper"].iloc[0]
    assert (paper.dataset, paper.v_den, paper.o_den) == ("E-VAds (paper)", 60.44, 18.66)
    assert pd.isna(rl.v_den)  # no frames measured for text-only splits
    md, metrics = density_report(table)
    assert "| evads_rl | 3 |" in md and "E-VAds (paper)" in md
    assert metrics["evads_sft.o_den"]["value"] == pytest.approx(1.5)
    assert not any(k.endswith("v_den") for k in metrics)


def test_zero_duration_is_a_clear_error():
    timelines, videos, qa = _tables()
    videos.loc[0, "duration_s"] = 0
    with pytest.raises(ValueError, match="positive duration.*Duration"):
        text_density_per_video(timelines, videos, qa)
