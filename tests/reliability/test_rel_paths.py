"""Configured roots hold whatever a table row says: a video id in an evaluation table that climbs
out of ``frames_dir`` gets no frames (the secret frames outside are never read nor sent to the
model), and the importer refuses ``videos`` entries whose file name cannot be a safe video id.
The folders outside are snapshotted and must be unchanged. (Video-root symlinks, sidecars and
escaping ``videos`` paths: test_rel_videos.py / test_rel_released.py.)
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from evads_kedro.calls.cache import JsonlCache
from evads_kedro.datasets import FramesDataset
from evads_kedro.frames import FrameStack
from evads_kedro.pipelines.evaluation.nodes import generate_answers, select_questions
from evads_kedro.pipelines.evaluation.tasks import classify_tasks
from evads_kedro.pipelines.ingestion.released import ReleasedRowError, resolve_video_path
from evaluation_data import eval_params, make_qa, make_videos, scripted_responder
from llm_server import FakeLLMServer

SECRET_RGB = (13, 37, 201)


def _stack(video_id: str, rgb: tuple[int, int, int]) -> FrameStack:
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[...] = rgb
    return FrameStack(video_id, [0.0, 1.0, 2.0], [frame.copy() for _ in range(3)], {})


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _images(request: dict) -> int:
    content = request["body"]["messages"][-1]["content"]
    return sum(p.get("type") == "image_url" for p in content) if isinstance(content, list) else 0


@pytest.mark.kinds("evaluation", "path: row video_id escaping frames_dir")
def test_a_row_cannot_steer_frame_reads_out_of_frames_dir(tmp_path, outcome):
    frames_dir = tmp_path / "data" / "frames"
    outside = tmp_path / "outside"
    FramesDataset(str(frames_dir / "v0.zip")).save(_stack("v0", (200, 10, 10)))
    FramesDataset(str(outside / "secret.zip")).save(_stack("secret", SECRET_RGB))
    before = _snapshot(outside)

    qa = make_qa([["1"] * 5, ["0.5"] * 5, ["0.25"] * 5])
    escapes = {"v1": "../../outside/secret", "v2": str(outside / "secret")}
    qa["video_id"] = qa["video_id"].replace(escapes)
    labels, _ = classify_tasks(qa, {"assign_per_video": True})
    qs = select_questions(qa, labels, make_videos(qa), {"subset": {"splits": ["rl"]}})
    with FakeLLMServer(scripted_responder()) as srv:
        params = eval_params(srv.base_url, frames_dir=str(frames_dir))
        params["models_under_test"]["endpoint"]["video"] = "frames"
        answers = generate_answers(qs, JsonlCache(tmp_path / "a.jsonl"), params)
        requests = list(srv.requests)

    a = answers
    bad = a[a["video_id"].isin(escapes.values())]
    good = a[a["video_id"] == "v0"]
    handled = int(((bad["input_mode"] == "text_no_video") & (bad["status"] == "ok")).sum())
    outcome.record("path: row video_id escaping frames_dir", "evaluation", tried=len(bad),
                   handled=handled, lost=len(qs) - len(a))
    assert handled == len(bad) == 10 and len(a) == len(qs)
    assert (good["input_mode"] == "frames+text").all() and (good["status"] == "ok").all()
    # the model got frames for v0 only, and never a pixel of the secret frames
    with_images = [r for r in requests if _images(r)]
    assert len(with_images) == 5
    assert all("[S1]" in str(r["body"]) for r in with_images)
    assert _snapshot(outside) == before


@pytest.mark.parametrize("raw", ["../videos/...mp4", "../videos/.hidden.mp4", "videos/.mp4",
                                 "../videos/a\tb.mp4", "../videos/..", "../videos/a/../../x.mp4"])
@pytest.mark.kinds("ingestion (released)", "path: dot-only / hidden / control-char video name")
def test_unusable_video_names_are_refused(raw, tmp_path, outcome):
    try:
        resolve_video_path(raw, tmp_path)
        handled = 0
    except ReleasedRowError as exc:
        handled = int(bool(re.search(r"expected \.\./videos/<id>\.mp4", str(exc))))
    outcome.record("path: dot-only / hidden / control-char video name", "ingestion (released)",
                   tried=1, handled=handled)
    assert handled


@pytest.mark.kinds("evaluation", "path: row video_path outside the video roots")
def test_video_paths_outside_the_video_roots_are_not_read(tmp_path, outcome, caplog):
    root, outside = tmp_path / "videos", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "v0.mp4").write_bytes(b"inside")
    (outside / "secret.mp4").write_bytes(b"secret")
    (root / "link.mp4").symlink_to(outside / "secret.mp4")  # inside by name, outside for real
    qa = make_qa([["1"] * 5, ["1"] * 5, ["1"] * 5, ["1"] * 5])
    videos = make_videos(qa)
    videos["video_path"] = [str(root / "v0.mp4"), str(outside / "secret.mp4"),
                            str(root / "link.mp4"), str(root / ".." / "outside" / "secret.mp4")]
    videos["video_exists"] = True
    labels, _ = classify_tasks(qa, {"assign_per_video": True})
    qs = select_questions(qa, labels, videos, {"subset": {"splits": ["rl"]},
                                               "video_roots": [str(root)]})
    by_video = qs.drop_duplicates("video_id").set_index("video_id")
    refused = by_video.loc[["v1", "v2", "v3"]]
    handled = int((refused["video_path"].isna() & ~refused["video_exists"]).sum())
    outcome.record("path: row video_path outside the video roots", "evaluation",
                   tried=len(refused), handled=handled, lost=len(qa) - len(qs))
    assert handled == 3 and len(qs) == len(qa)
    assert by_video.at["v0", "video_path"] == str(root / "v0.mp4")
    assert "outside evaluation.video_roots" in caplog.text and "v2" in caplog.text
    # no configured roots: paths pass through unchanged
    free = select_questions(qa, labels, videos, {"subset": {"splits": ["rl"]}})
    assert free["video_path"].notna().all()
