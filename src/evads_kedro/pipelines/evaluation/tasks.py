"""Rule-based task classifier (BP / CM / ML / CI / RC) for released questions (SPEC §5).

The release has no task label, but every video has exactly 5 questions, one per task, and the
question wording is formulaic (rules derived by reading the released questions):

* **RC** asks whether a claim is compliant: ``是否合规 / 违规 / 虚假宣传 / 绝对化 ...``;
* **CI** asks about the audience: ``受众 / 人群 / 客群 / 画像 / 锁定哪类 ...``;
* **ML** asks *how* the ad persuades: ``如何利用 / 策略 / 逻辑 / 转化闭环 ...``;
* **CM** anchors a visual question on a spoken/caption moment: ``当ASR提到"…"时，画面…``;
* **BP** asks for a plain fact: ``是什么 / 多少 / 什么颜色 ...`` (also the fallback).

Each rule adds ``weight × number of distinct matched keywords`` to its task; the raw label is
the arg-max. With ``assign_per_video`` the 5 questions of a video are then given the
permutation of the 5 tasks with the highest total score (5! = 120 candidates), which uses the
"one question per task" structure to fix the raw classifier's collisions. The share of
videos whose *raw* labels already form a permutation is the classifier's self-consistency
check (reported; ~95 % on the 572 released videos).

With an LLM classifier (``method: llm``, :mod:`.task_llm`) each valid LLM label adds
``llm_weight`` to its task's rule score, so the LLM decides the raw label and the rules only break
its collisions in the per-video assignment; a question whose LLM reply is unusable (invalid or
failed call) falls back to its rule scores alone (``task_source`` says which).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from evads_kedro.taxonomy import TASK_CODES

_QUOTED = r"[“\"「『][^”\"」』]{1,40}[”\"」』]"
_MOMENT = r"((?<!小)时|瞬间|之时|期间|时刻|之际|一侧|那一刻|同时)"

# task -> [(regex, weight)]; order of TASK_CODES breaks ties (BP first).
RULES: dict[str, list[tuple[str, float]]] = {
    "RC": [
        (r"(是否|吗|还是|属于|构成|涉嫌|触犯|涉及).{0,30}(合规|违规|违法|虚假|误导|绝对化|广告法|"
         r"红线|极限词|医疗|功效宣称)", 4.0),
        (r"合规性", 4.0),
        (r"合规|违规|违法|虚假|误导|绝对化|广告法|夸大|红线|极限词", 2.0),
    ],
    "CI": [
        (r"受众|客群|画像|目标用户|目标消费|消费群体", 3.0),
        (r"人群|群体|锁定|触达|定位|哪类|哪些人|什么人|谁|瞄准", 2.0),
        (r"痛点|心理诉求|需求|诉求", 0.5),
    ],
    "ML": [
        (r"如何(?![？?]?$)", 3.0),
        (r"策略|逻辑|营销|手段|叙事|作用|心理|闭环", 2.0),
        (r"转化|促成|促单|下单|驱动|钩子|说服|锚点|溢价|信任|利用|构建|手法|路径|话术|痛点|决策",
         0.5),
    ],
    "CM": [
        (r"^(当|在|听到|伴随|随着)", 2.0),
        (_QUOTED + r".{0,12}" + _MOMENT, 3.0),
        (r"(提到|提及|显示|出现|播报|口播|说|强调|展示|听到|列出|标注|提示|写着)[^，,？?]{0,24}"
         r"((?<!小)时|瞬间|期间|时刻)[，,]", 2.5),
        (r"(ASR|OCR|语音|旁白|口播|字幕|画面|配音).{0,4}(提及|提到|出现|显示|说|强调|标注|念|介绍)",
         1.0),
        (r"(ASR|OCR|语音|旁白|口播|字幕)[^，,？?]{0,8}" + _QUOTED + r".{0,20}画面", 2.5),
    ],
    "BP": [
        (r"(适用|使用|目标|建议)[^，,]{0,8}人群.{0,12}(分别|是什么|是哪)|(分别|各)是", 2.0),
        (r"是什么|多少|哪(种|个|两|三|几)|几|颜色|材质|名称|品牌|型号|成分|价格|数值|分别|什么",
         0.8),
    ],
}
BP_PRIOR = 0.5
_COMPILED = {t: [(re.compile(p), w) for p, w in rs] for t, rs in RULES.items()}


def task_scores(question: str) -> dict[str, float]:
    """Score of each task for one question (higher = more likely)."""
    s = {t: 0.0 for t in TASK_CODES}
    for task, rules in _COMPILED.items():
        for pat, w in rules:
            s[task] += w * len({m.group(0) for m in pat.finditer(
                question if isinstance(question, str) else "")})  # NaN: a null cell
    s["BP"] += BP_PRIOR
    return s


_REPLY_CODE = re.compile(r"(?<![A-Za-z])(BP|CM|ML|CI|RC)(?![A-Za-z])")


def parse_task_reply(text: str | None) -> str | None:
    """The task code of an LLM classifier reply, or None when it names none or several.

    Strict on purpose: ``Task: CM`` / ``CM`` / ``**CM**`` count; ``BP or CM`` does not."""
    found = set(_REPLY_CODE.findall(text or ""))
    return found.pop() if len(found) == 1 else None


def classify_question(question: str) -> str:
    """Raw rule-based label of one question."""
    s = task_scores(question)
    return max(TASK_CODES, key=lambda t: (s[t], -TASK_CODES.index(t)))


def assign_permutation(scores: list[dict[str, float]]) -> list[str] | None:
    """Best one-to-one task assignment for a video's questions (needs exactly 5)."""
    if len(scores) != len(TASK_CODES):
        return None
    top = [max(s.values()) for s in scores]
    best = max(itertools.permutations(TASK_CODES),
               key=lambda perm: (sum(s[t] for s, t in zip(scores, perm, strict=True)),
                                 # deterministic tie-break: prefer raw labels
                                 sum(s[t] == m for s, t, m in zip(scores, perm, top, strict=True))))
    return list(best)


