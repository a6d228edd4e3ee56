"""The video half of the ingestion pipeline, run through Kedro with deterministic fake backends:
bad inputs are quarantined with their stage and reason, reruns are incremental."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from evads_kedro.timeline import parse_timeline
from test_ingestion_helpers import (
    FakeAsr,
    FakeOcr,
    colour_video,
    ffmpeg,
    lavfi_video,
    needs_ffmpeg,
    reset_fakes,
    run_videos,
)

pytestmark = needs_ffmpeg


def _tables(project: Path):
    d = project / "data"
    quarantine = pd.read_csv(d / "08_reporting/ingestion_quarantine.csv")
    videos = pd.read_parquet(d / "02_intermediate/ingested/videos.parquet")
    timelines = pd.read_parquet(d / "02_intermediate/ingested/timelines.parquet")
    probes = pd.read_parquet(d / "02_intermediate/ingested/probes.parquet")
    return quarantine, videos, timelines, probes


def _tmp_files(project: Path) -> list[Path]:
    return [p for p in (project / "data").rglob(".tmp-*")]


def make_bad_inputs(root: Path, scratch: Path) -> dict[str, str]:
    """A folder with every kind of input; returns file -> expected outcome (``ok`` or a
    regex of the quarantine reason)."""
    root.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}
    lavfi_video(root / "good.mp4", seconds=2.0)
    expect["good.mp4"] = "ok"
    shutil.copy(root / "good.mp4", root / "zz copy of good.mp4")
    expect["zz copy of good.mp4"] = r"^duplicate content of good\.mp4"
    (root / "empty.mp4").write_bytes(b"")
    expect["empty.mp4"] = r"^empty file \(0 bytes\)$"
    full = lavfi_video(scratch / "full.mp4", seconds=6.0, size="160x120")
    (root / "truncated.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    expect["truncated.mp4"] = r"^corrupt, truncated or not a media file"
    fast = lavfi_video(scratch / "fast.mp4", seconds=6.0, size="160x120",
                       extra=("-movflags", "+faststart"))
    (root / "truncated_faststart.mp4").write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    expect["truncated_faststart.mp4"] = r"^truncated: video data ends at"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(root / "audio_only.mp4"))
    expect["audio_only.mp4"] = r"^no video stream \(audio only: aac\)$"
    Image.new("RGB", (64, 48), (10, 200, 10)).save(root / "photo.mp4", format="PNG")
    expect["photo.mp4"] = r"^a still image \(png"
    lavfi_video(root / "half_second.mp4", seconds=0.5)
    expect["half_second.mp4"] = r"^too short: 0\.5\d s < min_duration_s 1$"
    lavfi_video(root / "too_long.mkv", seconds=7.0, size="32x32")
    expect["too_long.mkv"] = r"^too long: 7\.0\d s > max_duration_s 6$"
    lavfi_video(root / "no_audio.mp4", seconds=3.0, audio=False)
    expect["no_audio.mp4"] = "ok"
    lavfi_video(root / "新品 上市 🎉 ad.mp4", seconds=2.5)
    expect["新品 上市 🎉 ad.mp4"] = "ok"
    lavfi_video(root / "sub" / "Upper.MOV", seconds=2.0, size="48x32")
    expect["sub/Upper.MOV"] = "ok"
    lavfi_video(root / "sub" / "good.mkv", seconds=2.0, size="40x30")
    expect["sub/good.mkv"] = r"^duplicate video id 'good': good\.mp4 has the same file name"
    lavfi_video(root / "bad\nname.mp4", seconds=2.0, size="36x24")
    expect["bad\nname.mp4"] = r"^unsafe file name: contains control character"
    (root / "noise.webm").write_bytes(os.urandom(20_000))
    expect["noise.webm"] = r"^corrupt, truncated or not a media file"
    # not videos: ignored without a quarantine row
    (root / "good.json").write_text('{"category": "家用电器"}', encoding="utf-8")
    (root / "notes.txt").write_text("not a video")
    shutil.copy(root / "good.mp4", root / "._good.mp4")  # macOS resource fork: hidden
    return expect


@pytest.mark.slow
def test_every_kind_of_bad_input_lands_where_it_should(kedro_project, tmp_path):
    reset_fakes()
    root = tmp_path / "ads"
    expect = make_bad_inputs(root, tmp_path / "scratch")
    run_videos(kedro_project, video_root=str(root), max_duration_s=6.0)
    quarantine, videos, timelines, probes = _tables(kedro_project)

    assert set(probes["file"]) == set(expect)  # json / txt / hidden files are not candidates
    ok = {f for f, e in expect.items() if e == "ok"}
    assert set(videos["video_id"]) == {Path(f).stem for f in ok}
    assert set(quarantine["file"]) == set(expect) - ok
    for row in quarantine.itertuples():
        assert row.stage == "probe"
        assert pd.Series([row.reason]).str.contains(expect[row.file], regex=True).all(), row
    dup = quarantine.set_index("file").loc["zz copy of good.mp4"]
    assert dup.duplicate_of == "good.mp4" and isinstance(dup.sha256, str)

    v = videos.set_index("video_id")
    assert v.loc["good", "category"] == "家用电器" and v.loc["good", "category_source"] == "sidecar"
    assert v.loc["no_audio", "category"] == "其他"
    assert not v.loc["no_audio", "has_audio"]
    # a video without audio: valid, transcribed as nothing (no model needed), OCR present
    na = timelines[timelines.video_id == "no_audio"]
    assert na["asr"].isna().all() and len(na) == 3
    assert parse_timeline(v.loc["no_audio", "timeline_asr"]).events == []
    # same columns as the released tables, so density treats both alike
    released_cols = ["video_id", "category", "duration_s", "video_path", "video_exists",
                     "splits", "n_questions", "timeline_full", "source"]
    assert list(videos.columns[: len(released_cols)]) == released_cols
    assert list(timelines.columns) == ["video_id", "second", "ocr", "asr"]
    # the timeline text of a non-ASCII, emoji and space name
    text = (kedro_project / "data/03_primary/timelines/新品 上市 🎉 ad.txt").read_text("utf-8")
    tl = parse_timeline(text)
    assert tl.category == "其他" and tl.duration == 3 and tl.render() == text  # 2.5 s rounds up
    assert text == v.loc["新品 上市 🎉 ad", "timeline_full"]
    asr_lines = [e for e in tl.events if e.asr]
    assert asr_lines and all(e.asr.startswith("tone") for e in asr_lines)
    summary = (kedro_project / "data/08_reporting/ingestion_summary.md").read_text("utf-8")
    assert f"quarantined: {len(expect) - len(ok)}" in summary
    assert "| probe |" in summary and "| asr |" in summary
    assert not _tmp_files(kedro_project)

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["evads_kedro"]).iloc[0]
    assert run["metrics.ingestion.quarantined"] == len(expect) - len(ok)
    assert run["metrics.ingestion.videos_ready"] == len(ok)
    assert run["metrics.ingestion.decode.done"] == len(ok)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"], "ingestion")}
    assert {"ingestion/ingestion_quarantine.csv", "ingestion/ingestion_summary.md"} <= artifacts


@pytest.mark.slow
def test_failure_in_a_later_stage_is_quarantined_with_its_stage(kedro_project, tmp_path):
    reset_fakes()
    root = tmp_path / "ads"
    colour_video(root / "dark.mp4", seconds=3.0)
    lavfi_video(root / "bright.mp4", seconds=2.0, size="32x32")
    # fake OCR refuses frames brighter than 100 on average: testsrc frames are, colour ones not
    run_videos(kedro_project, video_root=str(root), ocr={"fail_above": 100.0})
    quarantine, videos, _, _ = _tables(kedro_project)
    assert list(videos["video_id"]) == ["dark"]
    row = quarantine.set_index("file").loc["bright.mp4"]
    assert row.stage == "ocr" and "fake OCR refuses bright frames" in row.reason
    # a rerun does not retry the failure (same content and parameters) ...
    reset_fakes()
    run_videos(kedro_project, video_root=str(root), ocr={"fail_above": 100.0})
    assert FakeOcr.calls == 0 and FakeAsr.calls == []
    assert _tables(kedro_project)[0].set_index("file").loc["bright.mp4"].stage == "ocr"
    # ... unless asked to
    run_videos(kedro_project, video_root=str(root), ocr={"fail_above": 100.0},
               retry_quarantined=True)
    assert FakeOcr.calls > 0


@pytest.mark.slow
def test_rerun_skips_finished_videos_and_redoes_only_what_changed(kedro_project, tmp_path):
    reset_fakes()
    root = tmp_path / "ads"
    for i, secs in enumerate((3.0, 4.0, 5.0)):
        colour_video(root / f"v{i}.mp4", seconds=secs, audio=True)
    run_videos(kedro_project, video_root=str(root))
    assert sorted(FakeAsr.calls) == [3, 4, 5] and FakeOcr.calls == 3 + 4 + 5
    data = kedro_project / "data"
    outputs = sorted(p for p in data.rglob("*") if p.is_file() and "08_reporting" not in str(p)
                     and not p.name.endswith(".parquet"))
    stamps = {p: p.stat().st_mtime_ns for p in outputs}
    _, videos, timelines, _ = _tables(kedro_project)
    tl = parse_timeline(videos.set_index("video_id").loc["v1", "timeline_full"])
    # colour_video: second s shows R = 40 s (fake OCR reads R<40 s // 32>); tone in even seconds
    assert [(r.second, r.ocr, r.asr) for r in tl.per_second()] == [
        (0, ("R0",), "tone0"), (1, ("R1",), None), (2, ("R2",), "tone2"), (3, ("R3",), None)]

    # 1. nothing changed: every stage skips every video, no file is rewritten
    reset_fakes()
    run_videos(kedro_project, video_root=str(root))
    assert FakeAsr.calls == [] and FakeOcr.calls == 0
    assert {p: p.stat().st_mtime_ns for p in outputs} == stamps
    summary = (data / "08_reporting/ingestion_summary.md").read_text("utf-8")
    assert "| decode | 0 | 3 | 0 |" in summary and "| asr | 0 | 3 | 0 |" in summary
    pd.testing.assert_frame_equal(_tables(kedro_project)[2], timelines)

    # 2. an OCR parameter changed: OCR is redone, decode and ASR are not
    run_videos(kedro_project, video_root=str(root), ocr={"min_score": 0.7})
    assert FakeAsr.calls == [] and FakeOcr.calls == 12
    assert all(stamps[p] == p.stat().st_mtime_ns for p in outputs if "/ocr/" not in str(p))

    # 3. one video's content changed: only that video is redone (with the new OCR params)
    reset_fakes()
    colour_video(root / "v2.mp4", seconds=6.0, audio=True)
    run_videos(kedro_project, video_root=str(root), ocr={"min_score": 0.7})
    assert FakeAsr.calls == [6] and FakeOcr.calls == 6
    _, videos, _, _ = _tables(kedro_project)
    assert videos.set_index("video_id").loc["v2", "duration_s"] == pytest.approx(6.0)
    assert not _tmp_files(kedro_project)


@pytest.mark.slow
def test_empty_video_root_is_a_clean_run(kedro_project, tmp_path):
    (tmp_path / "nothing").mkdir()
    run_videos(kedro_project, video_root=str(tmp_path / "nothing"))
    quarantine, videos, timelines, probes = _tables(kedro_project)
    assert len(quarantine) == len(videos) == len(timelines) == len(probes) == 0
