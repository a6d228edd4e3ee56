"""The base of every parameter block: frozen, unknown keys rejected with the closest valid key.

Defaults live in the YAML (conf/base), never here: every field is ``X | None = None``, where
None means "absent" (the YAML's value, or the code's fallback, applies). A block checks the keys
it is given and their types, not that all are present: Kedro replaces a whole top-level block
per environment (conf/local, conf/smoke restate only what they need), so a missing key is not an
error. One class per YAML block: a new key is one new line in one class.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError


def closest(key: str, valid: list[str]) -> str | None:
    """The valid key nearest to ``key`` (a typo), or None when nothing is close."""
    found = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return found[0] if found else None


class Block(BaseModel):
    """A parameter block: frozen, extra keys are an error that names the closest valid key."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls._checks_keys(data):
            valid = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    near = closest(str(key), valid)
                    hint = f"did you mean {near!r}?" if near else f"valid keys: {', '.join(valid)}"
                    raise PydanticCustomError(
                        "unknown_key", "unknown key; {hint}",
                        {"key": str(key), "hint": hint, "closest": near})
        return data

    @classmethod
    def _checks_keys(cls, data: dict) -> bool:
        return True


class PluginBlock(Block):
    """A backend block whose ``backend`` may be ``package.module:ClassName``: then the other
    keys are that class's constructor arguments, unknown to us, and pass unchecked."""

    model_config = ConfigDict(frozen=True, extra="allow", protected_namespaces=())

    @classmethod
    def _checks_keys(cls, data: dict) -> bool:
        return ":" not in str(data.get("backend") or "")
