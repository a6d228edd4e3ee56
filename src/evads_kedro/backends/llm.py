"""The public face of the LLM backends: :func:`build_chat` builds one from a parameter dict.

Used by the evaluation pipeline (models under test and the judge), qa_generation and the GRPO
judge reward, so it knows nothing about E-VAds. The interface lives in
:mod:`.llm_base`, the OpenAI-compatible HTTP client in :mod:`.llm_http`, the local transformers
chat in :mod:`.llm_local`; they are re-exported here so callers import one module.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evads_kedro.backends.llm_base import (
    ChatBackend,
    ChatError,
    ChatReply,
    Message,
    encode_image,
    resolve_constrained,
)
from evads_kedro.backends.llm_http import (  # noqa: F401 - re-exported for tests
    _LIVE_STATES,
    OpenAICompatibleChat,
    TokenBucket,
    _release_all,
)
from evads_kedro.backends.llm_local import LocalTransformersChat
from evads_kedro.params.chat import ChatBackend as ChatBackendParams
from evads_kedro.params.chat import check_chat_backend

__all__ = [
    "ChatBackend",
    "ChatError",
    "ChatReply",
    "LocalTransformersChat",
    "Message",
    "OpenAICompatibleChat",
    "TokenBucket",
    "CHAT_KEYS",
    "build_chat",
    "clear_chat_cache",
    "encode_image",
    "resolve_constrained",
]

# ---------------------------------------------------------------------------------- factory
#: Every key ``build_chat`` accepts: the fields of :class:`evads_kedro.params.chat.ChatBackend`,
#: the same model the parameter hook validates ``...backend`` blocks with.
CHAT_KEYS: frozenset[str] = frozenset(ChatBackendParams.model_fields)
_CACHE: dict[str, ChatBackend] = {}
_CACHE_LOCK = threading.Lock()


def _resolve_model_dir(params: Mapping[str, Any]) -> Path:
    """``model_dir`` path, or ``asset: smollm2`` for the packaged SmolLM2 export."""
    if params.get("model_dir"):
        p = Path(str(params["model_dir"])).expanduser()
        if not p.is_absolute():
            from evads_kedro.paths import project_root

            p = project_root() / p
        return p
    asset = params.get("asset")
    if asset == "smollm2":
        from evads_kedro.assets import smollm2_hf_dir

        return smollm2_hf_dir()
    raise ValueError("local backend needs model_dir (a Hugging Face folder) or asset: smollm2")


def build_chat(params: Mapping[str, Any], where: str = "backend") -> ChatBackend:
    """Build (once per process per distinct ``params``) the backend described by ``params``.

    ``backend: openai`` → :class:`OpenAICompatibleChat` (``base_url``: one URL or a list,
    ``model``, optional ``api_key_env``/``api_key``, ``concurrency``, ``rate_limit_per_s``,
    ``timeout``, ``max_retries``, ``failover_after``, ``cooldown_s``, ...). ``base_url``/``model`` may be left empty and taken from the
    ``EVADS_LLM_BASE_URL`` / ``EVADS_LLM_MODEL`` environment variables.
    ``backend: local`` → :class:`LocalTransformersChat` (``model_dir`` or ``asset``,
    ``device``, ``precision``, ``vision``, ``adapter_dir``: LoRA folder(s), see
    :mod:`evads_kedro.backends.adapters`).

    The mapping is checked first against :data:`CHAT_KEYS` and their types
    (:func:`~evads_kedro.params.chat.check_chat_backend`): an unknown key raises
    :class:`~evads_kedro.params.errors.ParameterError` naming ``<where>.<key>`` and the closest
    valid key, so callers strip their own keys (decoding, captions) before calling.
    """
    params = dict(params)
    check_chat_backend(params, where)
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        kind = params.get("backend", "openai")
        if kind == "openai":
            base_url = params.get("base_url") or os.environ.get("EVADS_LLM_BASE_URL")
            model = params.get("model") or os.environ.get("EVADS_LLM_MODEL")
            if not base_url or not model:
                raise ValueError("openai backend needs base_url and model (parameters, or "
                                 "EVADS_LLM_BASE_URL / EVADS_LLM_MODEL)")
            backend: ChatBackend = OpenAICompatibleChat(
                base_url, model,
                api_key=params.get("api_key"),
                api_key_env=params.get("api_key_env", "OPENAI_API_KEY"),
                timeout=float(params.get("timeout", 120.0)),
                max_retries=int(params.get("max_retries", 5)),
                backoff_base=float(params.get("backoff_base", 0.5)),
                backoff_max=float(params.get("backoff_max", 30.0)),
                retry_after_max=float(params.get("retry_after_max", 300.0)),
                concurrency=int(params.get("concurrency", 8)),
                rate_limit_per_s=params.get("rate_limit_per_s"),
                rate_burst=params.get("rate_burst"),
                extra_body=params.get("extra_body"),
                model_id=params.get("model_id"),
                image_max_side=params.get("image_max_side"),
                send_seed=bool(params.get("send_seed", True)),
                failover_after=int(params.get("failover_after", 2)),
                cooldown_s=float(params.get("cooldown_s", 30.0)),
            )
        elif kind == "local":
            backend = LocalTransformersChat(
                _resolve_model_dir(params),
                device=params.get("device", "auto"),
                precision=params.get("precision", "auto"),
                vision=params.get("vision", "auto"),
                model_id=params.get("model_id"),
                num_threads=params.get("num_threads"),
                image_max_side=params.get("image_max_side", 448),
                adapter_dir=params.get("adapter_dir"),
            )
        else:
            raise ValueError(f"unknown chat backend {kind!r}; use openai or local")
        _CACHE[key] = backend
        return backend


def clear_chat_cache() -> None:
    """Forget the per-process backends (tests; after changing environment variables)."""
    with _CACHE_LOCK:
        _CACHE.clear()
