"""The one frame sampler for models (video.sample_n_frames), used by evaluation and rl_training:
evenly spaced, display-rotated, size-capped, seek or sequential by the keyframe plan."""

from __future__ import annotations

import numpy as np
import pytest

from evads_kedro.pipelines.evaluation.video_frames import frames_from_video
from evads_kedro.pipelines.rl_training import data as rl_data
from evads_kedro.video import plan_decode, sample_n_frames
from test_ingestion_helpers import colour_video, ffmpeg, needs_ffmpeg

pytestmark = needs_ffmpeg


@pytest.mark.parametrize("gop", [5, 250])  # short GOP -> seek, long GOP -> sequential
def test_n_frames_evenly_spaced_over_the_video(tmp_path, gop):
    video = colour_video(tmp_path / "v.mp4", fps=10, seconds=4.0, size=(64, 48), gop=gop)
    assert plan_decode(video, 1.0)["method"] == ("seek" if gop == 5 else "sequential")
    frames = sample_n_frames(video, 4, max_side=32)
    # frame k is shown from second k: its red channel says which second it is
    assert [int(round(f[..., 0].mean() / 40)) for f in frames] == [0, 1, 2, 3]
    assert all(f.shape == (24, 32, 3) for f in frames)  # longer side capped, aspect kept
    assert len(sample_n_frames(video, 2)) == 2 and sample_n_frames(video, 0) == []


def test_rotation_is_honoured_by_every_consumer(tmp_path):
    src = tmp_path / "pattern.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x32:rate=10:duration=2", "-c:v", "libx264",
           "-pix_fmt", "yuv444p", "-crf", "0", str(src))
    rotated = tmp_path / "rot90.mp4"
    ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    raw = tmp_path / "auto.rgb"
    ffmpeg("-i", str(rotated), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", str(raw))
    truth = np.fromfile(raw, np.uint8).reshape(64, 32, 3).astype(int)  # ffmpeg autorotates
    for frames in (sample_n_frames(rotated, 2), frames_from_video(rotated, 2, None),
                   [np.asarray(im) for im in rl_data.sample_frames(str(rotated), 2, 448)]):
        assert frames[0].shape == (64, 32, 3)  # portrait, as displayed
        assert np.abs(frames[0].astype(int) - truth).mean() < 3
