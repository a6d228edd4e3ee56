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


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_english_ad_without_sidecar_keeps_its_speech(kedro_project, sample_videos_dir, tmp_path):
    """A real folder has no sidecars: the English voice-over must be detected, not decoded as
    Mandarin and dropped. Same word error as the sidecar-forced decode of the same audio."""
    from evads_kedro.backends.asr import build_asr, load_audio

    root = tmp_path / "no_sidecar"
    root.mkdir()
    shutil.copy(sample_videos_dir / "ad_care_shampoo.mp4", root / "ad_care_shampoo.mp4")
    gt = json.loads((sample_videos_dir / "ad_care_shampoo.json").read_text(encoding="utf-8"))
    run_videos(kedro_project, video_root=str(root), asr={"backend": "faster_whisper"})
    data = kedro_project / "data"
    videos = pd.read_parquet(data / "02_intermediate/ingested/videos.parquet").set_index("video_id")
    row = videos.loc["ad_care_shampoo"]
    assert row["asr_language"] == "en" and row["asr_language_source"] in ("detected", "retry")
    assert row["asr_language_probability"] > 0.5 and row["asr_all_dropped"] is None
    timelines = pd.read_parquet(data / "02_intermediate/ingested/timelines.parquet")
    speech = " ".join(r.asr for r in timelines.sort_values("second").itertuples()
                      if isinstance(r.asr, str))
    ref = " ".join(s["text"] for s in gt["voiceover"])
    audio = load_audio(root / "ad_care_shampoo.mp4")
    forced = build_asr({"backend": "faster_whisper", "language": "en"}).transcribe(
        audio, gt["duration_s"])
    assert wer(ref, speech) == wer(ref, " ".join(forced.per_second(gt["duration_s"]).values()))
    assert wer(ref, speech) <= EN_WER_CEIL, speech
    summary = (data / "08_reporting/ingestion_summary.md").read_text("utf-8")
    assert "Speech languages: en: 1 (chosen by detected: 1)" in summary


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mixed_caption_keeps_its_latin_word_spaces_in_the_timeline(kedro_project, synth_video,
                                                                   tmp_path):
    """RapidOCR alone reads 全新气垫跑鞋NEWAIRRUNNER; the timeline must keep NEW AIR RUNNER."""
    from evads_kedro.synth import AdScript, Caption, Scene

    script = AdScript(
        video_id="mixed_caption", category="服饰鞋包", duration_s=3.0,
        scenes=(Scene(0.0, 3.0, (200, 225, 245), (150, 185, 230)),),
        captions=(Caption(0.0, 3.0, "全新气垫跑鞋 NEW AIR RUNNER", "center", 28, (255, 255, 255),
                          (25, 25, 25)),))
    mp4, _ = synth_video(script)
    root = tmp_path / "mixed"
    root.mkdir()
    shutil.copy(mp4, root / "mixed_caption.mp4")
    run_videos(kedro_project, video_root=str(root),
               ocr={"backend": "rapidocr", "reuse_hamming": 8})
    timelines = pd.read_parquet(kedro_project / "data/02_intermediate/ingested/timelines.parquet")
    boxes = [b for r in timelines.itertuples() for b in r.ocr]
    assert len(boxes) == 3 and set(boxes) == {"全新气垫跑鞋NEW AIR RUNNER"}, boxes
    text = (kedro_project / "data/03_primary/timelines/mixed_caption.txt").read_text("utf-8")
    assert "NEW AIR RUNNER" in text
