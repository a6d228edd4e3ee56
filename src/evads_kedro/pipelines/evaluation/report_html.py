"""Self-contained HTML report of an evaluation run (one file: inline CSS, inline SVG charts).

Contract: :func:`html_report` is a pure function of the tables ``aggregate_results`` already
produces (leaderboard, long breakdown, per-item results) and returns one HTML string that
references nothing outside itself (no scripts, no fonts, no ``http(s)://`` src/href), so it
can be mailed, attached to an MLflow run or opened from disk. Every text that comes from data
(model names, questions, answers, references, judge replies) is HTML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from html import escape
from typing import Any

import pandas as pd

from evads_kedro.scoring import SCORE_KINDS
from evads_kedro.taxonomy import TASK_CODES

# Colour-blind-safe palette (Okabe-Ito), one colour per model in leaderboard order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")

CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",sans-serif;
margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{font-size:1.25em;margin-top:32px;
border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:.9em}
.banner{background:#fff4e5;border:1px solid #f0b35b;padding:8px 12px;border-radius:4px}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{max-width:380px;white-space:pre-wrap;word-break:break-word}
.ci{color:#777;font-size:.85em}.bad{color:#b00020}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.charts{display:flex;flex-wrap:wrap;gap:24px}
""".replace("\n", "")


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _fmt(x: Any, digits: int = 3) -> str:
    v = _num(x)
    return "–" if math.isnan(v) else f"{v:.{digits}f}"


def _score_cell(row: pd.Series, kind: str) -> str:
    lo, hi = _num(row.get(f"{kind}_ci_low")), _num(row.get(f"{kind}_ci_high"))
    ci = "" if math.isnan(lo) else f' <span class="ci">[{lo:.2f}, {hi:.2f}]</span>'
    return f'<td class="num">{_fmt(row.get(kind))}{ci}</td>'


def _leaderboard_table(board: pd.DataFrame) -> str:
    head = ("<tr><th>#</th><th>model</th><th>input</th><th>items</th><th>judged</th>"
            "<th>invalid</th><th>failed</th><th>coverage</th>"
            + "".join(f"<th>{k.upper()} [95 % CI]</th>" for k in SCORE_KINDS) + "</tr>")
    rows = []
    for i, (_, r) in enumerate(board.iterrows(), 1):
        bad_inv = ' bad' if _num(r.get("n_invalid")) > 0 else ""
        bad_fail = ' bad' if _num(r.get("n_failed")) > 0 else ""
        rows.append(
            f"<tr><td class=\"num\">{i}</td><td><b>{escape(str(r['model']))}</b><br>"
            f"<span class=\"ci\">{escape(str(r.get('model_id', '')))}</span></td>"
            f"<td>{escape(str(r.get('input', '')))}</td>"
            f"<td class=\"num\">{_fmt(r.get('n_items'), 0)}</td>"
            f"<td class=\"num\">{_fmt(r.get('n_judged'), 0)}</td>"
            f"<td class=\"num{bad_inv}\">{_fmt(r.get('n_invalid'), 0)}</td>"
            f"<td class=\"num{bad_fail}\">{_fmt(r.get('n_failed'), 0)}</td>"
            f"<td class=\"num\">{_fmt(r.get('coverage'), 2)}</td>"
            + "".join(_score_cell(r, k) for k in SCORE_KINDS) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _legend(models: list[str]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(m)}</span>'
        for i, m in enumerate(models)) + "</div>"


