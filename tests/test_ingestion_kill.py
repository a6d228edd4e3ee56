"""A ``kedro run`` killed (SIGKILL) mid-batch loses nothing finished, leaves no half file, and a
rerun completes the rest without redoing finished videos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from test_ingestion_helpers import colour_video, kill_group_when, needs_ffmpeg

TESTS = Path(__file__).resolve().parent
DURATIONS = (2, 3, 4, 5)  # distinct, so the fake ASR's call log tells the videos apart


def _kedro_run(project: Path, root: Path, log: Path, delay_s: float) -> subprocess.Popen:
    params = ",".join([
        f"ingestion.video_root={root}",
        "ingestion.asr.backend=test_ingestion_helpers:FakeAsr",
        f"ingestion.asr.log={log}",
        "ingestion.ocr.backend=test_ingestion_helpers:FakeOcr",
        "ingestion.ocr.reuse_hamming=-1",
        "ingestion.progress=false",
    ])
    env = {**os.environ, "FAKE_ASR_DELAY_S": str(delay_s), "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS),
                                                                     os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "kedro", "run", "--pipelines", "ingestion", "--tags", "videos",
           "--params", params]
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _calls(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [json.loads(line)["audio_s"] for line in log.read_text().splitlines() if line]


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_run_resumes_without_redoing_finished_videos(kedro_project, tmp_path):
    root = tmp_path / "ads"
    for secs in DURATIONS:
        colour_video(root / f"ad_{secs}s.mp4", fps=10, seconds=float(secs), audio=True)
    asr_dir = kedro_project / "data/02_intermediate/ingested/asr"
    log = tmp_path / "asr_calls.jsonl"

    # 1. run with a slow fake ASR; SIGKILL as soon as the first video's ASR record exists
    proc = _kedro_run(kedro_project, root, log, delay_s=3.0)
    kill_group_when(proc, lambda: any(asr_dir.glob("*.json")), "the first ASR record",
                    timeout=600, poll=0.05)
    finished = {p.stem: (p.read_bytes(), p.stat().st_mtime_ns) for p in asr_dir.glob("*.json")}
    assert 1 <= len(finished) < len(DURATIONS), finished.keys()
    calls_before = _calls(log)
    assert not (kedro_project / "data/02_intermediate/ingested/videos.parquet").exists()

    # 2. rerun (fast ASR): the rest is done, the finished ones are not touched
    proc = _kedro_run(kedro_project, root, log, delay_s=0.0)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]
    for vid, (content, mtime) in finished.items():
        p = asr_dir / f"{vid}.json"
        assert p.read_bytes() == content and p.stat().st_mtime_ns == mtime
    calls_after = _calls(log)[len(calls_before):]
    done_first = {int(v.split("_")[1].rstrip("s")) for v in finished}
    assert not done_first & set(calls_after), "a finished video was transcribed again"
    # every video transcribed exactly once, except the one in flight when killed (at most one)
    all_calls = calls_before + calls_after
    assert set(all_calls) == set(DURATIONS)
    assert len(all_calls) - len(DURATIONS) <= 1
    videos = pd.read_parquet(kedro_project / "data/02_intermediate/ingested/videos.parquet")
    assert sorted(videos["video_id"]) == sorted(f"ad_{s}s" for s in DURATIONS)
    assert videos["video_id"].is_unique
    texts = sorted(p.stem for p in (kedro_project / "data/03_primary/timelines").glob("*.txt"))
    assert texts == sorted(videos["video_id"])
    leftovers = [p for p in (kedro_project / "data").rglob("*") if p.name.startswith(".tmp-")]
    assert not leftovers
