"""evads_kedro.video: probe fields, invalid inputs, frames at the right timestamps, rotation."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from evads_kedro.video import InvalidVideo, plan_decode, probe_video, sample_frames, sha256_file
from test_ingestion_helpers import colour_video, ffmpeg, lavfi_video, needs_ffmpeg

pytestmark = needs_ffmpeg


# ------------------------------------------------------------------------------- probe fields
@pytest.mark.parametrize(
    "name, size, rate, audio, vcodec, fps, codec, container",
    [
        ("a.mp4", "320x240", "25", True, ("-c:v", "libx264", "-pix_fmt", "yuv420p"), 25.0,
         "h264", "mp4"),
        ("b.mkv", "64x48", "30000/1001", False, ("-c:v", "libx264", "-pix_fmt", "yuv420p"),
         29.97, "h264", "matroska"),
        ("c.webm", "96x64", "12", True, ("-c:v", "libvpx", "-b:v", "200k"), 12.0, "vp8",
         "webm"),
        ("d.avi", "80x60", "15", False, ("-c:v", "mpeg4"), 15.0, "mpeg4", "avi"),
        ("e.MOV", "100x50", "60", True, ("-c:v", "libx264", "-pix_fmt", "yuv420p"), 60.0,
         "h264", "mov"),
    ],
)
def test_probe_reads_fps_size_codecs_audio_and_hash(tmp_path, name, size, rate, audio, vcodec,
                                                    fps, codec, container):
    acodec = ("-c:a", "libopus") if name.endswith(".webm") else ("-c:a", "aac")
    path = lavfi_video(tmp_path / name, seconds=3.0, size=size, rate=rate, audio=audio,
                       vcodec=vcodec, acodec=acodec)
    p = probe_video(path)
    w, h = map(int, size.split("x"))
    assert (p.width, p.height, p.rotation) == (w, h, 0)
    assert p.fps == pytest.approx(fps, abs=0.01)
    assert p.duration_s == pytest.approx(3.0, abs=0.1)
    assert p.video_codec == codec and container in p.container
    assert p.has_audio is audio and p.n_audio_streams == int(audio)
    assert p.audio_codecs == ((acodec[1].removeprefix("lib"),) if audio else ())
    assert p.size_bytes == path.stat().st_size and p.sha256 == sha256_file(path)
    assert p.n_frames == pytest.approx(3.0 * fps, abs=2)


def test_probe_counts_two_audio_streams(tmp_path):
    video = lavfi_video(tmp_path / "v.mp4", audio=False)
    out = tmp_path / "two_audio.mp4"
    ffmpeg("-i", str(video), "-f", "lavfi", "-i", "sine=duration=2", "-f", "lavfi",
           "-i", "sine=frequency=880:duration=2", "-map", "0:v", "-map", "1:a", "-map", "2:a",
           "-c:v", "copy", "-c:a", "aac", str(out))
    p = probe_video(out)
    assert p.n_audio_streams == 2 and p.audio_codecs == ("aac", "aac")


@pytest.mark.parametrize("rotate, expected", [(90, 90), (180, 180), (270, 270)])
def test_rotation_metadata_is_probed_and_frames_match_ffmpeg_autorotate(tmp_path, rotate,
                                                                       expected):
    base = colour_video(tmp_path / "base.mp4", fps=10, seconds=2.0, size=(64, 32))
    # a non-symmetric picture: left half white in the first frame's red channel
    src = tmp_path / "pattern.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x32:rate=10:duration=2", "-c:v", "libx264",
           "-pix_fmt", "yuv444p", "-crf", "0", str(src))
    rotated = tmp_path / f"rot{rotate}.mp4"
    ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", str(rotated))
    p = probe_video(rotated)
    assert p.rotation == expected
    assert (p.display_width, p.display_height) == ((32, 64) if rotate % 180 else (64, 32))
    stack = sample_frames(rotated, fps=1.0)
    # ground truth: what the ffmpeg CLI shows (it applies the display matrix)
    raw = tmp_path / "auto.rgb"
    ffmpeg("-i", str(rotated), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", str(raw))
    dh, dw = (64, 32) if rotate % 180 else (32, 64)
    truth = np.fromfile(raw, np.uint8).reshape(dh, dw, 3).astype(int)
    assert stack.frames[0].shape == (dh, dw, 3)
    assert np.abs(stack.frames[0].astype(int) - truth).mean() < 3
    assert stack.meta["rotation"] == expected
    assert probe_video(base).rotation == 0


# ------------------------------------------------------------------------------- bad inputs
def _truncated(tmp_path, faststart: bool):
    extra = ("-movflags", "+faststart") if faststart else ()
    full = lavfi_video(tmp_path / f"full{int(faststart)}.mp4", seconds=6.0, size="160x120",
                       extra=extra)
    data = full.read_bytes()
    cut = tmp_path / f"truncated{int(faststart)}.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: (d / "zero.mp4").write_bytes(b"") or d / "zero.mp4", r"empty file \(0 bytes\)"),
        (lambda d: _truncated(d, faststart=False), r"corrupt, truncated or not a media file"),
        (lambda d: _truncated(d, faststart=True), r"truncated: video data ends at .* declares"),
        (lambda d: _noise(d), r"corrupt, truncated or not a media file"),
        (lambda d: _audio_only(d), r"no video stream \(audio only: aac\)"),
        (lambda d: _image(d, "PNG"), r"a still image \(png"),
        (lambda d: _image(d, "JPEG"), r"a still image|a single frame"),
    ],
    ids=["zero-bytes", "truncated-moov-at-end", "truncated-faststart", "random-bytes",
         "audio-only", "png-renamed", "jpeg-renamed"],
)
def test_invalid_files_raise_with_a_clear_reason(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(InvalidVideo, match=reason) as info:
        probe_video(path)
    assert "\n" not in info.value.reason


def _noise(d):
    out = d / "noise.mov"
    out.write_bytes(np.random.default_rng(0).bytes(50_000))
    return out


def _audio_only(d):
    out = d / "audio_only.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(out))
    return out


def _image(d, fmt):
    out = d / f"picture_{fmt.lower()}.mp4"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(out, format=fmt)
    return out


def test_short_clip_and_audio_less_video_are_valid_videos(tmp_path):
    short = probe_video(lavfi_video(tmp_path / "short.mp4", seconds=0.5))
    assert short.duration_s == pytest.approx(0.5, abs=0.05)  # the duration rule is the batch's
    silent = probe_video(lavfi_video(tmp_path / "silent.mp4", audio=False))
    assert not silent.has_audio and silent.n_audio_streams == 0


# ---------------------------------------------------------------------------- frame sampling
def _second_of(frame: np.ndarray) -> int:
    """Inverse of colour_video's colour code (red = 40 * second)."""
    return int(round(float(frame[..., 0].mean()) / 40.0))