def classify_tasks(qa: pd.DataFrame, params: dict[str, Any],
                   llm_labels: Mapping[str, str | None] | None = None,
                   ) -> tuple[pd.DataFrame, dict]:
    """Task labels for every question of ``qa`` and the classifier's self-consistency report.

    Returns a frame (question_id, video_id, task_raw, task, task_source, llm_task,
    score_<T>...) and a dict: n_questions, n_videos, n_videos_with_5, permutation_rate (raw
    labels of a 5-question video form a permutation of the 5 tasks), changed_by_assignment,
    raw label counts. ``llm_labels`` maps question id -> LLM label (None = unusable reply);
    ``params.llm_weight`` (default 10) is added to that task's score. ``task_source`` is
    ``<llm|rules>_<raw|assigned>``, ``rules_fallback_*`` for a question the LLM could not
    label, or ``given``. An existing non-null ``task`` column in ``qa`` is kept as is.
    """
    assign = bool(params.get("assign_per_video", True))
    weight = float(params.get("llm_weight", 10.0))
    rows = []
    for qid, vid, q in zip(qa["question_id"], qa["video_id"], qa["question"], strict=True):
        s = task_scores(q)
        llm = (llm_labels or {}).get(qid)
        if llm in TASK_CODES:
            s[llm] += weight
        origin = "rules" if llm_labels is None else ("llm" if llm in TASK_CODES
                                                     else "rules_fallback")
        rows.append({"question_id": qid, "video_id": vid, "task_raw":
                     max(TASK_CODES, key=lambda t, s=s: (s[t], -TASK_CODES.index(t))),
                     "llm_task": llm if llm in TASK_CODES else None, "origin": origin,
                     **{f"score_{t}": s[t] for t in TASK_CODES}})
    out = pd.DataFrame(rows, columns=["question_id", "video_id", "task_raw", "llm_task", "origin"]
                       + [f"score_{t}" for t in TASK_CODES])
    out["task"] = out["task_raw"]
    out["task_source"] = out["origin"] + "_raw"
    perm_ok, n5 = 0, 0
    for _, idx in out.groupby("video_id", sort=False).groups.items():
        idx = list(idx)
        raw = out.loc[idx, "task_raw"].tolist()
        if len(idx) != len(TASK_CODES):
            continue
        n5 += 1
        is_perm = sorted(raw) == sorted(TASK_CODES)
        perm_ok += is_perm
        if assign and not is_perm:  # a raw permutation is already the best assignment
            sc = [{t: out.at[i, f"score_{t}"] for t in TASK_CODES} for i in idx]
            best = assign_permutation(sc)
            out.loc[idx, "task"] = best
            out.loc[idx, "task_source"] = out.loc[idx, "origin"] + "_assigned"
    if "task" in qa.columns:
        given = qa["task"].reset_index(drop=True)
        has = given.notna() & given.isin(TASK_CODES)
        out.loc[has.to_numpy(), "task"] = given[has].to_numpy()
        out.loc[has.to_numpy(), "task_source"] = "given"
    out = out.drop(columns="origin")
    report = {
        "method": "rules" if llm_labels is None else "llm",
        "assign_per_video": assign,
        "n_questions": int(len(out)),
        "n_videos": int(out["video_id"].nunique()),
        "n_videos_with_5": n5,
        "permutation_rate": (perm_ok / n5) if n5 else None,
        "changed_by_assignment": int((out["task"] != out["task_raw"]).sum()),
        "raw_counts": out["task_raw"].value_counts().reindex(TASK_CODES, fill_value=0).to_dict(),
        "final_counts": out["task"].value_counts().reindex(TASK_CODES, fill_value=0).to_dict(),
    }
    if llm_labels is not None:
        llm = out["llm_task"]
        rules_only = [classify_question(q) for q in qa["question"]]
        report["llm"] = {
            "weight": weight,
            "labelled": int(llm.notna().sum()),
            "fallback_to_rules": int(llm.isna().sum()),
            "agreement_with_rules": float((llm[llm.notna()] == pd.Series(
                rules_only, index=out.index)[llm.notna()]).mean()) if llm.notna().any() else None,
        }
    return out, report


