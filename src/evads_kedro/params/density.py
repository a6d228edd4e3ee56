"""``density``: V_den / A_den / O_den (conf/base/parameters_density.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.common import Executor


class Encoder(Block):
    """``density.encoder``: the frame encoder (backends.encoders)."""

    name: str
    device: str
    batch_size: PositiveInt
    precision: Literal["auto", "fp32", "fp16", "bf16"]
    checkpoint: str | None
    pooling: Literal["auto", "image_features", "pooler", "cls", "mean"]


class Vden(Block):
    """``density.vden``: V_den's scale, window and weighting (vden.py)."""

    alpha: PositiveFloat
    window: PositiveFloat
    weighting: Literal["inverse", "exp", "uniform"]
    tau: PositiveFloat


class PaperRow(Block):
    """One row of ``density.paper_reference``."""

    v_den: NonNegativeFloat
    a_den: NonNegativeFloat
    o_den: NonNegativeFloat


class Density(Block):
    """``density``."""

    datasets: dict[str, str]
    samples_dataset: str
    released_vden: bool
    max_videos_per_dataset: PositiveInt | None
    fps: PositiveFloat
    max_side: PositiveInt | None
    encoder: Encoder
    vden: Vden
    paper_reference: dict[str, PaperRow]
    executor: Executor
