"""The chat interface every LLM backend implements: ChatBackend, ChatReply, ChatError, images.

:class:`ChatBackend` — ``await backend.chat(messages, temperature=, seed=, max_tokens=,
images=None) -> ChatReply(text, raw, usage, latency)``; a failure raises :class:`ChatError`
with a short ``reason`` (``timeout``, ``http_429``, ``http_500``, ``bad_json``, ...).
``await backend.choose(messages, options)`` picks one of fixed options (constrained
decoding) on backends that can. :func:`encode_image` turns any image into JPEG bytes for the
backends that take images.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Message = dict[str, Any]

# ------------------------------------------------------------------------------------ types
@dataclass
class ChatReply:
    """One finished chat call: the reply text, the raw response, token usage, wall time (s)."""

    text: str
    raw: Any = None
    usage: dict[str, Any] = field(default_factory=dict)
    latency: float = 0.0
    attempts: int = 1


class ChatError(RuntimeError):
    """A chat call that failed for good (after retries when the failure was retryable)."""

    def __init__(self, reason: str, message: str = "", *, retryable: bool = False,
                 status: int | None = None, retry_after: float | None = None,
                 attempts: int = 1):
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts
        super().__init__(f"{reason}: {message}" if message else reason)


class ChatBackend(ABC):
    """Async chat interface. ``model_id`` names the model in cache keys and reports."""

    model_id: str = "unknown"
    supports_images: bool = False

    supports_json_schema: bool = False

    @abstractmethod
    async def chat(self, messages: Sequence[Message], *, temperature: float = 1.0,
                   seed: int | None = None, max_tokens: int = 512,
                   images: Sequence[Any] | None = None,
                   json_schema: Mapping[str, Any] | None = None) -> ChatReply:
        """Answer ``messages`` (OpenAI format). ``images`` are attached to the last user turn.
        ``json_schema`` (backends with ``supports_json_schema``) constrains the reply to JSON
        of that schema."""

    async def aclose(self) -> None:  # pragma: no cover - trivial default
        return None

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "class": type(self).__name__}

    supports_choice: bool = False

    async def choose(self, messages: Sequence[Message], options: Sequence[str]) -> ChatReply:
        """Constrained decoding: the reply is the option the model finds most likely
        (``raw["choice_logprobs"]`` has each option's log-probability). Backends without it
        raise :class:`ChatError` ``no_choice``."""
        raise ChatError("no_choice", f"{type(self).__name__} cannot score fixed options")


def resolve_constrained(backend: ChatBackend, setting: Any, name: str) -> tuple[bool, str]:
    """(use constrained decoding?, model id for cache keys) for a ``constrained`` parameter
    ``auto`` (local text models; endpoints only with ``true``, through structured outputs) /
    true / false. A constrained model is
    another model: its id gets ``+choice`` so its cached replies never mix with free ones."""
    on = getattr(backend, "choose_by_default", backend.supports_choice) if setting == "auto" \
        else bool(setting)
    if on and not backend.supports_choice:
        raise ValueError(f"{name} is true but {backend!r} cannot score fixed options; use "
                         f"{name}: auto/false (or a local text model)")
    return on, backend.model_id + ("+choice" if on else "")


# ----------------------------------------------------------------------------------- images
def encode_image(image: Any, *, max_side: int | None = None, quality: int = 85) -> bytes:
    """JPEG bytes of an image given as RGB ndarray, PIL image, JPEG/PNG bytes or a file path.

    ``max_side`` downsizes (aspect kept) so the longer side is at most that many pixels."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray)) and max_side is None and bytes(image[:2]) == b"\xff\xd8":
        return bytes(image)
    if isinstance(image, (bytes, bytearray)):
        img = Image.open(io.BytesIO(image))
    elif isinstance(image, (str, Path)):
        img = Image.open(image)
    elif hasattr(image, "shape"):  # numpy array
        img = Image.fromarray(image)
    else:
        img = image
    img = img.convert("RGB")
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


