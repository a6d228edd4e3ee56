"""Deterministic verifier of candidate QA items ("strict traceability", SPEC §4).

An item passes when every check holds; otherwise it is rejected with *all* failing reasons
(``;``-joined codes, the first one is the headline):

* ``schema:<field>``            a key is missing / of the wrong type / the task is unknown /
                                the question spans several lines (prompts need one line);
* ``no_quotes``                 fewer than ``min_quotes`` quotes;
* ``unknown_second:<s>``        a cited second (or a quote's second) has no timeline line;
* ``quote_not_found:<m>@<s>``   the quoted text does not occur in that modality at that second
                                (a quote may run on into the next ``quote_window_s`` seconds,
                                because ASR words straddle second boundaries), compared after
                                :func:`normalize`;
* ``cm_single_modality``        a CM item quotes fewer than 2 modalities (ocr and asr);
* ``rc_no_claim_quote``         an RC item quotes no claim;
* ``answer_too_long:<n>>``      the answer has more than ``max_answer_units`` units
                                (:func:`evads_kedro.units.count_units`: a CJK char or an ASCII word).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from evads_kedro.taxonomy import TASK_CODES
from evads_kedro.timeline import parse_timeline
from evads_kedro.units import count_units

MODALITIES = ("ocr", "asr")


def normalize(text: str) -> str:
    """NFKC (folds full-width forms), lower-case, keep only letters and digits (drops
    whitespace, punctuation and symbols, ASCII or CJK)."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def second_index(timeline_full: str) -> dict[int, dict[str, str]]:
    """``{second: {"ocr": normalised OCR (boxes joined), "asr": normalised ASR}}``."""
    out = {}
    for rec in parse_timeline(timeline_full).per_second():
        out[rec.second] = {"ocr": normalize("".join(rec.ocr)), "asr": normalize(rec.asr or "")}
    return out


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().rstrip("s").isdigit():
        return int(v.strip().rstrip("s"))
    return None


def check_item(item: Mapping[str, Any], index: Mapping[int, Mapping[str, str]],
               params: Mapping[str, Any]) -> list[str]:
    """Reasons the item fails (empty list: it passes)."""
    reasons: list[str] = []
    if not isinstance(item, Mapping):
        return ["schema:item"]
    task = item.get("task")
    if not isinstance(task, str) or task.strip().upper() not in TASK_CODES:
        reasons.append("schema:task")
    q = item.get("question")
    if not isinstance(q, str) or not q.strip():
        reasons.append("schema:question")
    elif "\n" in q.strip() or "\r" in q.strip():
        reasons.append("schema:question_multiline")
    a = item.get("answer")
    if not isinstance(a, str) or not a.strip():
        reasons.append("schema:answer")
    clues = item.get("clues")
    if clues is not None and not isinstance(clues, str):
        reasons.append("schema:clues")
    cited = item.get("cited_seconds")
    cited = cited if isinstance(cited, list) else None
    if cited is None:
        reasons.append("schema:cited_seconds")
    quotes = item.get("quotes")
    if not isinstance(quotes, list) or not all(isinstance(x, Mapping) for x in quotes):
        reasons.append("schema:quotes")
        quotes = []
    if reasons:
        return reasons
    task = task.strip().upper()

    for s in cited:
        si = _as_int(s)
        if si is None or si not in index:
            reasons.append(f"unknown_second:{s}")
    if len(quotes) < int(params.get("min_quotes", 1)):
        reasons.append("no_quotes")
    window = int(params.get("quote_window_s", 1))
    modalities = set()
    for qt in quotes:
        mod = str(qt.get("modality", "")).strip().lower()
        sec = _as_int(qt.get("second"))
        text = normalize(str(qt.get("text", "")))
        if mod not in MODALITIES or sec is None or not text:
            reasons.append("schema:quote")
            continue
        if sec not in index:
            reasons.append(f"unknown_second:{sec}")
            continue
        # the quote starts at `sec` and may run on into the next `window` seconds
        spans = ["".join(index.get(t, {}).get(mod, "") for t in range(sec, sec + k + 1))
                 for k in range(window + 1)]
        if any(text in sp for sp in spans) or text in index[sec][mod]:
            modalities.add(mod)
        else:
            reasons.append(f"quote_not_found:{mod}@{sec}")
    if task == "CM" and len(modalities) < 2:
        reasons.append("cm_single_modality")
    if task == "RC" and not modalities:
        reasons.append("rc_no_claim_quote")
    n = count_units(a)
    limit = int(params.get("max_answer_units", 50))
    if n > limit:
        reasons.append(f"answer_too_long:{n}>{limit}")
    return list(dict.fromkeys(reasons))
