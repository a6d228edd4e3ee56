"""One nested MLflow run per training stage, written from the stage node's record.

A training node (``rl_training.train_sft`` / ``train_grpo``) returns a plain record::

    {"enabled": bool, "experiment": "evads-grpo", "run_name": "grpo_mg",
     "tags": {...}, "params": {nested}, "metrics": {final scalars},
     "history": [{"step": 1, "reward": ..., "kl": ...}, ...],
     "artifacts": {"adapter": "/path/to/folder"}}

``save`` creates a run named ``run_name`` in ``experiment`` (created or restored if needed),
nested under the active MLflow run (kedro-mlflow's run of the pipeline: tag
``mlflow.parentRunId`` and ``evads.kedro_run_id``), logs the flattened params (``evads.a.b``),
every history row as metrics at its step, the final metrics, and each artifact folder; the run
ends FINISHED (FAILED if logging raised). It uses :class:`mlflow.MlflowClient` only, so the
globally active run never changes. ``enabled: false`` (MLflow off, or a rank other than 0)
saves nothing.

Artifact folders are logged at save time: list this dataset *before* the adapter's
``FolderDataset`` in the node's outputs (the latter removes the node's scratch folder once
copied; Kedro saves a node's outputs in order).

``load`` returns ``{"run_id", "run_name", "tags", "metrics"}`` of the latest run tagged with
this entry's ``run_name``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from evads_kedro.datasets.mlflow_runs import PARENT_TAG, sanitize_metric_name

logger = logging.getLogger(__name__)

STAGE_TAG = "evads.stage_run"
_BATCH = 1000  # MLflow's metrics-per-batch limit


def flatten_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"evads": {"lora": {"r": 8}}}`` -> ``{"evads.lora.r": "8"}`` (values cut to 250 chars)."""
    flat: dict[str, str] = {}
    for k, v in values.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            flat.update(flatten_params(v, key))
        else:
            flat[key] = str(v)[:250]
    return flat


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


class MlflowStageRunDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A training stage's nested MLflow run (see module docstring).

    Args:
        run_name: expected ``run_name`` of saved records (used by ``load``); optional.
        tracking_uri: MLflow tracking URI (default: the globally configured one).
    """

    def __init__(self, run_name: str | None = None, tracking_uri: str | None = None,
                 metadata: dict[str, Any] | None = None):
        self._run_name = run_name
        self._tracking_uri = tracking_uri
        self.metadata = metadata

    def _client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self._tracking_uri)

    @staticmethod
    def _experiment_id(client, name: str) -> str:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            return client.create_experiment(name)
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def _save(self, data: dict[str, Any]) -> None:
        import mlflow
        from mlflow.entities import Metric, Param, RunStatus

        if not isinstance(data, Mapping) or "run_name" not in data:
            raise DatasetError("expected a stage-run record with run_name, tags, params, "
                               f"metrics, history, artifacts; got {type(data).__name__}")
        if not data.get("enabled", True):
            return
        client = self._client()
        tags = {STAGE_TAG: str(data["run_name"]), **{k: str(v) for k, v in
                                                    (data.get("tags") or {}).items()}}
        parent = mlflow.active_run()
        if parent is not None:
            tags[PARENT_TAG] = parent.info.run_id
            tags["evads.kedro_run_id"] = parent.info.run_id
        exp_id = self._experiment_id(client, str(data.get("experiment") or "evads-grpo"))
        run_id = client.create_run(exp_id, run_name=str(data["run_name"]), tags=tags).info.run_id
        try:
            ts = int(time.time() * 1000)
            metrics = [Metric(sanitize_metric_name(k), float(v), ts, int(row["step"]))
                       for row in data.get("history") or []
                       for k, v in row.items() if k != "step" and _finite(v)]
            last = max([int(r["step"]) for r in data.get("history") or []], default=0)
            metrics += [Metric(sanitize_metric_name(k), float(v), ts, last)
                        for k, v in (data.get("metrics") or {}).items() if _finite(v)]
            params = [Param(k, v) for k, v in flatten_params(data.get("params") or {}).items()]
            for i in range(0, len(params), 100):
                client.log_batch(run_id, params=params[i:i + 100])
            for i in range(0, len(metrics), _BATCH):
                client.log_batch(run_id, metrics=metrics[i:i + _BATCH])
            for name, folder in (data.get("artifacts") or {}).items():
                if folder and Path(folder).is_dir():
                    client.log_artifacts(run_id, str(folder), str(name))
                else:
                    logger.warning("stage run %s: artifact folder %s (%s) is gone; list the "
                                   "stage-run dataset before the folder dataset in the node's "
                                   "outputs", data["run_name"], folder, name)
        except Exception:
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        client.set_terminated(run_id)

    def _load(self) -> dict[str, Any]:
        client = self._client()
        exp_ids = [e.experiment_id for e in client.search_experiments()]
        flt = f"tags.`{STAGE_TAG}` = '{self._run_name}'" if self._run_name \
            else f"tags.`{STAGE_TAG}` != ''"
        runs = client.search_runs(exp_ids, filter_string=flt,
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise DatasetError(f"no MLflow stage run {self._run_name!r}: run the stage first")
        r = runs[0]
        return {"run_id": r.info.run_id, "run_name": r.info.run_name, "tags": dict(r.data.tags),
                "metrics": dict(r.data.metrics)}

    def _describe(self) -> dict[str, Any]:
        return {"run_name": self._run_name, "tracking_uri": self._tracking_uri}
