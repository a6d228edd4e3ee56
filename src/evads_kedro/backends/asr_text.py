"""Recognised speech as text: timed words, text per second, and the text guards against
Whisper's failure modes (repetition loops, prompt echo, traditional -> simplified).

``AsrWord`` / ``AsrResult`` (with :meth:`AsrResult.per_second`), :func:`split_units`,
:func:`is_repetition_loop`, :func:`remove_prompt_echo`. The backends live in
``evads_kedro.backends.asr``, audio decoding and energy / VAD in ``evads_kedro.backends.asr_audio``.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

import numpy as np

from evads_kedro.units import is_cjk

__all__ = ["AsrResult", "AsrWord", "is_repetition_loop", "remove_prompt_echo", "split_units"]

# Punctuation, symbols and spaces: not spoken content (the released ASR lines carry almost none).
_PUNCT_CATEGORIES = ("P", "S", "Z", "C")


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in _PUNCT_CATEGORIES


def _is_latin_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


# ------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class AsrWord:
    """One recognised word (Latin) or token / character cluster (CJK), times in seconds."""

    start: float
    end: float
    text: str


def split_units(word: AsrWord) -> list[AsrWord]:
    """Split a word into timed pieces: each CJK character alone, each run of other characters
    (Latin letters, digits, attached punctuation) whole; the word's time span is shared out in
    proportion to the pieces' lengths in characters."""
    text = word.text.strip()
    pieces: list[str] = []
    buf = ""
    for ch in text:
        if is_cjk(ch):
            if buf:
                pieces.append(buf)
                buf = ""
            pieces.append(ch)
        else:
            buf += ch
    if buf:
        pieces.append(buf)
    if len(pieces) <= 1:
        return [AsrWord(word.start, word.end, text)] if text else []
    total = sum(len(p) for p in pieces)
    span = max(0.0, word.end - word.start)
    out, pos = [], 0
    for p in pieces:
        s = word.start + span * pos / total
        pos += len(p)
        out.append(AsrWord(s, word.start + span * pos / total, p))
    return out


def _strip_punct(text: str) -> str:
    return "".join(ch for ch in text if not _is_punct(ch))


def _join(pieces: Iterable[str]) -> str:
    """Concatenate stripped pieces with no separator, except one space between two Latin words:
    the last non-punctuation character before the boundary and the first one after it are both
    ASCII letters/digits, and not two digits touching (``Nara V``, ``iPhone 15``, ``clean. It``,
    but ``30`` from ``3`` + ``0``, ``HF就``, ``面料``)."""
    out = ""
    for p in pieces:
        p = p.strip()
        if not p:
            continue
        if out:
            a_core = out.rstrip("".join(ch for ch in out[-4:] if _is_punct(ch)))
            b_core = p.lstrip("".join(ch for ch in p[:4] if _is_punct(ch)))
            a, b = a_core[-1:], b_core[:1]
            touching = a_core == out and b_core == p
            if (a and b and _is_latin_alnum(a) and _is_latin_alnum(b)
                    and not (touching and a.isdigit() and b.isdigit())):
                out += " "
        out += p
    return out


@dataclass
class AsrResult:
    """Words of one clip in time order, the decoding language, the full text and run metadata
    (backend, timings, dropped segments and why)."""

    words: list[AsrWord] = field(default_factory=list)
    language: str | None = None
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.words

    def per_second(self, duration_s: float, *, keep_punctuation: bool = False) -> dict[int, str]:
        """Text per whole second ``{second: text}``, seconds with no speech absent.

        Rule: every word is first split into units (:func:`split_units`: one CJK character each,
        Latin/digit runs whole) with its time span shared out by length, as the released E-VAds
        timelines are timed per character (a word may straddle two seconds: ``面|料``). Each unit
        goes to the second containing its temporal midpoint, ``floor((start + end) / 2)``,
        clamped to ``[0, ceil(duration_s) - 1]``. Units of one second are concatenated in time
        order with :func:`_join` (no space between CJK characters, one between Latin words).
        Punctuation is removed unless ``keep_punctuation`` (the released lines carry almost
        none).
        """
        last = max(0, int(np.ceil(duration_s)) - 1) if duration_s > 0 else 0
        buckets: dict[int, list[str]] = {}
        for w in self.words:
            for u in split_units(w):
                text = u.text if keep_punctuation else _strip_punct(u.text)
                if not text:
                    continue
                sec = min(last, max(0, int(np.floor((u.start + u.end) / 2.0))))
                buckets.setdefault(sec, []).append(text)
        return {s: _join(buckets[s]) for s in sorted(buckets)}


