"""``evaluation`` (conf/base/parameters_evaluation.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.chat import ChatBackend
from evads_kedro.params.judge import Constrained, Judge


class Subset(Block):
    """``evaluation.subset``: which questions are answered."""

    splits: list[Literal["rl", "sft"]]
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

    prompt_path: str
    video_token: str
    temperature: NonNegativeFloat
    seed: int | None
    n_samples: PositiveInt
    max_tokens: PositiveInt
    n_frames: PositiveInt
    max_side: PositiveInt | None
    system_prompt: str | None


class ModelUnderTest(Block):
    """One entry of ``evaluation.models_under_test``: generation keys override the defaults."""

    backend: ChatBackend
    enabled: bool | None = None
    timeline: Literal["asr_only", "full", "none"] | None = None
    video: Literal["frames", "none"] | None = None
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

    subset: Subset
    task_classifier: TaskClassifier
    frames_dir: str | None
    video_roots: list[str] | str | None
    progress: bool
    cache_failures: bool
    generation: Generation
    models_under_test: dict[str, ModelUnderTest | None]
    judge_prompt_path: str
    judge: Judge
    report: Report


__all__ = ["Evaluation"]
