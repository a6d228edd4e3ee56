"""The judge block (calls.judge.judge_settings), used by evaluation, qa_generation's blind
check and rl_training's reward."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.chat import ChatBackend

Constrained = bool | Literal["auto"]


class Judge(Block):
    """``<pipeline>.judge``: backend, decoding and retries of the SPEC §6 judge."""

    backend: ChatBackend | None = None
    temperature: NonNegativeFloat | None = None
    seed: int | None = None
    max_tokens: PositiveInt | None = None
    invalid_retries: NonNegativeInt | None = None
    smoke_test: bool | None = None
    constrained: Constrained | None = None
    concurrency: PositiveInt | None = None
    prompt_path: str | None = None
