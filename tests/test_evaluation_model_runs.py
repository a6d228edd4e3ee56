"""One nested MLflow run per model under test (``evaluation_model_runs``) and the leaderboard →
``{model: {metric: value}}`` node function."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError

from evads_kedro.datasets.mlflow_runs import MlflowPerModelRunsDataset, sanitize_metric_name
from evads_kedro.pipelines.evaluation.report import per_model_metrics

METRICS = {"endpoint": {"r5": 0.75, "mg": 0.6, "n_invalid": 2.0, "r5 (CM)!": 0.5},
           "tiny_local": {"r5": 0.1, "mg": float("nan"), "n_items": 10.0}}


@pytest.fixture
def tracking(tmp_path):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/m.db")
    yield mlflow
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _children(mlflow, parent_id):
    client = mlflow.MlflowClient()
    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return {r.data.tags["evads.model"]: r for r in runs}


def test_save_creates_one_child_run_per_model_under_the_active_run(tracking):
    mlflow = tracking
    ds = MlflowPerModelRunsDataset()
    with mlflow.start_run(run_name="evaluation") as parent:
        ds.save(METRICS)
        assert mlflow.active_run().info.run_id == parent.info.run_id  # global run untouched
    children = _children(mlflow, parent.info.run_id)
    assert set(children) == {"endpoint", "tiny_local"}
    ep = children["endpoint"]
    assert ep.info.run_name == "eval:endpoint"
    assert ep.info.experiment_id == parent.info.experiment_id
    assert ep.info.status == "FINISHED"
    assert ep.data.tags["evads.kind"] == "evaluation"
    assert ep.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert ep.data.metrics == {"r5": 0.75, "mg": 0.6, "n_invalid": 2.0, "r5 _CM__": 0.5}
    assert children["tiny_local"].data.metrics == {"r5": 0.1, "n_items": 10.0}  # NaN skipped

    loaded = ds.load()
    assert loaded == {"endpoint": ep.data.metrics, "tiny_local": {"r5": 0.1, "n_items": 10.0}}


def test_without_an_active_run_a_top_level_parent_is_created(tracking):
    mlflow = tracking
    ds = MlflowPerModelRunsDataset()
    ds.save({"a": {"r5": 1.0}})
    assert mlflow.active_run() is None
    ds.save({"a": {"r5": 0.5}, "b": {"r5": 0.25}})  # load: children of the last parent only
    assert ds.load() == {"a": {"r5": 0.5}, "b": {"r5": 0.25}}
    client = mlflow.MlflowClient()
    parents = client.search_runs(["0"], filter_string="tags.`evads.kind` = 'evaluation' "
                                                      "and attributes.run_name = 'evaluation'")
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)


def test_load_before_any_save_raises_clearly(tracking):
    with pytest.raises(DatasetError, match="save this dataset"):
        MlflowPerModelRunsDataset().load()


def test_sanitize_metric_name():
    assert sanitize_metric_name("r5_BP") == "r5_BP"
    assert sanitize_metric_name("a/b c-d.e") == "a/b c-d.e"
    assert sanitize_metric_name("r5:é(x)") == "r5___x_"


def test_per_model_metrics_from_a_hand_made_leaderboard():
    board = pd.DataFrame({
        "model": ["endpoint", "tiny_local"], "model_id": ["m1", "m2"],
        "input": ["asr_only timeline; text", "full timeline; text"], "judge": ["j", "j"],
        "n_items": [10, 10], "n_judged": [7, 0], "n_invalid": [2, 10], "n_failed": [1, 0],
        "coverage": [0.7, 0.0], "r5": [0.64, np.nan], "r3": [0.5, np.nan],
        "s": [3 / 7, np.nan], "mg": [0.52, np.nan], "r5_BP": [1.0, np.nan],
        "mg_perception": [0.8, np.nan]})
    out = per_model_metrics(board)
    assert out == {
        "endpoint": {"n_items": 10.0, "n_judged": 7.0, "n_invalid": 2.0, "n_failed": 1.0,
                     "coverage": 0.7, "r5": 0.64, "r3": 0.5, "s": pytest.approx(3 / 7),
                     "mg": 0.52, "r5_BP": 1.0, "mg_perception": 0.8},
        "tiny_local": {"n_items": 10.0, "n_judged": 0.0, "n_invalid": 10.0, "n_failed": 0.0,
                       "coverage": 0.0}}
    assert all(isinstance(v, float) for m in out.values() for v in m.values())


def test_catalog_entry_and_pipeline_output():
    from pathlib import Path

    import yaml
    from kedro.io import AbstractDataset

    from evads_kedro.paths import project_root
    from evads_kedro.pipelines.evaluation import create_pipeline

    conf = yaml.safe_load(Path(project_root(), "conf/base/catalog_evaluation.yml").read_text())
    entry = conf["evaluation_model_runs"]
    assert entry["type"] == "evads_kedro.datasets.mlflow_runs.MlflowPerModelRunsDataset"
    ds = AbstractDataset.from_config("evaluation_model_runs", entry)
    assert isinstance(ds, MlflowPerModelRunsDataset)
    assert "evaluation_model_runs" in create_pipeline().outputs()