def bar_chart_svg(table: pd.DataFrame, models: list[str], groups: list[str], *,
                  kind: str = "r5", title: str = "") -> str:
    """Horizontal grouped bars (one per model and group) of ``kind`` on [0, 1] with the 95 %
    interval as a whisker; a group with no judged item shows ``n/a``. Inline SVG string."""
    bar_h, gap, left, width, top = 11, 10, 110, 300, 26
    n_models = max(1, len(models))
    block = n_models * bar_h + gap
    height = top + block * max(1, len(groups)) + 24
    idx = table.set_index(["group", "model"])
    out = [f'<svg width="{left + width + 60}" '
           f'height="{height}" role="img" aria-label="{escape(title)}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="0" y="14" font-weight="bold" font-size="12">{escape(title)}</text>']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x = left + t * width
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 20}" '
                   'stroke="#e3e3e3"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" '
                   f'fill="#555">{t:g}</text>')
    for gi, g in enumerate(groups):
        y0 = top + gi * block
        out.append(f'<text x="{left - 6}" y="{y0 + n_models * bar_h / 2 + 4:.1f}" '
                   f'text-anchor="end">{escape(str(g))}</text>')
        for mi, m in enumerate(models):
            y = y0 + mi * bar_h
            colour = PALETTE[mi % len(PALETTE)]
            row = idx.loc[(g, m)] if (g, m) in idx.index else None
            v = _num(row[kind]) if row is not None else math.nan
            label = f"{escape(m)} · {escape(str(g))}"
            if math.isnan(v):
                out.append(f'<text x="{left + 3}" y="{y + bar_h - 2}" fill="#999" '
                           f'font-size="9">n/a<title>{label}: no judged item</title></text>')
                continue
            out.append(f'<rect x="{left}" y="{y + 1}" width="{v * width:.1f}" '
                       f'height="{bar_h - 2}" fill="{colour}"><title>{label}: {kind.upper()} '
                       f'{v:.3f} (n={_fmt(row["n_judged"], 0)})</title></rect>')
            lo, hi = _num(row[f"{kind}_ci_low"]), _num(row[f"{kind}_ci_high"])
            if not (math.isnan(lo) or math.isnan(hi)) and hi > lo:
                cy = y + bar_h / 2
                out.append(f'<line x1="{left + lo * width:.1f}" y1="{cy:.1f}" '
                           f'x2="{left + hi * width:.1f}" y2="{cy:.1f}" stroke="#333"/>')
            out.append(f'<text x="{left + v * width + 4:.1f}" y="{y + bar_h - 2}" '
                       f'font-size="9" fill="#333">{v:.2f}</text>')
    out.append("</svg>")
    return "".join(out)


def _group_order(sub: pd.DataFrame, grouping: str) -> list[str]:
    present = list(dict.fromkeys(sub["group"].astype(str)))
    if grouping == "task":
        return [t for t in TASK_CODES if t in present] + [g for g in present
                                                          if g not in TASK_CODES]
    if grouping == "dimension":
        return [d for d in ("perception", "cognition") if d in present] + [
            g for g in present if g not in ("perception", "cognition")]
    return sorted(present)


