"""Bad raw videos through ``kedro run --pipelines ingestion --tags videos`` (probe / decode /
OCR / ASR / timelines, deterministic fake OCR+ASR backends): one batch holds every kind next to
good videos; each bad file gets a quarantine row naming it, its stage and a specific reason, the
odd-but-valid ones (8K, VFR, rotated, odd names) are ingested, and no file is lost.

Paths: a video symlink, a symlinked folder and a sidecar symlink that point outside the video
root are refused; the outside secret appears in no output.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from test_ingestion_helpers import (
    colour_video,
    ffmpeg,
    lavfi_video,
    needs_ffmpeg,
    reset_fakes,
    run_videos,
)

pytestmark = [needs_ffmpeg, pytest.mark.slow]

SECRET = "TOP-SECRET-7f3a9c"
OK = "ok"
ABSENT = "absent"
OK_NO_SIDECAR = "ok, sidecar ignored"


def _make_corpus(root: Path, scratch: Path, outside: Path) -> dict[str, dict[str, str]]:
    """kind -> {file (relative to root): expected outcome}: ``ok`` or (stage, reason regex)."""
    root.mkdir(parents=True)
    scratch.mkdir(parents=True)
    outside.mkdir(parents=True)
    kinds: dict[str, dict[str, str]] = {}
    lavfi_video(root / "good.mp4", seconds=2.0)
    colour_video(root / "good_colour.mp4", seconds=3.0, audio=True)
    kinds["control: good videos"] = {"good.mp4": OK, "good_colour.mp4": OK}

    (root / "zero.mp4").write_bytes(b"")
    kinds["video: zero bytes"] = {"zero.mp4": r"^probe: empty file \(0 bytes\)$"}
    full = lavfi_video(scratch / "full.mp4", seconds=6.0, size="160x120")
    (root / "truncated.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    fast = lavfi_video(scratch / "fast.mp4", seconds=6.0, size="160x120",
                       extra=("-movflags", "+faststart"))
    (root / "truncated_fast.mp4").write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    kinds["video: truncated"] = {
        "truncated.mp4": r"^probe: corrupt, truncated or not a media file",
        "truncated_fast.mp4": r"^probe: truncated: video data ends at [0-9.]+ s but the header "
                              r"declares 6\.00 s$"}
    Image.new("RGB", (64, 48), (10, 200, 10)).save(root / "picture.mp4", format="PNG")
    (root / "noise.webm").write_bytes(os.urandom(30_000))
    kinds["video: wrong container / not media"] = {
        "picture.mp4": r"^probe: a still image \(png in png_pipe\), not a video$",
        "noise.webm": r"^probe: corrupt, truncated or not a media file"}
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(root / "voice.mp4"))
    kinds["video: audio only"] = {"voice.mp4": r"^probe: no video stream \(audio only: aac\)$"}
    lavfi_video(root / "eight_k.mp4", seconds=1.5, size="7680x4320", rate="2", audio=False,
                vcodec=("-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast"))
    kinds["video: 8K (7680x4320)"] = {"eight_k.mp4": OK}
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", "1", "-c:v",
           "libx264", "-pix_fmt", "yuv420p", str(root / "one_frame.mp4"))
    kinds["video: one frame"] = {"one_frame.mp4": r"^probe: a single frame \(h264\), not a video$"}
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=3", "-vf",
           r"select='lt(n\,10)+gt(n\,40)*not(mod(n\,7))'", "-fps_mode", "vfr", "-c:v",
           "libx264", "-pix_fmt", "yuv420p", str(root / "vfr.mp4"))
    kinds["video: variable frame rate"] = {"vfr.mp4": OK}
    base = colour_video(scratch / "upright.mp4", seconds=2.0, size=(64, 32))
    ffmpeg("-i", str(base), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(root / "rot90.mp4"))
    kinds["video: rotated (display matrix 90)"] = {"rot90.mp4": OK}
    for name in ("summer  sale ad.mp4", "🔥限时 特价🎉.mp4", "promo..v2.mp4", "sub..dir/a..b.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        lavfi_video(root / name, seconds=2.0, size=f"{40 + 2 * len(name)}x32")
    kinds["name: spaces"] = {"summer  sale ad.mp4": OK}
    kinds["name: emoji / CJK"] = {"🔥限时 特价🎉.mp4": OK}
    kinds["name: '..' inside"] = {"promo..v2.mp4": OK, "sub..dir/a..b.mp4": OK}

    # paths: symlinks out of the root (the outside video is valid: only the path rule stops it)
    lavfi_video(outside / "secret.mp4", seconds=2.0, size="48x48")
    (root / "leak.mp4").symlink_to(outside / "secret.mp4")
    (outside / "folder").mkdir()
    lavfi_video(outside / "folder" / "inner.mp4", seconds=2.0, size="50x50")
    (root / "linked").symlink_to(outside / "folder", target_is_directory=True)
    kinds["path: symlink out of the video root"] = {
        "leak.mp4": r"^probe: unsafe: symlink pointing outside the video root$",
        # a symlinked folder is not walked into at all: not a candidate, nothing read
        "linked/inner.mp4": ABSENT}
    (outside / "secret.json").write_text(json.dumps({"category": SECRET, "language": "en"}))
    lavfi_video(root / "sidecar_leak.mp4", seconds=2.0, size="52x52")
    (root / "sidecar_leak.json").symlink_to(outside / "secret.json")
    kinds["path: sidecar symlink out of the root"] = {"sidecar_leak.mp4": OK_NO_SIDECAR}
    return kinds


@pytest.fixture(scope="module")
def batch(module_project, tmp_path_factory):
    base = tmp_path_factory.mktemp("videos")
    root, outside = base / "ads", base / "outside"
    kinds = _make_corpus(root, base / "scratch", outside)
    before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    reset_fakes()
    run_videos(module_project, video_root=str(root), max_duration_s=60.0)
    d = module_project / "data"
    quarantine = pd.read_csv(d / "08_reporting/ingestion_quarantine.csv")
    videos = pd.read_parquet(d / "02_intermediate/ingested/videos.parquet")
    probes = pd.read_parquet(d / "02_intermediate/ingested/probes.parquet")
    after = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    return {"kinds": kinds, "quarantine": quarantine, "videos": videos, "probes": probes,
            "project": module_project, "outside_unchanged": before == after, "root": root}


def _outcomes(batch, files: dict[str, str]) -> tuple[int, int, list[str]]:
    q = batch["quarantine"].set_index("file")
    v = batch["videos"].set_index("file")
    handled, lost, problems = 0, 0, []
    for file, expect in files.items():
        in_q, in_v = file in q.index, file in v.index
        if expect == ABSENT:
            seen = file in set(batch["probes"]["file"])
            handled += not (in_q or in_v or seen)
            if in_q or in_v or seen:
                problems.append(f"{file}: outside the root but was looked at")
        elif not in_q and not in_v:
            lost += 1
            problems.append(f"{file}: neither ingested nor quarantined")
        elif expect in (OK, OK_NO_SIDECAR):
            sidecar_used = in_v and v.loc[file, "category_source"] == "sidecar"
            if in_v and not in_q and not (expect == OK_NO_SIDECAR and sidecar_used):
                handled += 1
            else:
                problems.append(f"{file}: expected ingested, got {q.loc[file].to_dict()}")
        else:
            got = f"{q.loc[file, 'stage']}: {q.loc[file, 'reason']}" if in_q else "ingested"
            if in_q and re.search(expect, got):
                handled += 1
            else:
                problems.append(f"{file}: expected /{expect}/, got {got!r}")
    return handled, lost, problems


def test_corpus_covers_the_kinds(batch):
    assert len(batch["kinds"]) >= 14


@pytest.mark.kinds("ingestion", param="kind")
@pytest.mark.parametrize("kind", [
    "control: good videos", "video: zero bytes", "video: truncated",
    "video: wrong container / not media", "video: audio only", "video: 8K (7680x4320)",
    "video: one frame", "video: variable frame rate", "video: rotated (display matrix 90)",
    "name: spaces", "name: emoji / CJK", "name: '..' inside",
    "path: symlink out of the video root", "path: sidecar symlink out of the root",
])
def test_every_bad_video_is_quarantined_and_the_batch_continues(batch, kind, outcome):
    files = batch["kinds"][kind]
    handled, lost, problems = _outcomes(batch, files)
    if not kind.startswith("control"):  # the good videos are asserted, not a fault kind
        outcome.record(kind, "ingestion", tried=len(files), handled=handled, lost=lost)
    assert not problems, problems
    # the good ones of the same batch are all there, with a timeline
    videos = batch["videos"]
    for f in batch["kinds"]["control: good videos"]:
        assert f in set(videos["file"])
    assert videos["timeline_full"].str.startswith("Category:").all()


def test_odd_but_valid_videos_are_described_correctly(batch):
    v = batch["videos"].set_index("file")
    assert v.loc["rot90.mp4", "rotation"] == 90
    assert (v.loc["eight_k.mp4", "width"], v.loc["eight_k.mp4", "height"]) == (7680, 4320)
    assert 2.8 <= v.loc["vfr.mp4", "duration_s"] <= 3.2  # last frame at 2.8 s
    # one frame per second of the VFR clip, and the 8K frames were stored downscaled
    import zipfile

    frames = batch["project"] / "data/02_intermediate/frames"
    with zipfile.ZipFile(frames / "vfr.zip") as z:
        assert sum(n.endswith((".jpg", ".png", ".npy")) for n in z.namelist()) >= 3


def test_nothing_outside_the_root_is_read_or_written(batch):
    assert batch["outside_unchanged"]
    v = batch["videos"].set_index("file")
    assert v.loc["sidecar_leak.mp4", "category"] != SECRET
    assert v.loc["sidecar_leak.mp4", "category_source"] != "sidecar"
    assert not set(batch["videos"]["video_id"]) & {"leak", "inner"}
    hits = [p for p in (batch["project"] / "data").rglob("*")
            if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not hits, hits
    frames = batch["project"] / "data/02_intermediate/frames"
    assert not (frames / "leak.zip").exists() and not (frames / "inner.zip").exists()


def test_no_temp_file_is_left_behind(batch):
    assert not [p for p in (batch["project"] / "data").rglob(".tmp-*")]
