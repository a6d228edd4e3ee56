"""Turn pydantic's errors into one message per problem: full dotted key path, what is wrong."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ParameterError(ValueError):
    """Bad parameters: each line names a full key path (``evaluation.judge.backend.x``)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid parameters (conf/*/parameters*.yml or --params):\n  "
                         + "\n  ".join(problems))


def _path(prefix: str, loc: tuple[Any, ...]) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in loc if not str(p).startswith(("function-", "tagged-union"))]
    return ".".join(parts) or "<top level>"


def problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """``path: message`` lines for every error of ``exc`` (an unknown key's path ends in it)."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "unknown_key":
            ctx = err.get("ctx") or {}
            line = f"{_path(prefix, (*loc, ctx.get('key')))}: {err['msg']}"
        else:
            shown = err.get("input")
            got = "" if isinstance(shown, dict | list) else f" (got {shown!r})"
            line = f"{_path(prefix, loc)}: {err['msg']}{got}"
        out.append(line)
    return out


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    """``model`` validated from ``data``, or :class:`ParameterError` with readable lines."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ParameterError(problems(exc, prefix)) from None
