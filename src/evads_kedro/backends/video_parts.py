"""A whole video as one OpenAI-compatible ``video_url`` content part (issue 17 item 4).

vLLM and SGLang accept ``{"type": "video_url", "video_url": {"url": ...}}`` for Qwen2.5-VL /
Qwen3-VL; the file travels as a ``data:video/<ext>;base64,`` URL so the server needs no access
to our disk. The sampling of the video (``fps``, ``max_frames``, ``max_pixels``, mirroring the
official ``max_frames: 768, total_pixels: 24576*28*28``) is the server's processor's job: the
values are sent as ``mm_processor_kwargs`` in the request body (vLLM's per-request override).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MIME = {".mp4": "video/mp4", ".avi": "video/x-msvideo", ".mov": "video/quicktime",
        ".mkv": "video/x-matroska", ".webm": "video/webm"}
# the official script's Qwen-VL video settings
DEFAULT_VIDEO = {"fps": 2.0, "max_frames": 768, "max_pixels": 768 * 28 * 28,
                 "total_pixels": 24576 * 28 * 28}


def video_url_part(path: str | Path) -> dict[str, Any]:
    """The ``video_url`` content part carrying the file at ``path`` as a data URL."""
    p = Path(path)
    mime = MIME.get(p.suffix.lower(), "video/mp4")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{data}"}}


def video_identity(path: str | Path) -> dict[str, Any]:
    """What identifies the sent video in a cache key: file name and content hash."""
    p = Path(path)
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"name": p.name, "sha256": h.hexdigest()}


def with_video(messages: list[dict[str, Any]], part: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Copy of ``messages`` whose last user turn becomes ``[video part, text]``."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "user":
            content = m.get("content")
            text = [{"type": "text", "text": content}] if isinstance(content, str) else list(
                content or [])
            m["content"] = [dict(part), *text]
            return out
    raise ValueError("a video part needs a user message to attach to")


def processor_kwargs(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``mm_processor_kwargs`` for the request body from a model's ``video_native`` settings
    (keys ``fps``, ``max_frames``, ``max_pixels``, ``total_pixels``; null drops a key)."""
    merged = {**DEFAULT_VIDEO, **dict(settings or {})}
    return {k: v for k, v in merged.items() if v is not None}