def reference_accuracy(labels: pd.DataFrame, reference: pd.DataFrame | None) -> dict[str, Any]:
    """Accuracy and confusion of ``labels`` on hand-checked questions present in ``labels``.

    ``reference`` has columns question_id_prefix (the hex after ``ques_``, any length),
    task and sample (a name: random, hard ...). Returns {sample: {n, accuracy, raw_accuracy,
    confusion: {truth: {predicted: count}}}}; samples absent from ``labels`` are left out."""
    if reference is None or reference.empty:
        return {}
    out: dict[str, Any] = {}
    hexes = labels["question_id"].astype(str).str.removeprefix("ques_")
    for sample, ref in reference.groupby("sample", sort=False):
        width = int(ref["question_id_prefix"].astype(str).str.len().max())
        truth = dict(zip(ref["question_id_prefix"].astype(str), ref["task"], strict=True))
        hit = labels[hexes.str[:width].isin(truth)]
        if hit.empty:
            continue
        t = hit["question_id"].str.removeprefix("ques_").str[:width].map(truth)
        conf = pd.crosstab(t, hit["task"]).reindex(index=list(TASK_CODES),
                                                   columns=list(TASK_CODES), fill_value=0)
        out[str(sample)] = {
            "n": int(len(hit)),
            "accuracy": float((hit["task"] == t).mean()),
            "raw_accuracy": float((hit["task_raw"] == t).mean()),
            "confusion": {r: {c: int(conf.at[r, c]) for c in TASK_CODES} for r in TASK_CODES},
        }
    return out
