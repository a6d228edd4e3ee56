"""Aggregation math on hand-made judgements: per task / dimension / category, counts, intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evads_kedro.pipelines.evaluation import report as rep
from evads_kedro.pipelines.evaluation.nodes import _norm_category
from evads_kedro.scoring import all_scores

DIM = {"BP": "perception", "CM": "perception", "ML": "cognition", "CI": "cognition",
       "RC": "cognition"}


def items(rows):
    """rows: (model, video, category, task, status, r5[, sample])"""
    out = []
    for r in rows:
        model, video, cat, task, status, r5 = r[:6]
        sample = r[6] if len(r) > 6 else 0
        s = all_scores(r5) if status == "ok" else {}
        out.append({"model": model, "question_id": f"q{video}{task}", "video_id": video,
                    "sample_index": sample, "task": task, "dimension_slug": DIM[task],
                    "category_slug": cat, "judge_status": status,
                    "r5": s.get("r5", np.nan), "r3": s.get("r3", np.nan),
                    "s": s.get("s", np.nan), "mg": s.get("mg", np.nan)})
    return pd.DataFrame(out)


ROWS = [
    ("m", "v1", "apparel", "BP", "ok", 1.0),
    ("m", "v1", "apparel", "CM", "ok", 0.75),
    ("m", "v1", "apparel", "ML", "ok", 0.25),
    ("m", "v1", "apparel", "CI", "invalid", None),
    ("m", "v1", "apparel", "RC", "ok", 0.5),
    ("m", "v2", "beauty", "BP", "ok", 0.0),
    ("m", "v2", "beauty", "CM", "skipped", None),
    ("m", "v2", "beauty", "ML", "ok", 1.0),
    ("m", "v2", "beauty", "CI", "ok", 0.75),
    ("m", "v2", "beauty", "RC", "failed", None),
]


def test_overall_task_dimension_category_means_and_counts():
    t = rep.breakdown(items(ROWS), n_boot=0).set_index(["grouping", "group"])
    o = t.loc[("overall", "all")]
    # judged R5: 1, .75, .25, .5, 0, 1, .75  -> R3: 1, .5, 0, .5, 0, 1, .5 ; S: 1,0,0,0,0,1,0
    assert (o.n_items, o.n_judged, o.n_invalid, o.n_failed) == (10, 7, 1, 2)
    assert o.coverage == pytest.approx(0.7)
    assert o.r5 == pytest.approx(4.25 / 7)
    assert o.r3 == pytest.approx(3.5 / 7)
    assert o.s == pytest.approx(2 / 7)
    mg = [(1 + 1 + 1) / 3, (0 + .5 + .75) / 3, (0 + 0 + .25) / 3, (0 + .5 + .5) / 3, 0, 1,
          (0 + .5 + .75) / 3]
    assert o.mg == pytest.approx(np.mean(mg))
    assert t.loc[("task", "BP")].r5 == pytest.approx(0.5)
    assert t.loc[("task", "ML")].r3 == pytest.approx(0.5)          # (0 + 1) / 2
    assert t.loc[("task", "CI")].n_judged == 1 and t.loc[("task", "CI")].n_invalid == 1
    assert t.loc[("task", "RC")].n_failed == 1
    per = t.loc[("dimension", "perception")]
    assert (per.n_items, per.n_judged, per.r5) == (4, 3, pytest.approx(1.75 / 3))
    cog = t.loc[("dimension", "cognition")]
    assert cog.r5 == pytest.approx((0.25 + 0.5 + 1.0 + 0.75) / 4)
    assert t.loc[("category", "apparel")].r5 == pytest.approx(2.5 / 4)
    assert t.loc[("category", "beauty")].s == pytest.approx(1 / 3)
    assert list(t.xs("task", level=0).index) == ["BP", "CM", "ML", "CI", "RC"]
    assert o.n_videos == 2


def test_group_with_nothing_judged_is_nan_not_zero():
    t = rep.breakdown(items([("m", "v1", "apparel", "BP", "invalid", None),
                             ("m", "v1", "apparel", "CM", "ok", 1.0)]), n_boot=0)
    bp = t[(t.grouping == "task") & (t.group == "BP")].iloc[0]
    assert np.isnan(bp.r5) and bp.n_invalid == 1 and bp.n_judged == 0


def test_video_clustered_interval():
    # two videos, all questions of a video agree: the interval spans the two video means
    rows = [("m", "a", "apparel", t, "ok", 1.0) for t in DIM] + \
           [("m", "b", "apparel", t, "ok", 0.0) for t in DIM]
    o = rep.breakdown(items(rows), n_boot=2000, seed=1).iloc[0]
    assert o.r5 == 0.5 and o.r5_ci_low == 0.0 and o.r5_ci_high == 1.0
    # an item-level bootstrap would have been much narrower; check the helper directly
    lo, hi = rep.cluster_bootstrap_ci(np.array([1.0] * 5 + [0.0] * 5),
                                      np.array(["a"] * 5 + ["b"] * 5), n_boot=500)
    assert (lo, hi) == (0.0, 1.0)
    lo, hi = rep.cluster_bootstrap_ci(np.array([1.0] * 5 + [0.0] * 5), np.arange(10),
                                      n_boot=500)
    assert 0.1 <= lo < 0.5 < hi <= 0.9


def test_sample_spread():
    rows = [("m", "v1", "apparel", "BP", "ok", 1.0, 0), ("m", "v1", "apparel", "BP", "ok", 0.5, 1),
            ("m", "v1", "apparel", "CM", "ok", 0.5, 0), ("m", "v1", "apparel", "CM", "ok", 0.5, 1)]
    o = rep.breakdown(items(rows), n_boot=0).iloc[0]
    assert o.sample_sd_r5 == pytest.approx(np.std([0.75, 0.5], ddof=1))
    assert o.within_question_sd_r5 == pytest.approx(np.mean([np.std([1, .5], ddof=1), 0.0]))


def test_leaderboard_markdown_and_metrics():
    rows = ROWS + [(m2[0].replace("m", "n"),) + m2[1:5] + (1.0 if m2[4] == "ok" else None,)
                   for m2 in ROWS]
    t = rep.breakdown(items(rows), n_boot=100)
    models = pd.DataFrame({"model": ["m", "n"], "model_id": ["openai:a", "local:b"],
                           "input": ["asr_only", "full"]})
    board = rep.leaderboard(t, models)
    assert board["model"].tolist() == ["n", "m"]  # sorted by MG
    assert board.set_index("model").at["n", "r5_BP"] == 1.0
    assert {"r5_perception", "mg_cognition", "r5_RC"} <= set(board.columns)
    md = rep.markdown_report(board, t, judge={"model_id": "local:x", "smoke_test": True},
                             task_report={"permutation_rate": 0.95, "changed_by_assignment": 3},
                             subset={"n_questions": 10, "n_videos": 2, "splits": ["rl"]})
    assert "Smoke-test judge" in md and "| n |" in md and "invalid" in md
    mets = rep.metrics(t, {"permutation_rate": 0.95})
    assert mets["m.r5"]["value"] == pytest.approx(4.25 / 7)
    assert mets["m.task.BP.r5"]["value"] == pytest.approx(0.5)
    assert mets["m.n_invalid"]["value"] == 1.0
    assert mets["task_classifier.permutation_rate"]["value"] == 0.95
    import re
    assert all(re.fullmatch(r"[A-Za-z0-9_./ -]+", k) for k in mets)  # legal MLflow keys
    fig = rep.plot(board)
    assert len(fig.axes[0].patches) == 2 * 4


def test_released_category_labels_are_normalised():
    assert _norm_category("母婴玩具 & 宠物") == "baby_pet"
    assert _norm_category("食品生鲜 & 医药保健") == "food_health"
    assert _norm_category("服饰鞋包") == "apparel"
    assert _norm_category(None) == "unknown"
