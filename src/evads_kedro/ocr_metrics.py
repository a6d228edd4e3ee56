"""OCR quality against known captions (the synthetic sample ads carry per-second ground truth).

Definitions (one frame / one second at a time; aggregate with :func:`recall_report`):

* **match key** of a string: NFKC (full-width -> ASCII, ``￥`` -> ``¥``, ``？`` -> ``?``),
  case-folded, all whitespace removed. OCR engines drop or add spaces between words
  (PP-OCR reads ``暖阳 NUANYANG`` as ``暖阳NUANYANG``) and split or merge caption lines, so
  neither spaces nor box boundaries count.
* **string recall** (``level="string"``): fraction of ground-truth caption strings whose key is
  a substring of the key of the OCR texts joined (in reading order, no separator). A caption
  counts only when read completely and in order, punctuation included.
* **char recall** (``level="char"``): multiset character recall: matched characters / ground
  truth characters (keys, i.e. without whitespace), where a character of the truth matches at
  most one equal character of the OCR text. Order-insensitive partial credit.
* **char precision** (:func:`char_precision`): the same count over the OCR characters: how much
  of what was read is caption text (hallucinated text from shapes/backgrounds lowers it).

An empty truth gives recall 1.0 (nothing to find); empty OCR with non-empty truth gives 0.0.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["caption_recall", "char_precision", "match_key", "recall_report"]


def match_key(text: str) -> str:
    """NFKC, case-folded, whitespace removed: the form OCR output and truth are compared in."""
    return "".join(unicodedata.normalize("NFKC", text or "").casefold().split())


def _counts(texts: Iterable[str]) -> Counter:
    c: Counter = Counter()
    for t in texts:
        c.update(match_key(t))
    return c


def _string_hits(truth: Sequence[str], predicted: Sequence[str]) -> tuple[int, int]:
    joined = match_key("".join(predicted))
    keys = [k for k in (match_key(t) for t in truth) if k]
    return sum(k in joined for k in keys), len(keys)


def _char_hits(truth: Sequence[str], predicted: Sequence[str]) -> tuple[int, int]:
    t, p = _counts(truth), _counts(predicted)
    return sum((t & p).values()), sum(t.values())


def caption_recall(truth: Sequence[str], predicted: Sequence[str], level: str = "string"
                   ) -> float:
    """Recall of the ground-truth captions ``truth`` of one frame in its OCR texts
    ``predicted`` (see the module docstring for ``level`` = ``"string"`` or ``"char"``)."""
    if level == "string":
        hit, total = _string_hits(truth, predicted)
    elif level == "char":
        hit, total = _char_hits(truth, predicted)
    else:
        raise ValueError(f"level must be 'string' or 'char', got {level!r}")
    return 1.0 if total == 0 else hit / total


def char_precision(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Fraction of OCR characters (keys) matched by a ground-truth character (1.0 if none)."""
    t, p = _counts(truth), _counts(predicted)
    total = sum(p.values())
    return 1.0 if total == 0 else sum((t & p).values()) / total


def recall_report(truth: Mapping[Any, Sequence[str]], predicted: Mapping[Any, Sequence[str]]
                  ) -> dict[str, float | int]:
    """Micro-averaged figures over frames/seconds: ``string_recall`` (caption strings found /
    caption strings), ``char_recall``, ``char_precision`` (characters pooled over all frames),
    plus ``captions`` and ``frames``. Keys of ``truth`` missing in ``predicted`` count as read
    nothing; predicted-only keys count towards precision."""
    s_hit = s_tot = c_hit = c_tot = p_hit = p_tot = 0
    for key in set(truth) | set(predicted):
        t, p = list(truth.get(key, ())), list(predicted.get(key, ()))
        h, n = _string_hits(t, p)
        s_hit, s_tot = s_hit + h, s_tot + n
        h, n = _char_hits(t, p)
        c_hit, c_tot = c_hit + h, c_tot + n
        p_hit, p_tot = p_hit + h, p_tot + sum(_counts(p).values())
    return {
        "string_recall": 1.0 if s_tot == 0 else s_hit / s_tot,
        "char_recall": 1.0 if c_tot == 0 else c_hit / c_tot,
        "char_precision": 1.0 if p_tot == 0 else p_hit / p_tot,
        "captions": s_tot,
        "frames": len(set(truth) | set(predicted)),
    }
