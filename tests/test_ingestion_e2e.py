"""End to end with the real backends (RapidOCR, faster-whisper base) on synthetic sample ads
whose captions and voiceover are known: the timelines hold the captions and the speech.

Floors (set from the measured figures on this machine, see ``benchmarks/ingestion.py``):
OCR caption recall per video >= 0.90 (measured 0.97-1.00), English WER <= 0.15 (measured
0.00), Mandarin pinyin-syllable overlap >= 0.20 (measured 0.26-0.67 over the Mandarin
samples; espeak-ng's Mandarin is hard for Whisper base).
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from evads_kedro.asr_metrics import pinyin_overlap, wer
from evads_kedro.ocr_metrics import recall_report
from evads_kedro.timeline import parse_timeline
from test_ingestion_helpers import needs_ffmpeg, run_videos

E2E_IDS = ("ad_apparel_jacket", "ad_care_shampoo", "ad_home_pillow")
OCR_RECALL_FLOOR, EN_WER_CEIL, ZH_PINYIN_FLOOR = 0.90, 0.15, 0.20




@pytest.fixture
def sample_ads(sample_videos_dir, tmp_path):
    """Three of the session's sample ads (Mandarin speech, English speech, no audio track),
    copied (not linked: a symlink out of the video root is refused) into their own root."""
    out = tmp_path / "sample_ads"
    out.mkdir()
    for vid in E2E_IDS:
        for suffix in (".mp4", ".json"):
            shutil.copy(sample_videos_dir / f"{vid}{suffix}", out / f"{vid}{suffix}")
    return out


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_real_backends_put_captions_and_speech_in_the_timelines(kedro_project, sample_ads):
    real = {"asr": {"backend": "faster_whisper"}, "ocr": {"backend": "rapidocr",
                                                          "reuse_hamming": 8}}
    run_videos(kedro_project, video_root=str(sample_ads), **real)
    data = kedro_project / "data"
    videos = pd.read_parquet(data / "02_intermediate/ingested/videos.parquet").set_index("video_id")
    timelines = pd.read_parquet(data / "02_intermediate/ingested/timelines.parquet")
    assert sorted(videos.index) == sorted(E2E_IDS)
    for vid in E2E_IDS:
        gt = json.loads((sample_ads / f"{vid}.json").read_text(encoding="utf-8"))
        text = (data / f"03_primary/timelines/{vid}.txt").read_text(encoding="utf-8")
        tl = parse_timeline(text)
        assert tl.category == gt["category"] == videos.loc[vid, "category"]
        assert tl.duration == round(gt["duration_s"])
        rows = timelines[timelines.video_id == vid]
        ocr = {int(r.second): list(r.ocr) for r in rows.itertuples()}
        truth = {r["t"]: r["captions"] for r in gt["per_second_captions"]}
        rec = recall_report(truth, ocr)
        assert rec["string_recall"] >= OCR_RECALL_FLOOR, (vid, rec)
        speech = " ".join(r.asr for r in rows.sort_values("second").itertuples()
                          if isinstance(r.asr, str))
        ref = " ".join(s["text"] for s in gt["voiceover"])
        if not gt["has_audio"]:
            assert speech == "" and parse_timeline(videos.loc[vid, "timeline_asr"]).events == []
        elif gt["language"] == "en":
            assert wer(ref, speech) <= EN_WER_CEIL, speech
        else:
            assert pinyin_overlap(ref, speech) >= ZH_PINYIN_FLOOR, speech
