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

    temperature: NonNegativeFloat
    seed: int | None
    max_tokens: PositiveInt


class Persona(Block):
    """One entry of ``qa_generation.personas``."""

    tasks: list[Task]


class Captions(ChatBackend):
    """``qa_generation.captions``: a chat backend (or ``backend: none``) plus caption keys."""

    backend: Literal["none", "openai", "local"] | None = None  # type: ignore[assignment]
    max_keyframes: PositiveInt
    scene_threshold: NonNegativeFloat
    prompt_file: str
    max_tokens: PositiveInt
    temperature: NonNegativeFloat
    seed: int | None = None

    @model_validator(mode="after")
    def _local_names_a_model(self) -> Captions:
        return self if self.backend == "none" else ChatBackend._local_names_a_model(self)


class Verifier(Block):
    """``qa_generation.verifier``: the deterministic quote check."""

    min_quotes: NonNegativeInt
    quote_window_s: NonNegativeInt
    max_answer_units: PositiveInt


class BlindCheck(Block):
    """``qa_generation.blind_check``: reject items answerable without the video."""

    enabled: bool
    threshold: float = Field(ge=0, le=1)
    llm: ChatBackend | None
    prompt_file: str
    decoding: Decoding
    judge_prompt_path: str
    judge: Judge
    on_error: OnError


class Critic(Block):
    """``qa_generation.critic``: the optional LLM critic."""

    enabled: bool
    llm: ChatBackend | None
    on_error: OnError
    decoding: Decoding


class Dedup(Block):
    """``qa_generation.dedup``: near-duplicate questions."""

    method: Literal["minhash", "embedding", "both"]
    embedding_threshold: float = Field(ge=0, le=1)
    embedding_model: str | None
    ngram: PositiveInt
    num_perm: PositiveInt
    threshold: float = Field(ge=0, le=1)
    scope: Literal["video", "global"]
    seed: int


class Balance(Block):
    """``qa_generation.balance``: items kept per task."""

    tasks: list[Task]
    per_task: PositiveInt


class Export(Block):
    """``qa_generation.export``: the released SFT / RL layouts."""

    data_source: str
    instruction: str | None
    both_splits: bool
    rl_fraction: float = Field(ge=0, le=1)


class QaGeneration(Block):
    """``qa_generation``."""

    llm: ChatBackend
    decoding: Decoding
    prefill: str | None
    concurrency: PositiveInt
    use_cache: bool
    video_ids: list[str] | None
    max_videos: PositiveInt | None
    items_per_agent: PositiveInt
    calls_per_agent: PositiveInt
    max_answer_units: PositiveInt
    prompt_dir: str
    personas: dict[str, Persona]
    captions: Captions
    verifier: Verifier
    blind_check: BlindCheck
    critic: Critic
    dedup: Dedup
    balance: Balance
    export: Export
