"""ASR accuracy measures used to evaluate the ASR backends on synthetic speech.

* :func:`wer` - word error rate for English: (substitutions + deletions + insertions) / number of
  reference words, after lower-casing and removing punctuation (apostrophes inside words kept).
* :func:`pinyin_overlap` - for Mandarin read by espeak-ng, whose characters Whisper cannot be
  expected to get exactly (homophones): recall of the reference's toneless pinyin syllables *in
  order*, i.e. the total size of difflib's ``SequenceMatcher`` matching blocks between the two
  syllable sequences divided by the number of reference syllables. Arabic numbers are read out in
  Chinese first (``200`` -> ``二百`` -> ``er bai``) on both sides, so ``200克`` and ``两百克``
  differ by one syllable, not by a whole token. Latin words count as one lower-cased syllable.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

__all__ = ["edit_distance", "pinyin_overlap", "pinyin_syllables", "wer", "wer_words"]


def wer_words(text: str) -> list[str]:
    """Lower-cased words with punctuation removed (``Don't`` stays ``don't``)."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return [w.strip("'") for w in text.split() if w.strip("'")]


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two token lists (unit costs)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def wer(ref: str, hyp: str) -> float:
    """Word error rate of ``hyp`` against ``ref`` (0 = exact; may exceed 1 with insertions).
    An empty reference gives 0.0 for an empty hypothesis, else 1.0."""
    r, h = wer_words(ref), wer_words(hyp)
    if not r:
        return 0.0 if not h else 1.0
    return edit_distance(r, h) / len(r)


def _numbers_to_hanzi(text: str) -> str:
    from evads_kedro.synth.audio import number_to_chinese

    digits = "零一二三四五六七八九"

    def repl(m: re.Match) -> str:
        whole, _, frac = m.group(0).partition(".")
        out = number_to_chinese(int(whole)) if len(whole) <= 12 else \
            "".join(digits[int(c)] for c in whole)
        if frac:
            out += "点" + "".join(digits[int(c)] for c in frac)
        return out

    text = re.sub(r"(\d+(?:\.\d+)?)[%％]", lambda m: "百分之" + m.group(1), text)
    return re.sub(r"\d+(?:\.\d+)?", repl, text)


def pinyin_syllables(text: str) -> list[str]:
    """Toneless pinyin syllables of the Chinese characters, lower-cased Latin words as-is,
    numbers read out in Chinese, everything else dropped."""
    from pypinyin import Style, lazy_pinyin

    out: list[str] = []
    for item in lazy_pinyin(_numbers_to_hanzi(text), style=Style.NORMAL, errors="default"):
        if re.fullmatch(r"[a-zü]+", item):
            out.append(item)  # one Chinese character's syllable
        else:  # a non-Chinese run: keep its Latin words
            out.extend(w.lower() for w in re.findall(r"[A-Za-z]+", item))
    return out


def pinyin_overlap(ref_text: str, hyp_text: str) -> float:
    """Share of reference pinyin syllables recovered in order (0..1). Empty reference: 1.0 if the
    hypothesis is empty too, else 0.0."""
    ref, hyp = pinyin_syllables(ref_text), pinyin_syllables(hyp_text)
    if not ref:
        return 1.0 if not hyp else 0.0
    sm = SequenceMatcher(None, ref, hyp, autojunk=False)
    return sum(b.size for b in sm.get_matching_blocks()) / len(ref)
