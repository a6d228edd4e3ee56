"""Frames shown to a vision model under test: a fixed count, evenly spaced, size-capped.

Source order: the ingestion frames artefact (``<frames_dir>/<video_id>.zip``, already decoded)
when present, else the video file through PyAV, else none (the model then gets text only and
the item records ``input_mode = text_no_video``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image


def _plain_id(video_id: str) -> bool:
    # a table row must not steer the read out of frames_dir (``../../elsewhere/x``)
    return (isinstance(video_id, str) and video_id not in ("", ".", "..")
            and not any(c in video_id for c in "/\\\x00"))


def frame_source(video_id: str, video_path: str | None, frames_dir: str | Path | None) -> str | None:
    """Where frames of a video would come from: ``frames_artefact``, ``video`` or None."""
    if frames_dir and _plain_id(video_id) and (Path(frames_dir) / f"{video_id}.zip").is_file():
        return "frames_artefact"
    if video_path and Path(video_path).is_file():
        return "video"
    return None


def _even_indices(n_have: int, n_want: int) -> list[int]:
    if n_have <= 0:
        return []
    n = min(n_have, n_want)
    return sorted({min(n_have - 1, int((i + 0.5) * n_have / n)) for i in range(n)})


def _cap(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side or max(frame.shape[:2]) <= max_side:
        return frame
    img = Image.fromarray(frame)
    s = max_side / max(img.size)
    img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BILINEAR)
    return np.asarray(img)


def frames_from_video(path: str | Path, n_frames: int, max_side: int | None) -> list[np.ndarray]:
    """``n_frames`` evenly spaced RGB frames of a video file: the project's one frame sampler
    (:func:`evads_kedro.video.sample_n_frames`: rotation honoured, no full-resolution decode
    of the whole video)."""
    from evads_kedro.video import sample_n_frames

    return sample_n_frames(path, n_frames, max_side)


def frames_from_artefact(path: str | Path, n_frames: int, max_side: int | None) -> list[np.ndarray]:
    from evads_kedro.datasets import FramesDataset

    stack = FramesDataset(str(path)).load()
    return [_cap(stack.frames[i], max_side) for i in _even_indices(len(stack), n_frames)]


@functools.lru_cache(maxsize=32)
def load_frames(video_id: str, video_path: str | None, frames_dir: str | None,
                n_frames: int, max_side: int | None) -> tuple[tuple[np.ndarray, ...], str | None]:
    """Frames of one video and their source (cached per process: 5 questions share a video)."""
    src = frame_source(video_id, video_path, frames_dir)
    if src == "frames_artefact":
        return tuple(frames_from_artefact(Path(frames_dir) / f"{video_id}.zip", n_frames,
                                          max_side)), src
    if src == "video":
        return tuple(frames_from_video(video_path, n_frames, max_side)), src
    return (), None
