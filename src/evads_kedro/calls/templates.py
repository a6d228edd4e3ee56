"""Prompt templates of the evaluation pipeline (files under ``conf/base/prompts/evaluation/``).

A template is plain text with ``{name}`` placeholders. Only the names a caller passes are
replaced (with a regex, not ``str.format``), so literal braces in a template or in a filled
value (timelines, JSON snippets) are safe. One trailing newline of the file is dropped, so an
editor's final newline does not end up in the prompt.

Placeholders:
* answer templates: ``{video_token}``, ``{timeline}``, ``{question}``;
* judge templates: ``{question}``, ``{metadata}``, ``{clues}``, ``{reference_answer}``,
  ``{model_output}`` (the official judge prompt uses exactly these).
"""

from __future__ import annotations

import re
from pathlib import Path

from evads_kedro.paths import project_root

JUDGE_FIELDS = ("question", "metadata", "clues", "reference_answer", "model_output")
ANSWER_FIELDS = ("timeline", "question")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(ValueError):
    """A template file that is missing or lacks a required placeholder."""


def resolve_path(path: str | Path) -> Path:
    """Absolute path; relative paths are relative to the project root (not the cwd)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def load_template(path: str | Path, required: tuple[str, ...] = ()) -> str:
    """Read a template file; check it has every ``required`` placeholder."""
    p = resolve_path(path)
    if not p.is_file():
        raise TemplateError(f"prompt template {p} not found; check the *_path parameter")
    text = p.read_text(encoding="utf-8")
    if text.endswith("\n"):
        text = text[:-1]
    missing = [f for f in required if "{" + f + "}" not in text]
    if missing:
        raise TemplateError(f"template {p} lacks placeholder(s) {missing}")
    return text


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def render(template: str, **fields: object) -> str:
    """Replace ``{name}`` for each given field; other braces are left untouched."""

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name in fields:
            value = fields[name]
            return "" if value is None else str(value)
        return m.group(0)

    return _PLACEHOLDER.sub(sub, template)
