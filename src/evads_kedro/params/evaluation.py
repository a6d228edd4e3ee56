"""``evaluation`` (conf/base/parameters_evaluation.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.chat import ChatBackend
from evads_kedro.params.judge import Constrained, Judge


class Subset(Block):
    """``evaluation.subset``: which questions are answered."""

    splits: Literal["auto"] | list[Literal["test", "rl", "sft"]] | None = None
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


class VideoNative(Block):
    """``video_native`` of a model under test: sampling sent with a ``video_url`` part."""

    fps: float | None = Field(default=None, gt=0)
    max_frames: PositiveInt | None = None
    max_pixels: PositiveInt | None = None
    total_pixels: PositiveInt | None = None


class ProbeFloor(Block):
    """``evaluation.judge_probes.floor``: below any of these, the report warns about the judge."""

    auc_reference_vs_swapped: float | None = Field(default=None, ge=0, le=1)
    spearman: float | None = Field(default=None, ge=-1, le=1)
    max_invalid_rate: float | None = Field(default=None, ge=0, le=1)


class JudgeProbes(Block):
    """``evaluation.judge_probes``: the judge check (probes with a known right score)."""

    enabled: bool | None = None
    n_questions: PositiveInt | None = None
    seed: int | None = None
    splits: list[Literal["test", "rl", "sft"]] | None = None
    repeat: Literal["auto"] | bool | None = None
    second_prompt_path: str | None = None
    max_record_chars: PositiveInt | None = None
    judges: dict[str, Judge] | None = None
    floor: ProbeFloor | None = None


class ModelUnderTest(Generation):
    """One entry of ``evaluation.models_under_test``: its backend and what it sees; any
    ``generation`` key set here overrides the default for this model."""

    backend: ChatBackend | None = None
    enabled: bool | None = None
    timeline: Literal["asr_only", "full", "none"] | None = None
    video: Literal["auto", "native", "frames", "none"] | None = None
    video_native: VideoNative | None = None
    concurrency: PositiveInt | None = None


class Report(Block):
    """``evaluation.report``: the bootstrap intervals."""

    bootstrap: NonNegativeInt | None = None
    level: float | None = Field(default=None, gt=0, lt=1)
    seed: int | None = None


class Evaluation(Block):
    """``evaluation``."""

    protocol: Literal["official", "ours"] | None = None
    models: list[str] | None = None
    subset: Subset | None = None
    task_classifier: TaskClassifier | None = None
    frames_dir: str | None = None
    video_roots: list[str] | str | None = None
    progress: bool | None = None
    cache_failures: bool | None = None
    generation: Generation | None = None
    models_under_test: dict[str, ModelUnderTest | None] | None = None
    judge_prompt_path: str | None = None
    official_judge_prompt_path: str | None = None
    judge: Judge | None = None
    judge_probes: JudgeProbes | None = None
    report: Report | None = None


__all__ = ["Evaluation"]
