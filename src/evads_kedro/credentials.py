"""API keys for LLM endpoints: from environment variables or ``conf/local/credentials.yml``,
never from parameters.

Backends read their key from the environment variable named by ``api_key_env`` (default
``OPENAI_API_KEY``). :class:`CredentialsEnvHook` fills those variables from the git-ignored
credentials file at the start of a run::

    # conf/local/credentials.yml
    llm_api_keys:
      OPENAI_API_KEY: sk-...
      JUDGE_API_KEY: sk-...        # then judge.backend.api_key_env: JUDGE_API_KEY

A variable already set in the environment wins (a CI secret overrides a developer's file).

Parameters are logged to MLflow by kedro-mlflow, so a literal ``api_key`` in any parameter
file would end up in the tracking store in clear text: the hook refuses such a run before
anything is logged, with the fix in the message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

CREDENTIALS_SECTION = "llm_api_keys"


class SecretInParametersError(ValueError):
    """A parameter file carries an API key (it would be logged to MLflow)."""


def _api_key_params(value: Any, path: str = "") -> Iterator[str]:
    """Dotted names of non-empty ``api_key`` entries anywhere in ``value``."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            if str(k).lower() == "api_key" and v not in (None, ""):
                yield where
            else:
                yield from _api_key_params(v, where)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _api_key_params(v, f"{path}[{i}]")


def export_api_keys(credentials: Mapping[str, Any], environ: dict[str, str] | None = None
                    ) -> list[str]:
    """Set the variables of ``credentials[llm_api_keys]`` that the environment lacks; returns
    the names set (never the values)."""
    environ = os.environ if environ is None else environ
    section = credentials.get(CREDENTIALS_SECTION) or {}
    if not isinstance(section, Mapping):
        raise ValueError(f"credentials '{CREDENTIALS_SECTION}' must map variable names to keys, "
                         f"e.g. {{OPENAI_API_KEY: sk-...}}; got {type(section).__name__}")
    exported = []
    for name, value in section.items():
        if value in (None, "") or environ.get(str(name)):
            continue
        environ[str(name)] = str(value)
        exported.append(str(name))
    return exported


class CredentialsEnvHook:
    """Exports ``llm_api_keys`` from the credentials config; refuses keys in parameters."""

    @hook_impl
    def after_context_created(self, context) -> None:
        leaked = sorted(_api_key_params(context.params))
        if leaked:
            raise SecretInParametersError(
                f"parameter(s) {', '.join(leaked)} hold an API key; parameters are logged to "
                "MLflow. Remove it and put the key in conf/local/credentials.yml under "
                f"{CREDENTIALS_SECTION}: {{OPENAI_API_KEY: ...}} (or export the variable named "
                "by api_key_env)")
        try:
            credentials = context.config_loader["credentials"]
        except Exception:  # noqa: BLE001 - no credentials file is the normal case
            credentials = {}
        names = export_api_keys(credentials or {})
        if names:
            logger.info("API keys for %s taken from the credentials config", ", ".join(names))
