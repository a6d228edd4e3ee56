"""Judge check: probes whose right score is known by construction, and how well a judge ranks them.

From released rows (the test split when present, else RL) each sampled question gives five
probes, graded against its own reference answer:

=============  =============================================================  ========
kind           answer shown to the judge                                      intended
=============  =============================================================  ========
reference      the reference answer itself                                    1.0
half           the reference cut to about half its key points (clauses)       0.5
fabricated     the reference plus a quote at a time that is not in the record 0.25
swapped        another video's reference answer of the same category          0.0
empty          an empty reply                                                 0.0
=============  =============================================================  ========

(0.25 is the official "hallucination" tier: a conclusion whose cited evidence is not in the
record.) Every configured judge grades every probe (cached like any judge call); the figures
per judge are the mean R5 per probe kind, the AUC of reference vs swapped, the Spearman
correlation with the intended scores, the share of invalid replies, agreement with itself on a
repeat (seed + 1) and under a second prompt template (the official one), and Cohen's κ
between every two judges. A judge below ``floor`` is flagged (a banner in the HTML report).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from evads_kedro.calls.cache import JsonlCache, stable_hash, text_hash
from evads_kedro.calls.judge import judge_call, judge_settings
from evads_kedro.calls.runner import Job, run_jobs, run_sync
from evads_kedro.calls.templates import JUDGE_FIELDS, load_template, render, resolve_path
from evads_kedro.pipelines.evaluation import protocol as proto
from evads_kedro.scoring import R5_VALUES

logger = logging.getLogger(__name__)

PROBE_KINDS: dict[str, float] = {"reference": 1.0, "half": 0.5, "fabricated": 0.25,
                                 "swapped": 0.0, "empty": 0.0}
PROBE_COLUMNS = ["probe_id", "question_id", "video_id", "category", "kind", "intended",
                 "question", "timeline_full", "clues", "reference", "output"]
SCORE_COLUMNS = ["judge", "variant", "probe_id", "kind", "intended", "status", "r5",
                 "raw_reply", "cached"]
DEFAULT_FLOOR = {"auc_reference_vs_swapped": 0.8, "spearman": 0.5, "max_invalid_rate": 0.1}

# Quotes no ad record contains; the first absent from the row's record is used.
_FAKE_QUOTES = ("全网最低价仅需9.9元，买一送三", "院士团队联合研发，七天无效全额退款",
                "限量发售，仅剩最后3件")
_CLAUSE = re.compile(r"[^，,。；;！!？?、]+[，,。；;！!？?、]?")


def key_points(answer: str) -> list[str]:
    """The answer's clauses (split after Chinese/Latin punctuation), empty ones dropped."""
    return [c for c in _CLAUSE.findall(answer or "") if c.strip()]


