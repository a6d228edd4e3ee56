"""Checkpoint bookkeeping of the training stages: which checkpoint a rerun resumes from, and the
MLflow stage-run dataset that replaces MLflow calls in the nodes (no torch, a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evads_kedro.pipelines.rl_training import checkpoints


def _checkpoint(folder: Path, step: int, state: str | None = "ok") -> Path:
    d = folder / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(b"x")
    if state == "ok":
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    elif state == "torn":
        (d / "trainer_state.json").write_text('{"global_st')
    return d


def test_prepare_resumes_from_the_last_complete_checkpoint_and_drops_torn_ones(tmp_path):
    folder = checkpoints.stage_dir(tmp_path, "grpo_mg")
    fp = {"stage": "grpo_mg", "lr": 1e-3}
    assert checkpoints.prepare(folder, fp) == (None, 0)  # fresh stage
    _checkpoint(folder, 2)
    _checkpoint(folder, 4)
    torn = _checkpoint(folder, 6, "torn")  # killed while writing trainer_state.json
    partial = _checkpoint(folder, 8, None)  # killed before trainer_state.json
    resume, step = checkpoints.prepare(folder, fp)
    assert (resume, step) == (str(folder / "checkpoint-4"), 4)
    assert not torn.exists() and not partial.exists()
    assert (folder / "checkpoint-2").is_dir()


def test_prepare_starts_over_when_the_run_changed(tmp_path, caplog):
    folder = checkpoints.stage_dir(tmp_path, "sft")
    checkpoints.prepare(folder, {"lr": 1e-3})
    _checkpoint(folder, 3)
    assert checkpoints.prepare(folder, {"lr": 1e-3})[1] == 3
    assert checkpoints.prepare(folder, {"lr": 2e-3}) == (None, 0)
    assert "different run" in caplog.text and not (folder / "checkpoint-3").exists()


def test_a_checkpoint_whose_state_names_another_step_is_not_complete(tmp_path):
    d = _checkpoint(tmp_path, 5, None)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    assert checkpoints.checkpoint_step(d) is None
    assert checkpoints.last_complete(tmp_path) is None


def test_checkpoint_args_default_on_and_zero_turns_them_off():
    from evads_kedro.pipelines.rl_training.nodes import checkpoint_args

    assert checkpoint_args({})["save_strategy"] == "steps"
    assert checkpoint_args({"checkpoints": {"every_steps": 7, "keep": 1}}) == {
        "save_strategy": "steps", "save_steps": 7, "save_total_limit": 1,
        "save_only_model": False}
    assert checkpoint_args({"checkpoints": {"every_steps": 0}}) == {"save_strategy": "no"}


def test_step_history_keeps_training_steps_only():
    from evads_kedro.pipelines.rl_training.nodes import step_history

    log = [{"reward": 0.5, "kl": 0.0, "step": 1, "epoch": 0.1},
           {"reward": float("nan"), "step": 2, "loss": 0.1},
           {"train_runtime": 3.0, "train_loss": 0.2, "step": 2}]
    assert step_history(log) == [{"reward": 0.5, "kl": 0.0, "epoch": 0.1, "step": 1},
                                 {"loss": 0.1, "step": 2}]


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri


def test_stage_run_dataset_logs_a_nested_run_with_history_params_and_adapter(tmp_path, tracking):
    import mlflow

    from evads_kedro.datasets.mlflow_stage_run import MlflowStageRunDataset

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    record = {"enabled": True, "experiment": "evads-grpo-test", "run_name": "grpo_mg",
              "tags": {"evads.stage": "grpo", "evads.variant": "mg"},
              "params": {"evads": {"variant": {"w_answer": 0.8}, "lora": {"r": 8}}},
              "metrics": {"heldout.mg": 0.25, "bad": float("nan")},
              "history": [{"step": 1, "reward": 0.1, "kl": 0.0},
                          {"step": 2, "reward": 0.3, "kl": 0.01}],
              "artifacts": {"adapter": str(adapter)}}
    ds = MlflowStageRunDataset(run_name="grpo_mg")
    mlflow.set_experiment("kedro")
    with mlflow.start_run() as parent:
        ds.save(record)
        assert mlflow.active_run().info.run_id == parent.info.run_id  # never switched
    client = mlflow.MlflowClient()
    run = client.get_run(ds.load()["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name == "grpo_mg"
    assert run.data.params["evads.variant.w_answer"] == "0.8"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "reward")] == \
        [(1, 0.1), (2, 0.3)]
    assert run.data.metrics["heldout.mg"] == 0.25 and "bad" not in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id, "adapter")] == \
        ["adapter/adapter_config.json"]


def test_stage_run_dataset_saves_nothing_when_disabled(tracking):
    from kedro.io import DatasetError

    from evads_kedro.datasets.mlflow_stage_run import MlflowStageRunDataset

    ds = MlflowStageRunDataset(run_name="sft")
    ds.save({"enabled": False, "run_name": "sft"})
    with pytest.raises(DatasetError, match="run the stage first"):
        ds.load()
    with pytest.raises(DatasetError, match="stage-run record"):
        ds.save({"history": []})


def test_no_pipeline_module_imports_mlflow():
    """Tracking lives in hooks and catalog datasets only (docs/dev/CONTRACTS.md, issue 15)."""
    import ast

    pipelines = Path(__file__).resolve().parents[1] / "src/evads_kedro/pipelines"
    offenders = []
    for path in pipelines.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "mlflow"]
    assert not offenders, offenders