@pytest.mark.parametrize("fps", [25, Fraction(30000, 1001), 7, 60])
@pytest.mark.parametrize("method", ["sequential", "seek", "auto"])
def test_frames_are_the_ones_shown_at_each_second(tmp_path, fps, method):
    seconds = 4.5
    path = colour_video(tmp_path / "colours.mp4", fps=fps, seconds=seconds, gop=12)
    probe = probe_video(path)
    stack = sample_frames(path, fps=1.0, method=method, duration_s=probe.duration_s)
    rate = float(Fraction(fps).limit_denominator(1001))
    n_video_frames = int(round(seconds * rate))
    end = n_video_frames / rate
    expected_times = [k for k in range(10) if k < end - 1e-9]
    assert stack.timestamps == [float(k) for k in expected_times]
    assert stack.seconds == expected_times
    for k, frame in zip(expected_times, stack.frames, strict=True):
        shown = min(math.floor(k * rate + 1e-6), n_video_frames - 1)  # last frame with i/rate <= k
        assert _second_of(frame) == int(shown / rate + 1e-9), (k, stack.meta["source_times"])
        assert stack.meta["source_times"][k] == pytest.approx(shown / rate, abs=1e-3)


def test_other_sampling_rates_and_max_side(tmp_path):
    path = colour_video(tmp_path / "c.mp4", fps=25, seconds=4.0, size=(320, 160))
    half = sample_frames(path, fps=2.0)
    assert half.timestamps == [k / 2 for k in range(8)]
    slow = sample_frames(path, fps=0.5, max_side=100)
    assert slow.timestamps == [0.0, 2.0]
    assert slow.frames[0].shape == (50, 100, 3)  # longer side 100, aspect kept, never upscaled
    assert sample_frames(path, fps=1.0, max_side=4000).frames[0].shape == (160, 320, 3)
    assert [_second_of(f) for f in slow.frames] == [0, 2]


def test_decode_plan_follows_the_keyframe_interval(tmp_path):
    short_gop = colour_video(tmp_path / "g25.mp4", fps=25, seconds=6.0, gop=25)
    long_gop = colour_video(tmp_path / "g250.mp4", fps=25, seconds=6.0, gop=250)
    assert plan_decode(short_gop, 1.0)["method"] == "seek"
    plan = plan_decode(long_gop, 1.0)
    assert plan["method"] == "sequential" and plan["seek_cost"] > plan["sequential_cost"]
    for path in (short_gop, long_gop):
        a = sample_frames(path, method="sequential")
        b = sample_frames(path, method="seek", duration_s=6.0)
        assert a.timestamps == b.timestamps
        assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
