"""``evaluation`` (conf/base/parameters_evaluation.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.chat import ChatBackend
from evads_kedro.params.judge import Constrained, Judge


class Subset(Block):
    """``evaluation.subset``: which questions are answered."""

    splits: Literal["auto"] | list[Literal["test", "rl", "sft"]]
    max_questions: PositiveInt | None
    seed: int
    question_ids: list[str] | None


class TaskClassifier(Block):
    """``evaluation.task_classifier``: rules, or an LLM with the rules as fallback."""

    method: Literal["rules", "llm"]
    assign_per_video: bool
    llm_weight: NonNegativeFloat
    prompt_path: str
    temperature: NonNegativeFloat
    seed: int | None
    max_tokens: PositiveInt
    invalid_retries: NonNegativeInt
    constrained: Constrained
    concurrency: PositiveInt
    progress: bool
    backend: ChatBackend | None


class Generation(Block):
    """``evaluation.generation``: defaults of every model under test (a model overrides)."""

    prompt_path: str | None
    video_token: str
    temperature: NonNegativeFloat
    seed: int | None
    n_samples: PositiveInt
    max_tokens: PositiveInt | None
    n_frames: PositiveInt
    max_side: PositiveInt | None
    system_prompt: str | None


class VideoNative(Block):
    """``video_native`` of a model under test: sampling sent with a ``video_url`` part."""

    fps: float | None = Field(default=None, gt=0)
    max_frames: PositiveInt | None = None
    max_pixels: PositiveInt | None = None
    total_pixels: PositiveInt | None = None


class ProbeFloor(Block):
    """``evaluation.judge_probes.floor``: below any of these, the report warns about the judge."""

    auc_reference_vs_swapped: float = Field(ge=0, le=1)
    spearman: float = Field(ge=-1, le=1)
    max_invalid_rate: float = Field(ge=0, le=1)


class JudgeProbes(Block):
    """``evaluation.judge_probes``: the judge check (probes with a known right score)."""

    enabled: bool
    n_questions: PositiveInt
    seed: int
    splits: list[Literal["test", "rl", "sft"]]
    repeat: Literal["auto"] | bool
    second_prompt_path: str | None
    max_record_chars: PositiveInt | None
    judges: dict[str, Judge]
    floor: ProbeFloor


class ModelUnderTest(Block):
    """One entry of ``evaluation.models_under_test``: generation keys override the defaults."""

    backend: ChatBackend
    enabled: bool | None = None
    timeline: Literal["asr_only", "full", "none"] | None = None
    video: Literal["auto", "native", "frames", "none"] | None = None
    video_native: VideoNative | None = None
    concurrency: PositiveInt | None = None
    prompt_path: str | None = None
    video_token: str | None = None
    temperature: NonNegativeFloat | None = None
    seed: int | None = None
    n_samples: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    n_frames: PositiveInt | None = None
    max_side: PositiveInt | None = None
    system_prompt: str | None = None


class Report(Block):
    """``evaluation.report``: the bootstrap intervals."""

    bootstrap: NonNegativeInt
    level: float = Field(gt=0, lt=1)
    seed: int


class Evaluation(Block):
    """``evaluation``."""

    protocol: Literal["official", "ours"]
    models: list[str] | None
    subset: Subset
    task_classifier: TaskClassifier
    frames_dir: str | None
    video_roots: list[str] | str | None
    progress: bool
    cache_failures: bool
    generation: Generation
    models_under_test: dict[str, ModelUnderTest | None]
    judge_prompt_path: str | None
    judge: Judge
    judge_probes: JudgeProbes
    report: Report


__all__ = ["Evaluation"]
