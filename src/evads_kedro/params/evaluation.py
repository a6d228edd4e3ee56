"""``evaluation`` (conf/base/parameters_evaluation.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.chat import ChatBackend
from evads_kedro.params.judge import Constrained, Judge


class Subset(Block):
    """``evaluation.subset``: which questions are answered."""

    splits: list[Literal["rl", "sft"]] | None = None
    max_questions: PositiveInt | None = None
    seed: int | None = None
    question_ids: list[str] | None = None


class TaskClassifier(Block):
    """``evaluation.task_classifier``: rules, or an LLM with the rules as fallback."""

    method: Literal["rules", "llm"] | None = None
    assign_per_video: bool | None = None
    llm_weight: NonNegativeFloat | None = None
    prompt_path: str | None = None
    temperature: NonNegativeFloat | None = None
    seed: int | None = None
    max_tokens: PositiveInt | None = None
    invalid_retries: NonNegativeInt | None = None
    constrained: Constrained | None = None
    concurrency: PositiveInt | None = None
    progress: bool | None = None
    backend: ChatBackend | None = None


class Generation(Block):
    """``evaluation.generation``: defaults of every model under test (a model overrides)."""

    prompt_path: str | None = None
    video_token: str | None = None
    temperature: NonNegativeFloat | None = None
    seed: int | None = None
    n_samples: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    n_frames: PositiveInt | None = None
    max_side: PositiveInt | None = None
    system_prompt: str | None = None


class ModelUnderTest(Generation):
    """One entry of ``evaluation.models_under_test``: its backend and what it sees; any
    ``generation`` key set here overrides the default for this model."""

    backend: ChatBackend | None = None
    enabled: bool | None = None
    timeline: Literal["asr_only", "full", "none"] | None = None
    video: Literal["frames", "none"] | None = None
    concurrency: PositiveInt | None = None


class Report(Block):
    """``evaluation.report``: the bootstrap intervals."""

    bootstrap: NonNegativeInt | None = None
    level: float | None = Field(default=None, gt=0, lt=1)
    seed: int | None = None


class Evaluation(Block):
    """``evaluation``."""

    subset: Subset | None = None
    task_classifier: TaskClassifier | None = None
    frames_dir: str | None = None
    video_roots: list[str] | str | None = None
    progress: bool | None = None
    cache_failures: bool | None = None
    generation: Generation | None = None
    models_under_test: dict[str, ModelUnderTest | None] | None = None
    judge_prompt_path: str | None = None
    judge: Judge | None = None
    report: Report | None = None


__all__ = ["Evaluation"]
