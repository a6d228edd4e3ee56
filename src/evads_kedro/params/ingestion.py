"""``ingestion`` (conf/base/parameters_ingestion.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from evads_kedro.params.base import Block, PluginBlock
from evads_kedro.params.common import Executor


class Released(Block):
    """``ingestion.released``: where the released videos live."""

    video_root: str | None = None


class Asr(PluginBlock):
    """``ingestion.asr``: backends.asr.DEFAULT_PARAMS (absent keys take those defaults)."""

    backend: str | None = None
    model: str | None = None
    language: str | list[str] | None = None
    language_switch_prob: float | None = None
    mandarin_prior: float | None = Field(default=None, ge=0, le=1)
    retry_dropped: bool | None = None
    fallback: Literal["always", "on_drop", "never"] | None = None
    device: str | None = None
    compute_type: str | None = None
    cpu_threads: NonNegativeInt | None = None
    beam_size: PositiveInt | None = None
    temperatures: list[NonNegativeFloat] | NonNegativeFloat | None = None
    no_speech_threshold: float | None = None
    logprob_threshold: float | None = None
    compression_ratio_threshold: float | None = None
    vad: bool | None = None
    min_rms: NonNegativeFloat | None = None
    max_repeats: PositiveInt | None = None
    initial_prompt: str | None = None
    simplify: str | bool | None = None
    seed: int | None = None


class Ocr(PluginBlock):
    """``ingestion.ocr``: backends.ocr.DEFAULT_PARAMS (absent keys take those defaults)."""

    backend: str | None = None
    min_score: float | None = None
    max_side: PositiveInt | None = None
    langs: list[str] | None = None
    model_dir: str | None = None
    device: str | None = None
    threads: PositiveInt | None = None
    reuse_hamming: int | None = None
    reuse_strict: bool | None = None
    reuse_boxes: bool | None = None
    reuse_regions: bool | None = None
    latin_spaces: NonNegativeFloat | None = None


class Ingestion(Block):
    """``ingestion``."""

    released: Released | None = None
    video_root: str | None = None
    extensions: list[str] | None = None
    min_duration_s: NonNegativeFloat | None = None
    max_duration_s: NonNegativeFloat | None = None
    fps: PositiveFloat | None = None
    frame_max_side: PositiveInt | None = None
    decode_method: Literal["auto", "sequential", "seek"] | None = None
    categories: dict[str, str] | None = None
    sidecar_category: bool | None = None
    sidecar_language: bool | None = None
    default_category: str | None = None
    retry_quarantined: bool | None = None
    progress: bool | None = None
    asr: Asr | None = None
    ocr: Ocr | None = None
    executor: Executor | None = None