def _group_table(sub: pd.DataFrame, models: list[str], groups: list[str]) -> str:
    idx = sub.set_index(["group", "model"])
    head = "<tr><th>model</th>" + "".join(f"<th>{escape(g)}</th>" for g in groups) + "</tr>"
    rows = []
    for m in models:
        cells = []
        for g in groups:
            if (g, m) not in idx.index:
                cells.append('<td class="num">–</td>')
                continue
            r = idx.loc[(g, m)]
            extra = ""
            if _num(r["n_invalid"]) > 0 or _num(r["n_failed"]) > 0:
                extra = (f' <span class="bad">({_fmt(r["n_invalid"], 0)} inv, '
                         f'{_fmt(r["n_failed"], 0)} fail)</span>')
            cells.append(f'<td class="num">{_fmt(r["r5"])} / {_fmt(r["mg"])} '
                         f'<span class="ci">n={_fmt(r["n_judged"], 0)}</span>{extra}</td>')
        rows.append(f"<tr><td>{escape(m)}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _worst_items(items: pd.DataFrame, models: list[str], n: int) -> str:
    parts = []
    for m in models:
        sub = items[items["model"] == m].copy()
        if sub.empty:
            continue
        # judged items by ascending score first, then the unscored (invalid / failed) ones
        sub["_r5"] = pd.to_numeric(sub["r5"], errors="coerce")
        sub = sub.sort_values(["_r5", "question_id"], na_position="last", kind="stable").head(n)
        rows = []
        for _, r in sub.iterrows():
            score = (_fmt(r["_r5"], 2) if not math.isnan(_num(r["_r5"]))
                     else f'<span class="bad">{escape(str(r.get("judge_status")))}</span>')
            reply = r.get("judge_raw_reply")
            reply = "" if reply is None or (isinstance(reply, float) and math.isnan(reply)) \
                else f'<br><span class="ci">judge: {escape(str(reply))[:300]}</span>'
            rows.append(
                f"<tr><td>{escape(str(r.get('task', '')))}<br><span class=\"ci\">"
                f"{escape(str(r.get('video_id', '')))}</span></td>"
                f"<td class=\"text\">{escape(str(r.get('question', '')))}</td>"
                f"<td class=\"text\">{escape(_text(r.get('answer')))}</td>"
                f"<td class=\"text\">{escape(_text(r.get('reference_answer')))}</td>"
                f"<td class=\"num\">{score}{reply}</td></tr>")
        parts.append(
            f"<h3>{escape(m)}</h3><table><tr><th>task</th><th>question</th>"
            "<th>model's answer</th><th>reference</th><th>judge R5</th></tr>"
            + "".join(rows) + "</table>")
    return "".join(parts)


def _text(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x)


def _judge_check_section(summary: Mapping[str, Any] | None) -> list[str]:
    """The "Judge check" section: the probe battery's figures per judge (judge_probes.py), a
    warning banner for each judge below the floor, and κ between judges."""
    out = ["<h2>Judge check</h2>"]
    if not summary or not summary.get("judges"):
        return out + ['<p class="meta">Not run (<code>evaluation.judge_probes.enabled</code> '
                      "is false): no measurement of whether the judge discriminates.</p>"]
    floor = summary.get("floor") or {}
    for name, fig in summary["judges"].items():
        if fig.get("flagged"):
            out.append(f'<p class="banner"><b>Judge <code>{escape(str(name))}</code> is below '
                       "the floor</b>: " + escape("; ".join(fig.get("reasons") or [])) +
                       ". Its scores on this run should not be trusted.</p>")
    kinds = list(next(iter(summary["judges"].values()))["mean_r5_by_probe"])
    head = ("<tr><th>judge</th>" + "".join(f"<th>mean R5: {escape(k)}</th>" for k in kinds) +
            "<th>AUC ref vs swapped</th><th>Spearman</th><th>invalid</th>"
            "<th>repeat agreement</th><th>prompt agreement</th><th>verdict</th></tr>")
    body = []
    for name, fig in summary["judges"].items():
        verdict = ('<span class="bad">below floor</span>' if fig.get("flagged") else "ok")
        cells = "".join(f'<td class="num">{_fmt(fig["mean_r5_by_probe"].get(k), 2)}</td>'
                        for k in kinds)
        body.append(f"<tr><td>{escape(str(name))}</td>{cells}"
                    f'<td class="num">{_fmt(fig.get("auc_reference_vs_swapped"), 2)}</td>'
                    f'<td class="num">{_fmt(fig.get("spearman"), 2)}</td>'
                    f'<td class="num">{_fmt(fig.get("invalid_rate"), 2)}</td>'
                    f'<td class="num">{_fmt(fig.get("repeat_agreement"), 2)}</td>'
                    f'<td class="num">{_fmt(fig.get("prompt_agreement"), 2)}</td>'
                    f"<td>{verdict}</td></tr>")
    out.append("<table>" + head + "".join(body) + "</table>")
    if summary.get("kappa"):
        out.append('<p class="meta">Cohen\'s κ between judges (unweighted, 5 levels): ' +
                   ", ".join(f"{escape(k)} {_fmt(v, 2)}" for k, v in summary["kappa"].items())
                   + "</p>")
    out.append(f'<p class="meta">{escape(str(summary.get("data", "")))}, '
               f'{_fmt(summary.get("probes"), 0)} probes whose right score is known: '
               "reference 1.0, half the key points 0.5, a fabricated quote 0.25, another "
               "video's answer 0, empty 0. Floor: AUC ≥ "
               f'{_fmt(floor.get("auc_reference_vs_swapped"), 2)}, Spearman ≥ '
               f'{_fmt(floor.get("spearman"), 2)}, invalid ≤ '
               f'{_fmt(floor.get("max_invalid_rate"), 2)}.</p>')
    return out


def html_report(leaderboard: pd.DataFrame, breakdown: pd.DataFrame, items: pd.DataFrame, *,
                smoke_test: bool = False, worst_n: int = 5,
                title: str = "E-VAds evaluation report",
                judge_check: Mapping[str, Any] | None = None) -> str:
    """One self-contained HTML page: leaderboard (R5/R3/S/MG with 95 % intervals and
    invalid/failed counts), per-dimension/task/category charts and tables, the ``worst_n``
    lowest-scored items per model with question, answer, reference and judge score, and the
    judge check (``judge_check``: the probe battery's summary, when given)."""
    models = [str(m) for m in leaderboard["model"]]
    models += [str(m) for m in dict.fromkeys(breakdown["model"]) if str(m) not in models]
    judge = str(leaderboard["judge"].iloc[0]) if "judge" in leaderboard and len(leaderboard) \
        else "unknown"
    n_q = items["question_id"].nunique() if "question_id" in items else 0
    n_v = items["video_id"].nunique() if "video_id" in items else 0
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             f'<p class="meta">Judge: <code>{escape(judge)}</code> · {n_q} questions from '
             f"{n_v} videos · {len(models)} models · means over judged items, 95 % intervals "
             "from a video-level bootstrap</p>"]
    if smoke_test:
        parts.append('<p class="banner"><b>Smoke-test judge</b>: the judge above is not a '
                     "capable grader (a tiny local model or a text-overlap stand-in); the numbers "
                     "only show that the pipeline works end to end. Point "
                     "<code>evaluation.judge.backend</code> at a capable judge for a real "
                     "evaluation.</p>")
    parts += ["<h2>Leaderboard</h2>", _leaderboard_table(leaderboard),
              '<p class="meta">invalid: the judge never gave a legal score; failed: a '
              "generation or judge call failed (or its answer did). Both are excluded from the "
              "means and shown here.</p>"]
    bd = breakdown.copy()
    bd["group"] = bd["group"].astype(str)
    bd["model"] = bd["model"].astype(str)
    for grouping in ("task", "dimension", "category"):
        sub = bd[bd["grouping"] == grouping]
        if sub.empty:
            continue
        groups = _group_order(sub, grouping)
        parts += [f"<h2>Per {grouping}</h2>", _legend(models), '<div class="charts">',
                  bar_chart_svg(sub, models, groups, kind="r5", title=f"R5 per {grouping}"),
                  bar_chart_svg(sub, models, groups, kind="mg", title=f"MG per {grouping}"),
                  "</div>", "<p class=\"meta\">R5 / MG per group (n = judged items)</p>",
                  _group_table(sub, models, groups)]
    if judge_check is not None:
        parts += _judge_check_section(judge_check)
    parts += [f"<h2>Worst items per model (lowest {worst_n})</h2>",
              _worst_items(items, models, worst_n),
              '<p class="meta">R5 = judge score in {0, 0.25, 0.5, 0.75, 1}; R3 maps 0.75→0.5 '
              "and 0.25→0; S = 1 iff R5 = 1; MG = (S + R3 + R5) / 3.</p></body></html>"]
    # one line: kedro-viz's preview converts newlines to <br> (Markdown) before rendering
    return "".join(parts)


def evaluation_html_report(item_results: pd.DataFrame, breakdown: pd.DataFrame,
                           leaderboard: pd.DataFrame, judge: Mapping[str, Any] | None,
                           report: Mapping[str, Any] | None,
                           judge_check: Mapping[str, Any] | None = None) -> str:
    """Kedro node: :func:`html_report` from ``aggregate_results``' tables,
    ``params:evaluation.judge`` (``smoke_test``), ``params:evaluation.report``
    (``worst_items``, default 5) and the judge check's summary (``evaluation_judge_check``)."""
    judge = dict(judge or {})
    rp = dict(report or {})
    return html_report(leaderboard, breakdown, item_results,
                       smoke_test=bool(judge.get("smoke_test", False)),
                       worst_n=int(rp.get("worst_items", 5)), judge_check=judge_check)
