"""Aggregation of judged items: means of R5 / R3 / S / MG with video-clustered intervals.

Unit of analysis: one item = (model, question, sample). Means are over *judged* items (judge
status ``ok``); ``invalid`` (judge reply never parsed) and ``failed`` (generation or judge call
failed, or skipped because generation failed) are counted, never dropped silently, and
``coverage = n_judged / n_items`` tells how much of the subset a mean stands on.

Intervals: the 5 questions of a video are not independent, so the 95 % interval is a
percentile bootstrap over *videos* (resample videos with replacement, recompute the item mean;
``bootstrap`` replicates, seeded). With several samples per question, ``sample_sd`` is the
standard deviation across sample indices of the group mean, ``within_question_sd`` the mean
over questions of the standard deviation of their samples.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from evads_kedro.scoring import SCORE_KINDS
from evads_kedro.taxonomy import COGNITION, PERCEPTION, TASK_CODES

GROUPINGS = ("overall", "dimension", "task", "category", "ques_categories")
# ``group_by`` of breakdown.csv (issue 17): the official names of the groupings
GROUP_BY = {"overall": "overall", "dimension": "dimension", "task": "task",
            "category": "goods_category", "ques_categories": "ques_categories"}
DIMENSION_SLUG = {PERCEPTION: "perception", COGNITION: "cognition"}
# n = judged items (the official means are over valid judgements); r2 = s (the official R2)
_LEAD = ["model", "group_by", "group", "n", "r5", "r3", "r2"]
BREAKDOWN_COLUMNS = _LEAD + [c for c in (
    ["grouping", "n_items", "n_judged", "n_invalid", "n_failed", "coverage", "n_videos"]
    + [f"{k}{s}" for k in SCORE_KINDS for s in ("", "_ci_low", "_ci_high")]
    + ["sample_sd_r5", "within_question_sd_r5"]) if c not in _LEAD]


def cluster_bootstrap_ci(values: np.ndarray, clusters: np.ndarray, *, n_boot: int = 1000,
                         level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` resampling whole ``clusters``."""
    if len(values) == 0:
        return (float("nan"), float("nan"))
    codes, inv = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inv, weights=values.astype(float), minlength=len(codes))
    counts = np.bincount(inv, minlength=len(codes)).astype(float)
    if len(codes) < 2 or n_boot <= 0:
        m = float(sums.sum() / counts.sum())
        return (m, m)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(codes), size=(n_boot, len(codes)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return (float(lo), float(hi))


def _group_rows(items: pd.DataFrame, grouping: str) -> list[tuple[str, pd.DataFrame]]:
    if grouping == "overall":
        return [("all", items)]
    col = {"dimension": "dimension_slug", "task": "task", "category": "category_slug",
           "ques_categories": "ques_categories"}[grouping]
    if col not in items.columns:
        return []
    order = list(TASK_CODES) if grouping == "task" else (
        list(DIMENSION_SLUG.values()) if grouping == "dimension" else sorted(
            items[col].dropna().unique()))
    present = set(items[col].dropna().unique())
    return [(g, items[items[col] == g]) for g in order if g in present]


def _stats(model: str, grouping: str, group: str, sub: pd.DataFrame,
           n_boot: int, level: float, seed: int) -> dict[str, Any]:
    judged = sub[sub["judge_status"] == "ok"]
    row: dict[str, Any] = {
        "model": model, "grouping": grouping, "group_by": GROUP_BY[grouping], "group": group,
        "n_items": int(len(sub)), "n_judged": int(len(judged)),
        "n_invalid": int((sub["judge_status"] == "invalid").sum()),
        "n_failed": int(sub["judge_status"].isin(["failed", "skipped"]).sum()),
        "n_videos": int(sub["video_id"].nunique()),
    }
    row["coverage"] = row["n_judged"] / row["n_items"] if row["n_items"] else float("nan")
    for k in SCORE_KINDS:
        vals = judged[k].to_numpy(dtype=float)
        if len(vals):
            row[k] = float(vals.mean())
            row[f"{k}_ci_low"], row[f"{k}_ci_high"] = cluster_bootstrap_ci(
                vals, judged["video_id"].to_numpy(), n_boot=n_boot, level=level, seed=seed)
        else:
            row[k] = row[f"{k}_ci_low"] = row[f"{k}_ci_high"] = float("nan")
    n_samples = judged["sample_index"].nunique() if len(judged) else 0
    if n_samples > 1:
        per_sample = judged.groupby("sample_index")["r5"].mean()
        row["sample_sd_r5"] = float(per_sample.std(ddof=1))
        per_q = judged.groupby("question_id")["r5"].std(ddof=1).dropna()
        row["within_question_sd_r5"] = float(per_q.mean()) if len(per_q) else float("nan")
    else:
        row["sample_sd_r5"] = row["within_question_sd_r5"] = float("nan")
    row["n"] = row["n_judged"]
    row["r2"] = row["s"]
    return row


def breakdown(items: pd.DataFrame, *, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0) -> pd.DataFrame:
    """Long table: one row per (model, grouping, group) with counts, means and intervals.

    ``items`` needs: model, question_id, video_id, sample_index, task, dimension_slug,
    category_slug, judge_status and the score columns r5 / r3 / s / mg (NaN unless judged).
    """
    rows = []
    for model, sub in items.groupby("model", sort=False):
        for grouping in GROUPINGS:
            for group, g in _group_rows(sub, grouping):
                rows.append(_stats(model, grouping, group, g, n_boot, level, seed))
    return pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)


