"""``density``: V_den / A_den / O_den (conf/base/parameters_density.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.common import Executor


class Encoder(Block):
    """``density.encoder``: the frame encoder (backends.encoders)."""

    name: str | None = None
    device: str | None = None
    batch_size: PositiveInt | None = None
    precision: Literal["auto", "fp32", "fp16", "bf16"] | None = None
    checkpoint: str | None = None
    pooling: Literal["auto", "image_features", "pooler", "cls", "mean"] | None = None


class Vden(Block):
    """``density.vden``: V_den's scale, window and weighting (vden.py)."""

    alpha: PositiveFloat | None = None
    window: PositiveFloat | None = None
    weighting: Literal["inverse", "exp", "uniform"] | None = None
    tau: PositiveFloat | None = None


class PaperRow(Block):
    """One row of ``density.paper_reference``."""

    v_den: NonNegativeFloat | None = None
    a_den: NonNegativeFloat | None = None
    o_den: NonNegativeFloat | None = None


class Density(Block):
    """``density``."""

    datasets: dict[str, str] | None = None
    samples_dataset: str | None = None
    samples_video_root: str | None = None
    released_vden: bool | None = None
    max_videos_per_dataset: PositiveInt | None = None
    fps: PositiveFloat | None = None
    max_side: PositiveInt | None = None
    encoder: Encoder | None = None
    vden: Vden | None = None
    paper_reference: dict[str, PaperRow] | None = None
    executor: Executor | None = None