def half_answer(answer: str) -> str:
    """About half the key points: the first ``max(1, n // 2)`` clauses of ``n``; a one-clause
    answer is cut to the first half of its characters."""
    parts = key_points(answer)
    if len(parts) >= 2:
        return "".join(parts[:max(1, len(parts) // 2)]).rstrip("，,、；; ")
    text = (answer or "").strip()
    return text[:max(1, len(text) // 2)]


def fabricated_answer(answer: str, timeline: str, duration_s: float | None) -> str:
    """The reference plus a quoted caption at a second past the end of the ad: evidence that
    is not in the record."""
    quote = next((q for q in _FAKE_QUOTES if q not in (timeline or "")), _FAKE_QUOTES[0])
    second = int(math.ceil(duration_s or 0)) + 7
    sep = "" if (answer or "").rstrip().endswith(("。", ".", "！", "!")) else "。"
    return f"{(answer or '').rstrip()}{sep}视频第{second}秒字幕写着“{quote}”，这是最有力的证据。"


def _duration(timeline: str) -> float | None:
    m = re.search(r"Duration:\s*([0-9.]+)\s*s", timeline or "")
    return float(m.group(1)) if m else None


def probe_rows(qa: pd.DataFrame, *, n_questions: int, seed: int = 0,
               splits: Sequence[str] = ("test", "rl")) -> pd.DataFrame:
    """Five probes (:data:`PROBE_KINDS`) for each of ``n_questions`` released questions from
    the first of ``splits`` present in ``qa`` (one question per video, seeded order). The
    swapped answer comes from another video of the same category, or of any category when the
    video is its category's only one."""
    missing = {"question_id", "video_id", "category", "question", "answer", "split"} - set(qa)
    if missing:
        raise ValueError(f"released_qa lacks {sorted(missing)}; run the ingestion pipeline "
                         "(released import) first")
    split = next((s for s in splits if (qa["split"] == s).any()), None)
    if split is None:
        raise ValueError(f"no released question in splits {list(splits)}; present: "
                         f"{sorted(qa['split'].dropna().unique())}")
    rows = qa[(qa["split"] == split) & qa["answer"].fillna("").str.strip().astype(bool)]
    rows = rows.sort_values("question_id")
    rng = random.Random(seed)
    per_video = {v: g for v, g in rows.groupby("video_id", sort=True)}
    videos = sorted(per_video)
    rng.shuffle(videos)
    by_cat: dict[str, list[str]] = {}
    for v in sorted(per_video):
        by_cat.setdefault(str(per_video[v]["category"].iloc[0]), []).append(v)
    out: list[dict[str, Any]] = []
    for v in videos:
        if len(out) >= 5 * n_questions:
            break
        g = per_video[v]
        cat = str(g["category"].iloc[0])
        # another video of the same category; of any category when it is the only one
        others = [o for o in by_cat[cat] if o != v] or [o for o in sorted(per_video) if o != v]
        if not others:
            continue
        q = g.iloc[rng.randrange(len(g))]
        other = per_video[others[rng.randrange(len(others))]]
        swapped = str(other["answer"].iloc[rng.randrange(len(other))])
        timeline = str(q.get("timeline_full") or "")
        ref = str(q["answer"])
        outputs = {"reference": ref, "half": half_answer(ref),
                   "fabricated": fabricated_answer(ref, timeline, _duration(timeline)),
                   "swapped": swapped, "empty": ""}
        for kind, intended in PROBE_KINDS.items():
            out.append({"probe_id": f"{q['question_id']}:{kind}",
                        "question_id": q["question_id"], "video_id": str(v), "category": cat,
                        "kind": kind, "intended": intended, "question": q["question"],
                        "timeline_full": timeline, "clues": q.get("clues") or "",
                        "reference": ref, "output": outputs[kind]})
    return pd.DataFrame(out, columns=PROBE_COLUMNS)


# ------------------------------------------------------------------------------- figures
def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting one half (Mann-Whitney AUC)."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def cohen_kappa(a: Sequence[float], b: Sequence[float]) -> float:
    """Unweighted Cohen's κ of two raters over the five legal R5 values."""
    n = len(a)
    if n == 0 or n != len(b):
        return float("nan")
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pe = sum((list(a).count(v) / n) * (list(b).count(v) / n) for v in R5_VALUES)
    return 1.0 if pe == 1.0 else (po - pe) / (1.0 - pe)


def _agreement(x: pd.Series, y: pd.Series) -> float:
    both = pd.concat([x, y], axis=1, keys=["x", "y"]).dropna()
    return float((both["x"] == both["y"]).mean()) if len(both) else float("nan")


def judge_figures(scores: pd.DataFrame, floor: Mapping[str, float] | None = None
                  ) -> dict[str, Any]:
    """Figures of one judge from its rows of the score table (``variant`` main / repeat /
    prompt), and whether it is ``flagged`` (below ``floor``) with the ``reasons``."""
    floor = {**DEFAULT_FLOOR, **dict(floor or {})}
    main = scores[scores["variant"] == "main"]
    ok = main[main["status"] == "ok"]
    n = len(main)
    ref = ok.loc[ok["kind"] == "reference", "r5"].astype(float).tolist()
    swp = ok.loc[ok["kind"] == "swapped", "r5"].astype(float).tolist()
    rho = float("nan")
    if len(ok) >= 3 and ok["r5"].nunique() > 1:
        rho = float(ok["r5"].astype(float).corr(ok["intended"].astype(float), method="spearman"))
    fig: dict[str, Any] = {
        "probes": n,
        "mean_r5_by_probe": {k: (float(ok.loc[ok["kind"] == k, "r5"].mean())
                                 if (ok["kind"] == k).any() else None) for k in PROBE_KINDS},
        "auc_reference_vs_swapped": auc(ref, swp),
        "spearman": rho,
        "invalid_rate": float((main["status"] == "invalid").mean()) if n else float("nan"),
        "failed_rate": float((main["status"] == "failed").mean()) if n else float("nan"),
    }
    by_probe = main.set_index("probe_id")["r5"].where(main.set_index("probe_id")["status"]
                                                      == "ok")
    for variant, name in (("repeat", "repeat_agreement"), ("prompt", "prompt_agreement")):
        other = scores[scores["variant"] == variant]
        if len(other):
            o = other.set_index("probe_id")["r5"].where(other.set_index("probe_id")["status"]
                                                        == "ok")
            fig[name] = _agreement(by_probe, o)
    reasons = []
    a, r, inv = fig["auc_reference_vs_swapped"], fig["spearman"], fig["invalid_rate"]
    if not (a >= floor["auc_reference_vs_swapped"]):  # NaN fails too
        reasons.append(f"AUC reference vs swapped {a:.2f} < {floor['auc_reference_vs_swapped']}")
    if not (r >= floor["spearman"]):
        reasons.append(f"Spearman with the intended order {r:.2f} < {floor['spearman']}")
    if not (inv <= floor["max_invalid_rate"]):
        reasons.append(f"invalid replies {inv:.0%} > {floor['max_invalid_rate']:.0%}")
    fig.update(flagged=bool(reasons), reasons=reasons)
    return fig


def check_summary(probes: pd.DataFrame, scores: pd.DataFrame,
                  floor: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``{"probes", "data", "floor", "judges": {name: figures}, "kappa": {"a vs b": κ}}``."""
    judges = list(dict.fromkeys(scores["judge"]))
    out: dict[str, Any] = {
        "probes": len(probes),
        "data": (f"{probes['question_id'].nunique()} released questions from "
                 f"{probes['video_id'].nunique()} videos x {len(PROBE_KINDS)} probe kinds"),
        "floor": {**DEFAULT_FLOOR, **dict(floor or {})},
        "judges": {j: judge_figures(scores[scores["judge"] == j], floor) for j in judges},
        "kappa": {},
    }
    main = scores[(scores["variant"] == "main") & (scores["status"] == "ok")]
    for a, b in itertools.combinations(judges, 2):
        pa = main[main["judge"] == a].set_index("probe_id")["r5"]
        pb = main[main["judge"] == b].set_index("probe_id")["r5"]
        both = pa.to_frame("a").join(pb.to_frame("b"), how="inner")
        out["kappa"][f"{a} vs {b}"] = cohen_kappa(both["a"].tolist(), both["b"].tolist())
    return out


def check_metrics(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """MLflow metrics (``judge_check.<judge>.<figure>``) in the metrics-dataset format."""
    out: dict[str, dict[str, float]] = {}
    for j, fig in summary["judges"].items():
        base = f"judge_check.{re.sub(r'[^A-Za-z0-9_.-]', '_', j)}"
        for k in ("auc_reference_vs_swapped", "spearman", "invalid_rate", "failed_rate",
                  "repeat_agreement", "prompt_agreement"):
            v = fig.get(k)
            if v is not None and not math.isnan(v):
                out[f"{base}.{k}"] = {"value": float(v), "step": 0}
        for kind, v in fig["mean_r5_by_probe"].items():
            if v is not None and not math.isnan(v):
                out[f"{base}.mean_r5.{kind}"] = {"value": float(v), "step": 0}
        out[f"{base}.flagged"] = {"value": float(fig["flagged"]), "step": 0}
    for pair, k in summary["kappa"].items():
        if not math.isnan(k):
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", pair.replace(" vs ", "__"))
            out[f"judge_check.kappa.{name}"] = {"value": float(k), "step": 0}
    out["judge_check.probes"] = {"value": float(summary["probes"]), "step": 0}
    return out


# --------------------------------------------------------------------------------- calls
def _variants(name: str, js: dict[str, Any], settings: Mapping[str, Any]
              ) -> list[tuple[str, dict[str, Any]]]:
    out = [("main", js)]
    repeat = settings.get("repeat", "auto")
    if repeat == "auto":  # a local greedy or constrained judge is deterministic by construction
        repeat = not (str(js["model_id"]).startswith("local:")
                      and (js.get("constrained") or float(js.get("temperature") or 0) <= 0))
    if repeat:
        out.append(("repeat", {**js, "seed": (js.get("seed") or 0) + 1}))
    alt = settings.get("second_prompt_path")
    if alt and resolve_path(alt).is_file():
        template = load_template(alt, JUDGE_FIELDS)
        out.append(("prompt", {**js, "template": template, "template_hash": text_hash(template)}))
    elif alt:
        logger.warning("judge check: second_prompt_path %s not found; prompt agreement "
                       "not measured", alt)
    return out


def score_probes(probes: pd.DataFrame, judges: Mapping[str, dict[str, Any]], cache: JsonlCache,
                 settings: Mapping[str, Any]) -> pd.DataFrame:
    """Every judge (``{name: judge_settings(...)}``) grades every probe, per variant (main,
    repeat, prompt); one row each. Calls are cached (key: judge model id, template hash,
    probe question, judged text, seed)."""
    max_chars = settings.get("max_record_chars")
    jobs: list[Job] = []
    meta: list[dict[str, Any]] = []
    concurrency: dict[str, int] = {}
    for name, base in judges.items():
        for variant, js in _variants(name, base, settings):
            group = f"{name}:{variant}"
            concurrency[group] = int(js.get("concurrency") or 1)
            for p in probes.itertuples(index=False):
                record = p.timeline_full if not max_chars else p.timeline_full[:int(max_chars)]
                key = stable_hash({"kind": "judge_probe", "judge": js["model_id"],
                                   "template": js["template_hash"], "question_id": p.question_id,
                                   "record": text_hash(record), "judged": text_hash(p.output),
                                   "seed": js.get("seed")})
                prompt = render(js["template"], question=p.question, metadata=record,
                                clues=p.clues or "", reference_answer=p.reference,
                                model_output=p.output)
                jobs.append(Job(key=key, group=group, run=judge_call(js, prompt),
                                meta={"probe_id": p.probe_id}))
                meta.append({"judge": name, "variant": variant, "probe_id": p.probe_id,
                             "kind": p.kind, "intended": p.intended})
    results, _ = run_sync(run_jobs(jobs, cache, concurrency=concurrency, desc="judge probes",
                                   progress=bool(settings.get("progress", True))))
    rows = [{**m, "status": r.get("status"), "r5": r.get("r5"), "raw_reply": r.get("raw_reply"),
             "cached": bool(r.get("cached"))} for m, r in zip(meta, results, strict=True)]
    out = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    out["r5"] = out["r5"].astype(float)
    return out


def configured_judges(evaluation: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"judge": the evaluation judge, **judge_probes.judges}`` as judge settings; each extra
    judge is a judge block (``backend``, ``constrained``, ...) on the evaluation judge prompt."""
    settings = dict(evaluation.get("judge_probes") or {})
    evaluation = proto.with_judge_prompt(evaluation)  # the protocol's prompt when not set
    path = evaluation["judge_prompt_path"]
    judges = {"judge": judge_settings(evaluation)}
    for name, block in (settings.get("judges") or {}).items():
        judges[str(name)] = judge_settings({"judge_prompt_path": path, "judge": dict(block)},
                                           f"evaluation.judge_probes.judges.{name}")
    return judges


def judge_check(source_qa: pd.DataFrame, cache: JsonlCache, evaluation: dict[str, Any]
                ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, dict[str, float]]]:
    """Kedro node: probe scores (one row per judge, variant and probe), the summary (figures
    per judge, κ, flags) for the report, and its MLflow metrics. Settings come from
    ``evaluation.judge_probes`` (``enabled``, ``n_questions``, ``seed``, ``splits``,
    ``repeat``, ``second_prompt_path``, ``max_record_chars``, ``judges``, ``floor``); disabled,
    it returns empty outputs."""
    settings = dict(evaluation.get("judge_probes") or {})
    if not settings.get("enabled", True):
        return (pd.DataFrame(columns=SCORE_COLUMNS),
                {"probes": 0, "judges": {}, "kappa": {}, "enabled": False}, {})
    probes = probe_rows(source_qa, n_questions=int(settings.get("n_questions", 2)),
                        seed=int(settings.get("seed", 0)),
                        splits=tuple(settings.get("splits") or ("test", "rl")))
    if settings.get("second_prompt_path") == "auto":  # the other protocol's judge prompt
        other = "ours" if proto.protocol_name(evaluation) == "official" else "official"
        try:
            settings["second_prompt_path"] = proto.judge_prompt_path(
                {"protocol": other, "official_judge_prompt_path":
                 evaluation.get("official_judge_prompt_path")})
        except FileNotFoundError:
            settings["second_prompt_path"] = evaluation.get("official_judge_prompt_path")
    scores = score_probes(probes, configured_judges(evaluation), cache,
                          {**settings, "progress": settings.get("progress",
                                                                evaluation.get("progress", True))})
    summary = check_summary(probes, scores, settings.get("floor"))
    for name, fig in summary["judges"].items():
        if fig["flagged"]:
            logger.warning("judge check: %s is below the floor (%s)", name,
                           "; ".join(fig["reasons"]))
    return scores, finite(summary), check_metrics(summary)


def finite(x: Any) -> Any:
    """``x`` with NaN floats as None (strict JSON)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x
