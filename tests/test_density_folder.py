"""``density.datasets.NAME=DIR`` after ``ingestion.video_root=DIR``: A_den / O_den come from the
ingestion pipeline's timelines, matched by content hash, and each row says where they came from.
Fake ASR / OCR backends (``test_ingestion_helpers``), the packaged frame encoder."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest

from test_ingestion_helpers import colour_video, needs_ffmpeg, run_videos

PARAMS = {
    "samples_dataset": "samples", "released_vden": False, "fps": 1.0, "max_side": 448,
    "max_videos_per_dataset": None, "encoder": {"name": "packaged:efficientnet_lite0"},
    "vden": {"alpha": 100.0, "window": 2.0, "weighting": "inverse"},
}


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ingestion_then_density_of_a_fresh_folder_gives_all_three_densities(
        kedro_project, tmp_path, monkeypatch):
    from evads_kedro.pipelines.density import nodes
    from evads_kedro.pipelines.density.nodes import merge_video_density, visual_density_per_video

    root = tmp_path / "fresh"
    colour_video(root / "ad1.mp4", seconds=4.0, audio=True)
    run_videos(kedro_project, video_root=str(root))
    ingested = pd.read_parquet(kedro_project / "data/02_intermediate/ingested/videos.parquet")
    assert ingested["video_id"].tolist() == ["ad1"]

    # the same content under another name in another folder is still matched (by hash)
    other = tmp_path / "copy"
    other.mkdir()
    shutil.copy(root / "ad1.mp4", other / "renamed.mp4")
    colour_video(other / "never_ingested.mp4", seconds=3.0, fps=10)
    params = PARAMS | {"datasets": {"fresh": str(root), "copy": str(other)}}
    warnings: list[str] = []
    monkeypatch.setattr(nodes.logger, "warning", lambda msg, *a: warnings.append(msg % a))
    _, visual = visual_density_per_video({}, ingested, pd.DataFrame(), {}, params)
    per_video = merge_video_density(pd.DataFrame(), pd.DataFrame(), visual)
    rows = per_video.set_index(["dataset", "video_id"])
    for key in (("fresh", "ad1"), ("copy", "renamed")):
        r = rows.loc[key]
        assert r["text_source"] == "ingestion"
        assert all(math.isfinite(r[c]) for c in ("v_den", "a_den", "o_den")), r
        assert r["o_den"] > 0 and r["a_den"] > 0  # fake OCR: a box a second; fake ASR: tones
    lost = rows.loc[("copy", "never_ingested")]
    assert lost["text_source"] == "none" and math.isnan(lost["a_den"])
    warned = [m for m in warnings if "density.datasets.copy" in m and "no timeline" in m]
    assert warned and f'ingestion.video_root={other}' in warned[0]
    assert not [m for m in warnings if "density.datasets.fresh" in m and "no timeline" in m]


def test_the_samples_row_holds_only_videos_under_the_samples_root():
    from evads_kedro.pipelines.density.nodes import samples_only

    videos = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "video_path": [
        "/p/project/data/01_raw/videos/a.mp4", "data/01_raw/videos/sub/b.mp4",
        "/my/ads/c.mp4", "/p/project/data/01_raw/videos_old/d.mp4"]})
    params = {"samples_video_root": "data/01_raw/videos"}
    assert samples_only(videos, params)["video_id"].tolist() == ["a", "b"]
    assert samples_only(videos, {"samples_video_root": "/my/ads"})["video_id"].tolist() == ["c"]
    assert len(samples_only(videos, {"samples_video_root": None})) == 4
