"""The Kedro project as a user meets it: registry, a real run tracked in MLflow (kedro-viz:
tests/test_viz.py)."""

import pandas as pd
import pytest

from evads_kedro.pipeline_registry import PIPELINE_NAMES, register_pipelines


def test_five_pipelines_and_default_are_registered():
    pipelines = register_pipelines()
    assert set(PIPELINE_NAMES) | {"__default__"} <= set(pipelines)
    assert {"ingestion", "density", "qa_generation", "evaluation", "rl_training"} == set(PIPELINE_NAMES)
    assert len(pipelines["__default__"].nodes) > 0


def _run(project, pipeline_name, **kwargs):
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    configure_project("evads_kedro")
    with KedroSession.create(project_path=project, **kwargs) as session:
        return session.run(pipeline_names=[pipeline_name])


@pytest.mark.slow
@pytest.mark.needs_shared
def test_default_run_imports_releases_and_logs_densities_to_mlflow(kedro_project, evads_data_dir):
    import mlflow

    _run(kedro_project, "__default__")
    table = pd.read_csv(kedro_project / "data/08_reporting/density_table.csv")
    assert {"dataset", "n_videos", "v_den", "a_den", "o_den", "source"} <= set(table.columns)
    measured = table[table.source == "measured"].set_index("dataset")
    # SPEC §3: the unit rule gives ASR ~5.0/s and OCR 17-19/s on the released splits.
    for split in ("evads_sft", "evads_rl"):
        assert 4.6 <= measured.loc[split, "a_den"] <= 5.4
        assert 16.0 <= measured.loc[split, "o_den"] <= 20.0
    assert (table.source == "paper").sum() == 7

    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["evads_kedro"])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["metrics.density.evads_rl.a_den"] == pytest.approx(measured.loc["evads_rl", "a_den"], abs=1e-3)
    assert run["metrics.import.imported"] == 2860
    assert run["params.ingestion.released.video_root"] == "data/01_raw/released_videos"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"], "density")}
    assert "density/density_table.csv" in artifacts


@pytest.mark.slow
def test_run_without_released_data_reports_it_and_continues(kedro_project, monkeypatch):
    monkeypatch.setenv("EVADS_DATA_DIR", str(kedro_project / "nowhere"))
    _run(kedro_project, "ingestion")
    errors = pd.read_csv(kedro_project / "data/08_reporting/released_import_errors.csv")
    assert set(errors["split"]) == {"sft", "rl"}
    assert errors["reason"].str.contains("split file not found").all()


@pytest.mark.slow
def test_runtime_param_points_at_another_release_folder(kedro_project, tmp_path, evads_data_dir):
    other = tmp_path / "other"
    other.mkdir()
    (other / "EVAds_RL.parquet").write_bytes((evads_data_dir / "EVAds_RL.parquet").read_bytes())
    _run(kedro_project, "ingestion", runtime_params={"evads_data_dir": str(other)})
    qa = pd.read_parquet(kedro_project / "data/03_primary/released_qa.parquet")
    assert set(qa["split"]) == {"rl"} and len(qa) == 980
