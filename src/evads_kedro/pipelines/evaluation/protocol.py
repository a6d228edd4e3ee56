"""The evaluation protocols (issue 17 item 3): ``official`` (the default) and ``ours``.

``official`` reproduces the official E-VAds evaluation script: the model under test gets
``{asr_input}\\n\\nBy watching the video, you are required to answer a question within 50
words: Question: {question}`` (``conf/base/prompts/evaluation/answer_official.txt``), is
sampled at temperature 1 with up to 1,524 new tokens (we add a seed), and a VLM endpoint gets
the video natively; the judge gets the release's judge prompt (``official_judge_prompt.txt``,
read in place from the release folder: ``evaluation.official_judge_prompt_path``, never copied)
with ``metadata = asr_ocr_meta``, ``clues = evidence``, ``reference_answer = answer`` and the
model output cut to the text between ``<answer>`` and ``</answer>`` when both tags are present,
at temperature 0 / seed 42. ``ours`` keeps the project's own prompts (the released RL layout).

Explicit parameters always win: ``generation.prompt_path``, ``generation.max_tokens``,
``judge_prompt_path`` or a model's ``video`` set to a value other than null/``auto`` override the
protocol's default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROTOCOLS: dict[str, dict[str, Any]] = {
    "official": {
        "answer_prompt_path": "conf/base/prompts/evaluation/answer_official.txt",
        "judge_prompt_path": None,  # evaluation.official_judge_prompt_path (the release's file)
        "temperature": 1.0,
        "max_tokens": 1524,
        "endpoint_video": "native",
    },
    "ours": {
        "answer_prompt_path": "conf/base/prompts/evaluation/answer.txt",
        "judge_prompt_path": "conf/base/prompts/evaluation/judge.txt",
        "temperature": 1.0,
        "max_tokens": 512,
        "endpoint_video": "frames",
    },
}


def protocol_name(params: Mapping[str, Any]) -> str:
    name = params.get("protocol") or "official"
    if name not in PROTOCOLS:
        raise ValueError(f"evaluation.protocol {name!r} is unknown; use 'official' (the "
                         "official E-VAds script's prompts) or 'ours'")
    return name


def protocol_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    return dict(PROTOCOLS[protocol_name(params)])


OFFICIAL_JUDGE_PROMPT = "official_judge_prompt.txt"


def judge_prompt_path(params: Mapping[str, Any]) -> str:
    """``judge_prompt_path`` if set, else the protocol's judge prompt: under ``official`` the
    release's own file (``official_judge_prompt_path``, in ``evads_data_dir`` by default), which
    this repository does not copy; a missing file is an error naming the fix."""
    explicit = params.get("judge_prompt_path") or (params.get("judge") or {}).get("prompt_path")
    if explicit:
        return str(explicit)
    default = protocol_defaults(params)["judge_prompt_path"]
    if default:
        return default
    path = params.get("official_judge_prompt_path")
    if not path or not Path(str(path)).is_file():
        raise FileNotFoundError(
            f"evaluation.protocol: official grades with the release's judge prompt, read in "
            f"place (never copied into this repo), but {path or OFFICIAL_JUDGE_PROMPT!s} is not "
            f"a file. Put {OFFICIAL_JUDGE_PROMPT} (the judge prompt of the official "
            "eval_qwen3vl_8b.py) in evads_data_dir, or set "
            "evaluation.official_judge_prompt_path / evaluation.judge_prompt_path, or use "
            "evaluation.protocol=ours")
    return str(path)


def with_judge_prompt(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with ``judge_prompt_path`` resolved (for :func:`calls.judge.judge_settings`)."""
    return {**params, "judge_prompt_path": judge_prompt_path(params)}


def video_mode(spec: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """A model's ``video``: ``none``, ``frames`` or ``native``; null/``auto`` = the protocol's
    choice for an endpoint (native under ``official``), ``none`` for a local text backend."""
    mode = spec.get("video")
    if mode in (None, "auto"):
        backend = (spec.get("backend") or {}).get("backend", "openai")
        return protocol_defaults(params)["endpoint_video"] if backend == "openai" else "none"
    if mode not in ("none", "frames", "native"):
        raise ValueError(f"video must be none, frames, native or auto, got {mode!r}")
    return mode


_ANSWER_SPAN = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def judged_text(output: str | None) -> str:
    """The part of a model output the judge sees: the text between ``<answer>`` and
    ``</answer>`` (the first such pair, stripped) when both tags are present, else the whole
    output stripped."""
    text = output or ""
    m = _ANSWER_SPAN.search(text)
    return m.group(1).strip() if m else text.strip()
