"""Keyframe captions: scene-change frame selection and one small captioning interface.

* :func:`select_keyframes` picks scene-change frames of a :class:`~evads_kedro.frames.FrameStack`
  with a cheap colour-histogram distance (total variation between consecutive frames' 8×8×8 RGB
  histograms, in [0, 1]); the first frame always opens a scene.
* :class:`Captioner` is the interface: ``model_id`` + ``await caption(image, prompt) -> str``.
  :class:`ChatCaptioner` implements it over any :class:`~evads_kedro.backends.llm.ChatBackend`
  that takes images: an OpenAI-compatible vision endpoint (images go as base64 JPEG
  ``image_url`` content parts) or a local transformers image-text-to-text model folder.
* :func:`build_captioner` reads ``{backend: none|openai|local, ...}``; ``none`` gives None.
* :func:`frame_hash` is the content hash used in the caption cache key (model, prompt, frame).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from evads_kedro.frames import FrameStack
from evads_kedro.params.chat import ChatBackend as ChatBackendParams
from evads_kedro.params.errors import validate
from evads_kedro.params.qa_generation import Captions as CaptionsParams

#: The captions block's own keys (keyframe selection, prompt, decoding): stripped before the
#: rest of the block reaches ``build_chat``, which rejects keys it does not know.
CAPTION_KEYS: frozenset[str] = (frozenset(CaptionsParams.model_fields)
                                - frozenset(ChatBackendParams.model_fields))


@dataclass(frozen=True)
class Keyframe:
    index: int        # position in the FrameStack
    second: int       # whole second shown in the timeline
    score: float      # histogram distance to the previous frame (1.0 for the first frame)


def _histogram(frame: np.ndarray, bins: int = 8) -> np.ndarray:
    small = frame[::4, ::4].reshape(-1, 3).astype(np.int32) * bins // 256
    codes = (small[:, 0] * bins + small[:, 1]) * bins + small[:, 2]
    h = np.bincount(codes, minlength=bins ** 3).astype(np.float64)
    return h / max(1.0, h.sum())


def scene_scores(stack: FrameStack) -> list[float]:
    """Histogram distance of each frame to the previous one (first frame: 1.0)."""
    hists = [_histogram(f) for f in stack.frames]
    return [1.0] + [0.5 * float(np.abs(b - a).sum()) for a, b in zip(hists, hists[1:], strict=False)]


def select_keyframes(stack: FrameStack, max_keyframes: int, threshold: float = 0.3
                     ) -> list[Keyframe]:
    """Scene-change frames in time order: the first frame plus every frame whose histogram
    distance to its predecessor is ``>= threshold``; when more than ``max_keyframes`` qualify,
    the largest changes win (the first frame is always kept)."""
    if not len(stack) or max_keyframes <= 0:
        return []
    scores = scene_scores(stack)
    seconds = stack.seconds
    picked = [i for i, s in enumerate(scores) if i == 0 or s >= threshold]
    picked = sorted(picked, key=lambda i: (i != 0, -scores[i], i))[:max_keyframes]
    return [Keyframe(i, seconds[i], round(scores[i], 4)) for i in sorted(picked)]


def frame_hash(frame: np.ndarray) -> str:
    h = hashlib.sha256(str(frame.shape).encode())
    h.update(np.ascontiguousarray(frame).tobytes())
    return h.hexdigest()[:32]


class Captioner(Protocol):
    model_id: str

    async def caption(self, image: np.ndarray, prompt: str) -> str: ...

    async def aclose(self) -> None: ...


class ChatCaptioner:
    """A vision chat backend used as a captioner: one user turn (the prompt) + one image."""

    def __init__(self, backend, *, max_tokens: int = 64, temperature: float = 0.0,
                 seed: int | None = 0):
        self.backend = backend
        self.model_id = backend.model_id
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.seed = seed

    async def caption(self, image: np.ndarray, prompt: str) -> str:
        reply = await self.backend.chat([{"role": "user", "content": prompt}],
                                        temperature=self.temperature, seed=self.seed,
                                        max_tokens=self.max_tokens, images=[image])
        return " ".join(reply.text.split())

    async def aclose(self) -> None:
        await self.backend.aclose()


def build_captioner(params: Mapping[str, Any] | None,
                    where: str = "qa_generation.captions") -> ChatCaptioner | None:
    """``{backend: none}`` (or no params) → None; ``openai`` / ``local`` → :class:`ChatCaptioner`
    over :func:`~evads_kedro.backends.llm.build_chat` (a local folder must be an
    image-text-to-text model; ``vision`` is forced on)."""
    p = dict(params or {})
    validate(CaptionsParams, p, where)  # a typo of a caption key names its closest one
    kind = str(p.get("backend") or "none").lower()
    if kind == "none":
        return None
    from evads_kedro.backends.llm import build_chat

    chat_params = {k: v for k, v in p.items() if k not in CAPTION_KEYS}
    if kind == "local":
        chat_params["vision"] = True
    return ChatCaptioner(build_chat(chat_params, where), max_tokens=int(p.get("max_tokens", 64)),
                         temperature=float(p.get("temperature", 0.0)), seed=p.get("seed", 0))
