"""``qa_generation`` (conf/base/parameters_qa_generation.yml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, model_validator

from evads_kedro.params.base import Block
from evads_kedro.params.chat import ChatBackend
from evads_kedro.params.judge import Judge

Task = Literal["BP", "CM", "ML", "CI", "RC"]
OnError = Literal["keep", "reject"]


class Decoding(Block):
    """A ``decoding`` block: sampling of one kind of call."""

    temperature: NonNegativeFloat | None = None
    seed: int | None = None
    max_tokens: PositiveInt | None = None


class Persona(Block):
    """One entry of ``qa_generation.personas``."""

    tasks: list[Task] | None = None


class Captions(ChatBackend):
    """``qa_generation.captions``: a chat backend (or ``backend: none``) plus caption keys."""

    backend: Literal["none", "openai", "local"] | None = None  # type: ignore[assignment]
    max_keyframes: PositiveInt | None = None
    scene_threshold: NonNegativeFloat | None = None
    prompt_file: str | None = None
    max_tokens: PositiveInt | None = None
    temperature: NonNegativeFloat | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _local_names_a_model(self) -> Captions:
        return self if self.backend == "none" else ChatBackend._local_names_a_model(self)


class Verifier(Block):
    """``qa_generation.verifier``: the deterministic quote check."""

    min_quotes: NonNegativeInt | None = None
    quote_window_s: NonNegativeInt | None = None
    max_answer_units: PositiveInt | None = None


class BlindCheck(Block):
    """``qa_generation.blind_check``: reject items answerable without the video."""

    enabled: bool | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    llm: ChatBackend | None = None
    prompt_file: str | None = None
    decoding: Decoding | None = None
    judge_prompt_path: str | None = None
    judge: Judge | None = None
    on_error: OnError | None = None


class Critic(Block):
    """``qa_generation.critic``: the optional LLM critic."""

    enabled: bool | None = None
    llm: ChatBackend | None = None
    on_error: OnError | None = None
    decoding: Decoding | None = None


class Dedup(Block):
    """``qa_generation.dedup``: near-duplicate questions."""

    method: Literal["minhash", "embedding", "both"] | None = None
    embedding_threshold: float | None = Field(default=None, ge=0, le=1)
    embedding_model: str | None = None
    ngram: PositiveInt | None = None
    num_perm: PositiveInt | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    scope: Literal["video", "global"] | None = None
    seed: int | None = None


class Balance(Block):
    """``qa_generation.balance``: items kept per task."""

    tasks: list[Task] | None = None
    per_task: PositiveInt | None = None


class Export(Block):
    """``qa_generation.export``: the released SFT / RL layouts."""

    data_source: str | None = None
    instruction: str | None = None
    both_splits: bool | None = None
    rl_fraction: float | None = Field(default=None, ge=0, le=1)


class QaGeneration(Block):
    """``qa_generation``."""

    llm: ChatBackend | None = None
    decoding: Decoding | None = None
    prefill: str | None = None
    structured: Literal["auto"] | bool | None = None
    concurrency: PositiveInt | None = None
    use_cache: bool | None = None
    video_ids: list[str] | None = None
    max_videos: PositiveInt | None = None
    items_per_agent: PositiveInt | None = None
    calls_per_agent: PositiveInt | None = None
    max_answer_units: PositiveInt | None = None
    prompt_dir: str | None = None
    personas: dict[str, Persona] | None = None
    captions: Captions | None = None
    verifier: Verifier | None = None
    blind_check: BlindCheck | None = None
    critic: Critic | None = None
    dedup: Dedup | None = None
    balance: Balance | None = None
    export: Export | None = None
