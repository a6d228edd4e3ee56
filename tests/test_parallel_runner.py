"""Kedro's ParallelRunner: every catalog dataset pickles (kedro-mlflow's artifact wrapper did
not), and a real ``kedro run --runner ParallelRunner`` logs its artifacts to the MLflow run."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from evads_kedro.datasets.mlflow_artifact import MlflowArtifactDataset


def _catalog(project: Path):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        return session.load_context().catalog


def test_every_catalog_dataset_pickles(kedro_project):
    catalog = _catalog(kedro_project)
    names = list(catalog.keys())
    assert any(n == "density_table" for n in names)
    unpicklable = []
    for name in names:
        try:
            ForkingPickler.dumps(catalog.get(name))
        except Exception as exc:  # noqa: BLE001 - collect them all for the message
            unpicklable.append(f"{name}: {type(exc).__name__}")
    assert unpicklable == []


@pytest.fixture
def own_mlflow(tmp_path):
    """A private sqlite tracking store for the test; the previous URI is restored after."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # not set_experiment: that would leave this store's experiment id active for later tests
    yield mlflow.MlflowClient().create_experiment("pickle-roundtrip")
    mlflow.set_tracking_uri(previous)


def test_round_tripped_artifact_dataset_saves_and_logs(tmp_path, own_mlflow):
    ds = MlflowArtifactDataset(dataset={"type": "pandas.CSVDataset",
                                        "filepath": str(tmp_path / "t.csv")},
                               artifact_path="reports")
    ds._logging_activated = False
    clone = pickle.loads(pickle.dumps(ds))
    assert clone is not ds and clone._logging_activated is False  # state restored
    clone._logging_activated = True
    with mlflow.start_run(experiment_id=own_mlflow) as run:
        clone.save(pd.DataFrame({"a": [1, 2]}))
    assert pd.read_csv(tmp_path / "t.csv")["a"].tolist() == [1, 2]
    logged = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "reports")]
    assert logged == ["reports/t.csv"]


@pytest.mark.slow
def test_kedro_run_with_parallel_runner(kedro_project, evads_data_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    kedro = str(Path(sys.executable).with_name("kedro"))
    proc = subprocess.run([kedro, "run", "--runner", "ParallelRunner", "--pipelines",
                           "ingestion", "--tags", "released"], cwd=kedro_project, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_parquet(kedro_project / "data/03_primary/released_qa.parquet")) > 0
    mlflow.set_tracking_uri(os.environ["EVADS_MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1
    arts = [a.path for a in mlflow.MlflowClient().list_artifacts(runs.run_id[0], "ingestion")]
    assert "ingestion/released_import_errors.csv" in arts