def leaderboard(table: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """One row per model: overall scores with intervals, counts, per-dimension and per-task R5.

    ``models`` has one row per model with model, model_id, input columns (joined in)."""
    overall = table[table["grouping"] == "overall"].set_index("model")
    out = models.set_index("model").join(overall.drop(columns=["grouping", "group"]), how="left")
    for grouping in ("dimension", "task"):
        sub = table[table["grouping"] == grouping]
        for g in sub["group"].unique():
            vals = sub[sub["group"] == g].set_index("model")
            out[f"r5_{g}"] = vals["r5"]
            out[f"mg_{g}"] = vals["mg"]
    out = out.reset_index().sort_values(["mg", "r5"], ascending=False, na_position="last")
    return out.reset_index(drop=True)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(board: pd.DataFrame, table: pd.DataFrame, *, judge: dict[str, Any],
                    task_report: dict[str, Any], subset: dict[str, Any],
                    banner: str | None = None) -> str:
    """Human-readable report: split banner, leaderboard, per-dimension/task/category tables,
    counts, notes."""
    parts = ["# E-VAds evaluation", ""]
    if banner:
        parts += [f"> **{banner}**", ""]
    if judge.get("smoke_test"):
        parts += [
            "> **Smoke-test judge** — the scores below come from "
            f"`{judge.get('model_id')}`, a tiny local model that cannot grade these answers. "
            "They only show the pipeline works end to end. For a real evaluation set "
            "`evaluation.judge.backend: openai` with `base_url` and `model` of a capable "
            "judge (the paper used a large proprietary model).", ""]
    parts += [f"Judge: `{judge.get('model_id')}` · template `{judge.get('template')}` "
              f"(sha256 {str(judge.get('template_hash', ''))[:12]}) · temperature "
              f"{judge.get('temperature')} · seed {judge.get('seed')}",
              f"Subset: {subset.get('n_questions')} questions from {subset.get('n_videos')} "
              f"videos, splits {subset.get('splits')}", ""]
    parts += ["## Leaderboard (means over judged items; 95 % video-bootstrap interval)", ""]
    rows = []
    for r in board.itertuples(index=False):
        rows.append([r.model, r.input, r.n_items, r.n_judged, r.n_invalid, r.n_failed,
                     f"{_fmt(r.r5)} [{_fmt(r.r5_ci_low, 2)}, {_fmt(r.r5_ci_high, 2)}]",
                     f"{_fmt(r.r3)} [{_fmt(r.r3_ci_low, 2)}, {_fmt(r.r3_ci_high, 2)}]",
                     f"{_fmt(r.s)} [{_fmt(r.s_ci_low, 2)}, {_fmt(r.s_ci_high, 2)}]",
                     f"{_fmt(r.mg)} [{_fmt(r.mg_ci_low, 2)}, {_fmt(r.mg_ci_high, 2)}]"])
    parts += [_md_table(["model", "input", "items", "judged", "invalid", "failed", "R5", "R3",
                         "S", "MG"], rows), ""]
    for grouping, title in (("dimension", "dimension"), ("task", "task"),
                            ("ques_categories", "ques_categories (as given)"),
                            ("category", "category")):
        sub = table[table["grouping"] == grouping]
        if sub.empty:
            continue
        groups = list(dict.fromkeys(sub["group"]))
        parts += [f"## R5 / MG per {title} (judged items)", ""]
        rows = []
        for model in dict.fromkeys(table["model"]):
            m = sub[sub["model"] == model].set_index("group")
            rows.append([model] + [
                f"{_fmt(m.at[g, 'r5'])} / {_fmt(m.at[g, 'mg'])} (n={m.at[g, 'n_judged']})"
                if g in m.index else "–" for g in groups])
        parts += [_md_table(["model"] + groups, rows), ""]
    spread = table[(table["grouping"] == "overall") & table["sample_sd_r5"].notna()]
    if not spread.empty:
        parts += ["## Sampling spread (several samples per question)", ""]
        parts += [_md_table(["model", "SD of R5 across samples", "mean within-question SD"],
                            [[r.model, r.sample_sd_r5, r.within_question_sd_r5]
                             for r in spread.itertuples(index=False)]), ""]
    parts += ["## Notes", "",
              "- R5 = judge score; R3 maps 0.75→0.5 and 0.25→0; S = 1 iff R5 = 1; "
              "MG = (S + R3 + R5) / 3.",
              "- `invalid`: the judge never produced a legal `Answer: <score>` within the retry "
              "budget; `failed`: a generation or judge call failed after retries (or the "
              "answer it depends on failed). Both are excluded from the means and counted here.",
              *_given_note(task_report),
              f"- Task labels: {_classifier_name(task_report)} "
              f"(raw labels form a per-video permutation of the 5 tasks for "
              f"{_fmt(task_report.get('permutation_rate'))} of videos; "
              f"{task_report.get('changed_by_assignment')} labels fixed by the per-video "
              "assignment).", ""]
    return "\n".join(parts)


def metrics(table: pd.DataFrame, task_report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """MLflow metrics ``<model>.<grouping>.<group>.<score>`` plus counts and classifier rate."""
    out: dict[str, dict[str, float]] = {}
    for r in table.itertuples(index=False):
        group = re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(r.group))  # MLflow's legal characters
        base = f"{r.model}.{r.grouping}.{group}" if r.grouping != "overall" else f"{r.model}"
        for k in SCORE_KINDS:
            v = getattr(r, k)
            if not (isinstance(v, float) and np.isnan(v)):
                out[f"{base}.{k}"] = {"value": float(v), "step": 0}
        if r.grouping == "overall":
            for c in ("n_items", "n_judged", "n_invalid", "n_failed", "coverage"):
                out[f"{base}.{c}"] = {"value": float(getattr(r, c)), "step": 0}
    rate = task_report.get("permutation_rate")
    if rate is not None:
        out["task_classifier.permutation_rate"] = {"value": float(rate), "step": 0}
    for sample, r in (task_report.get("reference") or {}).items():
        out[f"task_classifier.{sample}.accuracy"] = {"value": float(r["accuracy"]), "step": 0}
    given = task_report.get("given_labels") or {}
    if given.get("classifier_accuracy_vs_given") is not None:
        out["task_classifier.accuracy_vs_given"] = {
            "value": float(given["classifier_accuracy_vs_given"]), "step": 0}
    llm = task_report.get("llm") or {}
    if llm.get("labelled") is not None:
        n = llm["labelled"] + llm["fallback_to_rules"]
        out["task_classifier.llm_label_rate"] = {"value": llm["labelled"] / n if n else 0.0,
                                                 "step": 0}
    return out


def _given_note(task_report: dict[str, Any]) -> list[str]:
    """Report lines on the split's own task labels (``ques_categories``), when it has them."""
    g = task_report.get("given_labels") or {}
    if not g.get("n_given"):
        return []
    line = (f"- Task labels of {g['n_given']} questions are the split's own `ques_categories` "
            f"({g['n_mapped']} mapped to a task)")
    if g.get("classifier_accuracy_vs_given") is not None:
        line += (f"; the rule classifier agrees with them on "
                 f"{_fmt(g['classifier_accuracy_vs_given'])} of {g['classifier_accuracy_n']}")
    if g.get("unknown_spellings"):
        line += "; unknown spellings kept as given: " + ", ".join(
            f"`{k}` ×{v}" for k, v in g["unknown_spellings"].items())
    return [line + "."]


def _classifier_name(task_report: dict[str, Any]) -> str:
    """How the task labels were made, with the hand-checked accuracy when known."""
    llm = task_report.get("llm")
    name = ("LLM classifier with rule fallback "
            f"({llm.get('labelled')} labelled by the LLM, {llm.get('fallback_to_rules')} "
            "by the rules)" if llm else "rule-based classifier over the question text")
    ref = task_report.get("reference") or {}
    if ref:
        name += "; hand-checked accuracy " + ", ".join(
            f"{k} {_fmt(v['accuracy'])} (n={v['n']})" for k, v in ref.items())
    return name


_NON_METRIC_COLUMNS = ("model", "model_id", "input", "timeline", "judge")


def per_model_metrics(leaderboard: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{model: {metric: value}}`` from the leaderboard, one MLflow run per model.

    Every numeric column is a metric: overall r5 / r3 / s / mg with their interval bounds,
    counts (n_items, n_judged, n_invalid, n_failed, n_videos), coverage, sampling spread and the
    per-dimension / per-task means (``r5_<group>``, ``mg_<group>``) when present. Missing (NaN)
    values are left out.
    """
    cols = [c for c in leaderboard.columns if c not in _NON_METRIC_COLUMNS
            and pd.api.types.is_numeric_dtype(leaderboard[c])
            and not pd.api.types.is_bool_dtype(leaderboard[c])]
    out: dict[str, dict[str, float]] = {}
    for _, row in leaderboard.iterrows():
        out[str(row["model"])] = {c: float(row[c]) for c in cols
                                  if pd.notna(row[c]) and np.isfinite(float(row[c]))}
    return out


def plot(board: pd.DataFrame, *, title: str = "E-VAds evaluation"):
    """Grouped bars of R5 / R3 / S / MG per model with their 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(board) + 2), 3.8))
    width = 0.8 / len(SCORE_KINDS)
    x = np.arange(len(board))
    for j, k in enumerate(SCORE_KINDS):
        vals = board[k].to_numpy(dtype=float)
        lo = np.clip(vals - board[f"{k}_ci_low"].to_numpy(dtype=float), 0, None)
        hi = np.clip(board[f"{k}_ci_high"].to_numpy(dtype=float) - vals, 0, None)
        ax.bar(x + (j - 1.5) * width, np.nan_to_num(vals), width, label=k.upper(),
               yerr=np.nan_to_num(np.vstack([lo, hi])), capsize=2)
    ax.set_xticks(x, board["model"].tolist(), rotation=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean score")
    ax.set_title(title)
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    return fig
