"""The chat backend block (``backend: openai`` or ``local``), as ``build_chat`` reads it.

One class for both kinds, so a typo anywhere names the closest key of either. A key of the
other kind is allowed and ignored, as ``build_chat`` does: ``--params "...backend.backend=openai,
...base_url=..."`` over a local block (the README's judge override) keeps the block's ``asset``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, model_validator
from pydantic_core import PydanticCustomError

from evads_kedro.params.base import Block


class ChatBackend(Block):
    """``...backend`` / ``qa_generation.llm``: the keys ``backends.llm.build_chat`` reads.

    Absent keys take build_chat's fallbacks (openai is the default kind)."""

    backend: Literal["openai", "local"] | None = None
    model_id: str | None = None
    image_max_side: PositiveInt | None = None
    # calls in flight: the transport's cap (openai); callers read it as their default too
    concurrency: PositiveInt | None = None
    # openai
    base_url: str | list[str] | None = None
    model: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    rate_limit_per_s: PositiveFloat | None = None
    rate_burst: PositiveInt | None = None
    timeout: PositiveFloat | None = None
    max_retries: NonNegativeInt | None = None
    backoff_base: PositiveFloat | None = None
    backoff_max: PositiveFloat | None = None
    retry_after_max: PositiveFloat | None = None
    extra_body: dict[str, Any] | None = None
    send_seed: bool | None = None
    failover_after: PositiveInt | None = None
    cooldown_s: float | None = None
    # local
    asset: str | None = None
    model_dir: str | None = None
    device: str | None = None
    precision: Literal["auto", "fp32", "fp16", "bf16"] | None = None
    vision: bool | Literal["auto"] | None = None
    num_threads: PositiveInt | None = None
    # LoRA folder(s) merged in order (rl_compare fills it per variant)
    adapter_dir: str | list[str] | None = None

    @model_validator(mode="after")
    def _local_names_a_model(self) -> ChatBackend:
        if self.backend == "local" and not (self.asset or self.model_dir):
            raise PydanticCustomError("missing_model", "backend: local needs asset or model_dir",
                                      {})
        return self


def check_chat_backend(params: Mapping[str, Any], where: str = "backend") -> ChatBackend:
    """Validate one backend mapping (``build_chat`` calls it first); raises
    :class:`~evads_kedro.params.errors.ParameterError` naming ``where.<key>``."""
    from evads_kedro.params.errors import validate

    return validate(ChatBackend, dict(params), where)