def _units(text: str) -> list[str]:
    """Content units for loop detection: CJK characters and lower-cased Latin/digit runs."""
    return re.findall(r"[a-z0-9']+|[^\W\d_a-z]", text.lower())


def is_repetition_loop(text: str, max_repeats: int = 4, max_n: int = 10) -> bool:
    """True if some n-gram of units (n <= ``max_n``) repeats more than ``max_repeats`` times in a
    row anywhere in ``text`` (``谢谢谢谢谢谢``, ``买一送一买一送一...``, ``the the the ...``).
    ``max_repeats <= 0`` disables the filter."""
    if max_repeats <= 0:
        return False
    u = _units(text)
    for n in range(1, min(max_n, len(u) // (max_repeats + 1)) + 1):
        for i in range(len(u) - n * (max_repeats + 1) + 1):
            gram = u[i : i + n]
            reps, j = 1, i + n
            while u[j : j + n] == gram:
                reps += 1
                j += n
                if reps > max_repeats:
                    return True
    return False


def remove_prompt_echo(words: list[AsrWord], prompt: str, min_len: int = 4
                       ) -> tuple[list[AsrWord], int]:
    """Remove the initial prompt echoed into the transcript (a known Whisper failure on unclear
    audio: ``千万第一是普通话的句子``): every run of >= ``min_len`` characters that also occurs
    in the prompt (punctuation ignored) is cut out of the words. Returns (words, chars removed)."""
    core = _strip_punct(prompt)
    if len(core) < min_len or not words:
        return words, 0
    owner: list[int] = []
    chars: list[str] = []
    for i, w in enumerate(words):
        for ch in w.text:
            owner.append(i)
            chars.append(ch)
    removed = [False] * len(chars)
    while True:
        text = "".join("\0" if r else c for c, r in zip(chars, removed, strict=True))
        m = SequenceMatcher(None, text, core, autojunk=False).find_longest_match(
            0, len(text), 0, len(core))
        if m.size < min_len:
            break
        for k in range(m.a, m.a + m.size):
            removed[k] = True
    n = sum(removed)
    if not n:
        return words, 0
    kept: dict[int, str] = {}
    for i, c, r in zip(owner, chars, removed, strict=True):
        if not r:
            kept[i] = kept.get(i, "") + c
    out = [AsrWord(w.start, w.end, kept[i]) for i, w in enumerate(words)
           if _strip_punct(kept.get(i, ""))]
    return out, n


_OPENCC: Any = None
_OPENCC_LOCK = threading.Lock()


def _simplifier(mode: str | bool):
    """Callable traditional->simplified, or None. ``auto``: opencc if importable; ``true``/
    ``opencc``: required; ``false``/``none``: off."""
    global _OPENCC
    mode = str(mode).lower()
    if mode in ("false", "none", "off", "0"):
        return None
    with _OPENCC_LOCK:
        if _OPENCC is None:
            try:
                import opencc  # optional

                try:
                    conv = opencc.OpenCC("t2s")
                except Exception:  # bindings that want the config file name
                    conv = opencc.OpenCC("t2s.json")
                _OPENCC = conv.convert
            except Exception as exc:  # ImportError, or a build without its data
                if mode not in ("auto",):
                    raise RuntimeError(
                        f"simplify={mode!r} needs the `opencc` package (pip install opencc): {exc}"
                    ) from exc
                _OPENCC = False
    return _OPENCC or None
