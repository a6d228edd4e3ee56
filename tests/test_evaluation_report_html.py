"""The self-contained HTML evaluation report: content, escaping, no external resources, and
written (and logged to MLflow) by a real ``kedro run --pipeline evaluation`` against a loopback
OpenAI-compatible server."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml

from evads_kedro.pipelines.evaluation import report as rep
from evads_kedro.pipelines.evaluation.nodes import ITEM_COLUMNS
from evads_kedro.pipelines.evaluation.report_html import html_report
from evads_kedro.taxonomy import TASK_CODES
from evaluation_data import eval_params, make_qa, make_videos, scripted_responder
from llm_server import FakeLLMServer, Reply, prompt_text

EVIL = "<script>alert('x')</script>"
DIMS = {"BP": "perception", "CM": "perception", "ML": "cognition", "CI": "cognition",
        "RC": "cognition"}


def _items() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model in ("alpha", "beta<b>"):
        for v in range(3):
            for task in TASK_CODES:
                r5 = float(rng.choice([0, 0.25, 0.5, 0.75, 1]))
                status = "ok"
                if model == "alpha" and v == 2 and task == "RC":
                    status, r5 = "invalid", np.nan
                rows.append({c: None for c in ITEM_COLUMNS} | {
                    "model": model, "model_id": f"id:{model}", "question_id": f"q{v}{task}",
                    "video_id": f"v{v}", "sample_index": 0, "task": task,
                    "category_slug": ["apparel", "beauty", "food_health"][v],
                    "dimension_slug": DIMS[task], "question": f"Q {task} {v} & more",
                    "reference_answer": f"ref {task}",
                    "answer": EVIL if (model == "alpha" and task == "BP") else f"ans {task}",
                    "judge_status": status, "r5": r5,
                    "judge_raw_reply": f"Answer: {r5}"})
    items = pd.DataFrame(rows)
    items["r3"] = items["s"] = items["mg"] = items["r5"]
    return items


def _report(items: pd.DataFrame, **kw) -> str:
    table = rep.breakdown(items, n_boot=50)
    models = pd.DataFrame({"model": ["alpha", "beta<b>"], "model_id": ["id:alpha", "id:beta"],
                           "input": ["asr_only timeline; text"] * 2})
    board = rep.leaderboard(table, models)
    board.insert(3, "judge", "fake-judge")
    return html_report(board, table, items, **kw)


def test_report_lists_every_model_task_group_and_counts():
    html = _report(_items(), worst_n=3)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "alpha" in html and "beta&lt;b&gt;" in html and "beta<b>" not in html
    for task in TASK_CODES:
        assert f">{task}<" in html
    for group in ("perception", "cognition", "apparel", "beauty", "food_health"):
        assert f">{group}<" in html
    assert html.count("<svg") == 6  # R5 and MG charts per task, dimension, category
    # leaderboard row of alpha: 15 items, 14 judged, 1 invalid, 0 failed
    row = re.search(r"<b>alpha</b>.*?</tr>", html, re.S).group(0)
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', row)[:4] == ["15", "14", "1", "0"]
    assert html.count("<h3>") == 2  # worst items of each model
    assert "Smoke-test" not in html


def test_report_escapes_data_and_has_no_external_resources():
    html = _report(_items(), smoke_test=True, worst_n=100)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "Q BP 0 &amp; more" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html
    assert "Smoke-test judge" in html


def test_worst_items_are_the_lowest_scores_then_unscored():
    items = _items()
    html = _report(items, worst_n=100)
    alpha = html.split("<h3>alpha</h3>")[1].split("</table>")[0]
    scores = re.findall(r'<td class="num">([0-9.]+|<span class="bad">\w+</span>)<br>', alpha)
    numeric = [float(s) for s in scores if not s.startswith("<")]
    assert numeric == sorted(numeric) and len(numeric) == 14
    assert scores[-1] == '<span class="bad">invalid</span>'


def _escaping_responder():
    """The scripted server, but the model under test answers video 0's BP with markup."""
    base = scripted_responder()

    def respond(body, n):
        text = prompt_text(body)
        if "Answer to grade" not in text and "[S0]" in text:
            return Reply(f"<answer>{EVIL} token=0</answer>")
        return base(body, n)
    return respond


def run_evaluation_on_loopback(project) -> None:
    """``kedro run --pipeline evaluation`` in ``project`` (a ``kedro_project`` copy) on two
    tiny released-shaped videos, two endpoint models and the judge served on 127.0.0.1."""
    from test_project import _run

    qa = make_qa([["0", "0.75", "0.5", "0.25", "1"], ["1", "1", "bad", "0.5", "0.75"]])
    (project / "data/02_intermediate/released").mkdir(parents=True, exist_ok=True)
    qa.to_parquet(project / "data/03_primary/released_qa.parquet")
    make_videos(qa).to_parquet(project / "data/02_intermediate/released/videos.parquet")
    with FakeLLMServer(_escaping_responder()) as srv:
        params = eval_params(srv.base_url, judge_probes={"enabled": True, "n_questions": 2})
        params["models_under_test"]["second"] = params["models_under_test"]["endpoint"]
        (project / "conf/local/parameters_evaluation.yml").write_text(
            yaml.safe_dump({"evaluation": params}, allow_unicode=True))
        _run(project, "evaluation")


@pytest.mark.slow
def test_kedro_run_evaluation_writes_and_logs_the_html_report(kedro_project):
    import mlflow

    run_evaluation_on_loopback(kedro_project)
    html = (kedro_project / "data/08_reporting/evaluation_report.html").read_text()
    assert "<b>endpoint</b>" in html and "<b>second</b>" in html
    assert "<script" not in html and "&lt;script&gt;" in html
    for task in TASK_CODES:
        assert f">{task}<" in html
    assert "参考答案BP" in html  # the reference answer is shown beside the model's
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["evads_kedro"], output_format="list")
    logged = {a.path for r in runs for a in mlflow.MlflowClient().list_artifacts(
        r.info.run_id, "evaluation")}
    assert "evaluation/evaluation_report.html" in logged
    assert "evaluation/judge_check.json" in logged  # the judge check (judge_probes.py)
    assert "<h2>Judge check</h2>" in html
    metrics = {k for r in runs for k in r.data.metrics}
    assert {"evaluation.judge_check.probes", "evaluation.judge_check.judge.invalid_rate",
            "evaluation.judge_check.judge.flagged"} <= metrics
