"""Hugging Face model loading that is safe from threads: one process-wide lock per load.

``load_model(cls, *args, **kwargs)`` is ``cls.from_pretrained(*args, **kwargs)`` (any class with
a ``from_pretrained``: transformers Auto classes, ``SentenceTransformer`` through
``build_locked``) under :data:`LOAD_LOCK`, followed by a check that weight tying still works.

Why: transformers 5 loads with tying switched off by swapping ``PreTrainedModel.tie_weights``
for a no-op *on the class* and putting back what it found (``initialization.no_tie_weights``).
Two loads in two threads interleave the swap: the second saves the first's no-op and restores it
last, and from then on every model loaded in the process leaves its tied weights (SmolLM2's
``lm_head``) on the meta device: "Cannot copy out of meta tensor". Our backends load lazily in
worker threads (a judge and an answerer, the QA de-duplicator), so every load goes through here.
A process already broken by someone else's unlocked load is repaired, with a warning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: held for the whole of every model load in this process (re-entrant: a load may load a part)
LOAD_LOCK = threading.RLock()

_TIE_WEIGHTS: Callable[..., Any] | None = None


def _remember_tie_weights() -> None:
    global _TIE_WEIGHTS
    if _TIE_WEIGHTS is None:
        from transformers import PreTrainedModel

        tie = PreTrainedModel.tie_weights
        if tie.__qualname__ != "PreTrainedModel.tie_weights":
            raise RuntimeError(
                f"transformers' PreTrainedModel.tie_weights is {tie.__qualname__}: a model load in "
                "another thread, before evads_kedro loaded any, left weight tying disabled for "
                "this process; load models through evads_kedro.backends.hf_load.load_model")
        _TIE_WEIGHTS = tie


def repair_tie_weights() -> bool:
    """Put back ``PreTrainedModel.tie_weights`` if an unlocked concurrent load left the no-op on
    the class; True when it had to."""
    from transformers import PreTrainedModel

    if _TIE_WEIGHTS is None or PreTrainedModel.tie_weights is _TIE_WEIGHTS:
        return False
    logger.warning("transformers' PreTrainedModel.tie_weights was left disabled by a concurrent "
                   "model load outside evads_kedro.backends.hf_load; restored")
    PreTrainedModel.tie_weights = _TIE_WEIGHTS
    return True


def build_locked(build: Callable[[], T]) -> T:
    """``build()`` under :data:`LOAD_LOCK`, with weight tying checked before and after."""
    with LOAD_LOCK:
        _remember_tie_weights()
        repair_tie_weights()
        out = build()
        repair_tie_weights()
        return out


def load_model(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """``cls.from_pretrained(*args, **kwargs)``, one load at a time in this process."""
    return build_locked(lambda: cls.from_pretrained(*args, **kwargs))
