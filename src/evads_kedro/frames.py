"""The per-video frame artefact: frames sampled at fixed timestamps, decoded once.

Ingestion decodes each video once into a :class:`FrameStack`; OCR and the density encoder both
read it, so no stage decodes the video a second time. On disk it is a zip of JPEG frames plus
an index (see :class:`evads_kedro.datasets.FramesDataset`): compact enough for long real ads,
lossless enough (quality 95) for OCR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FrameStack:
    """Frames of one video: ``frames[i]`` (H×W×3 uint8 RGB) was shown at ``timestamps[i]`` s.

    ``meta`` records what produced the stack (video content hash, fps, max side...), so a
    consumer can tell whether it is stale.
    """

    video_id: str
    timestamps: list[float]
    frames: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.timestamps) != len(self.frames):
            raise ValueError(
                f"{self.video_id}: {len(self.timestamps)} timestamps for {len(self.frames)} frames"
            )
        for i, f in enumerate(self.frames):
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"{self.video_id}: frame {i} must be H×W×3 uint8, got "
                                 f"{f.shape} {f.dtype}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def seconds(self) -> list[int]:
        """Whole-second index of each frame (the timeline's ``Time Ns``)."""
        return [int(round(t)) for t in self.timestamps]
