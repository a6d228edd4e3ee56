"""Text units for the information-density metrics A_den and O_den (SPEC §3).

Contract of :func:`count_units`:

* The text is first NFKC-normalised. This folds full-width ASCII (``ＡＢＣ１２３`` ->
  ``ABC123``), superscripts/circled digits (``m²`` -> ``m2``, ``①`` -> ``1``), Kangxi radicals
  (``⼀`` -> ``一``, a common OCR confusion) and CJK compatibility ideographs onto their
  canonical forms, so the same visible caption always counts the same.
* One unit = one CJK ideograph, or one maximal run of ``[A-Za-z0-9]+`` (after normalisation).
* CJK ideograph = Unicode Han-script ideographs: U+3007 (〇), Extension A (U+3400-4DBF),
  the URO (U+4E00-9FFF), compatibility ideographs (U+F900-FAFF) and the supplementary
  planes' ideographs (Extensions B-H and the compatibility supplement, U+20000-323AF).
* Everything else counts 0: punctuation, spaces, symbols, kana, hangul, and non-ASCII letters
  (``café`` is the run ``caf`` = 1 unit; ``é`` alone is 0). The paper's rule names only CJK
  characters and ASCII alphanumeric runs; kana/hangul are rare in the released data.
"""

from __future__ import annotations

import re
import unicodedata

CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x3007, 0x3007),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x323AF),
)

_CJK_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in CJK_RANGES)
_UNIT_RE = re.compile(f"[A-Za-z0-9]+|[{_CJK_CLASS}]")


def is_cjk(ch: str) -> bool:
    """True iff the single character ``ch`` is a CJK ideograph as defined above (no NFKC)."""
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in CJK_RANGES)


def count_units(text: str) -> int:
    """Number of density units in ``text`` (see the module docstring); ``""`` -> 0."""
    if not text:
        return 0
    return sum(1 for _ in _UNIT_RE.finditer(unicodedata.normalize("NFKC", text)))
