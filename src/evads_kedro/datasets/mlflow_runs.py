"""One nested MLflow run per model under test, so models are comparable in the MLflow UI.

``save({model: {metric: value}})`` creates, under the active MLflow run (kedro-mlflow's run of
the pipeline; without one, a fresh top-level parent run), one child run per model named
``eval:<model>`` with tags ``evads.model`` / ``evads.kind=evaluation`` and the model's metrics.
Runs are made with :class:`mlflow.MlflowClient` and the ``mlflow.parentRunId`` tag, so the
globally active run is never changed. Metric names are sanitised for MLflow (alphanumerics and
``_ - . / space``); non-finite values are skipped (MLflow charts cannot show them).

``load()`` returns ``{model: {metric: value}}`` from the child runs of the most recent parent
(latest run per model).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from kedro.io import AbstractDataset, DatasetError

KIND_TAG = "evads.kind"
MODEL_TAG = "evads.model"
PARENT_TAG = "mlflow.parentRunId"
_BAD_METRIC_CHARS = re.compile(r"[^0-9A-Za-z_\-./ ]")


def sanitize_metric_name(name: str) -> str:
    """MLflow metric keys allow alphanumerics, underscores, dashes, periods, slashes, spaces."""
    return _BAD_METRIC_CHARS.sub("_", str(name)) or "_"


class MlflowPerModelRunsDataset(AbstractDataset[dict[str, dict[str, float]],
                                                dict[str, dict[str, float]]]):
    """Per-model nested MLflow runs (see module docstring).

    Args:
        kind: value of the ``evads.kind`` tag (also used to find runs on load).
        run_name_prefix: child run name is ``<prefix><model>``.
        parent_run_name: name of the top-level run created when no MLflow run is active.
        experiment_name: experiment for that top-level run (default: MLflow's current one).
        tracking_uri: MLflow tracking URI (default: the globally configured one).
        children_in_experiment: put the child runs in ``experiment_name`` even under an
            active run of another experiment (rl_training's variants: ``evads-grpo``).
    """

    def __init__(self, kind: str = "evaluation", run_name_prefix: str = "eval:",
                 parent_run_name: str = "evaluation", experiment_name: str | None = None,
                 tracking_uri: str | None = None, metadata: dict[str, Any] | None = None,
                 children_in_experiment: bool = False):
        self._kind = kind
        self._prefix = run_name_prefix
        self._parent_run_name = parent_run_name
        self._experiment_name = experiment_name
        self._tracking_uri = tracking_uri
        self._children_in_experiment = bool(children_in_experiment and experiment_name)
        self.metadata = metadata

    def _client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self._tracking_uri)

    def _experiment_id(self, client) -> str:
        import mlflow

        if self._experiment_name:
            exp = client.get_experiment_by_name(self._experiment_name)
            return exp.experiment_id if exp else client.create_experiment(self._experiment_name)
        try:  # honours mlflow.set_experiment / MLFLOW_EXPERIMENT_NAME|ID
            from mlflow.tracking.fluent import _get_experiment_id

            return _get_experiment_id() or "0"
        except Exception:  # private API moved: fall back to the default experiment
            return mlflow.get_experiment_by_name("Default").experiment_id

    def _save(self, data: dict[str, dict[str, float]]) -> None:
        import mlflow
        from mlflow.entities import Metric, RunStatus

        if not isinstance(data, dict):
            raise DatasetError(f"expected {{model: {{metric: value}}}}, got {type(data).__name__}")
        client = self._client()
        active = mlflow.active_run()
        own_parent = active is None
        if own_parent:
            exp_id = self._experiment_id(client)
            parent_id = client.create_run(exp_id, run_name=self._parent_run_name,
                                          tags={KIND_TAG: self._kind}).info.run_id
        else:
            exp_id, parent_id = active.info.experiment_id, active.info.run_id
            if self._children_in_experiment:
                exp_id = self._experiment_id(client)
        try:
            for model, values in data.items():
                child = client.create_run(
                    exp_id, run_name=f"{self._prefix}{model}",
                    tags={PARENT_TAG: parent_id, MODEL_TAG: str(model), KIND_TAG: self._kind})
                ts = int(time.time() * 1000)
                metrics = [Metric(sanitize_metric_name(k), float(v), ts, 0)
                           for k, v in (values or {}).items()
                           if v is not None and math.isfinite(float(v))]
                try:
                    for i in range(0, len(metrics), 1000):  # MLflow batch limit
                        client.log_batch(child.info.run_id, metrics=metrics[i:i + 1000])
                except Exception:
                    client.set_terminated(child.info.run_id, RunStatus.to_string(RunStatus.FAILED))
                    raise
                client.set_terminated(child.info.run_id)
        finally:
            if own_parent:
                client.set_terminated(parent_id)

    def _load(self) -> dict[str, dict[str, float]]:
        client = self._client()
        exp_ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            exp_ids, filter_string=f"tags.`{KIND_TAG}` = '{self._kind}'",
            order_by=["attributes.start_time DESC"], max_results=5000)
        children = [r for r in runs if MODEL_TAG in r.data.tags and PARENT_TAG in r.data.tags]
        if not children:
            raise DatasetError(f"no MLflow runs tagged {KIND_TAG}={self._kind!r} with "
                               f"{MODEL_TAG}; save this dataset (run the pipeline) first")
        parent = children[0].data.tags[PARENT_TAG]
        out: dict[str, dict[str, float]] = {}
        for r in children:  # newest first: keep the latest run per model
            if r.data.tags[PARENT_TAG] == parent:
                out.setdefault(r.data.tags[MODEL_TAG], dict(r.data.metrics))
        return out

    def _describe(self) -> dict[str, Any]:
        return {"kind": self._kind, "run_name_prefix": self._prefix,
                "experiment_name": self._experiment_name, "tracking_uri": self._tracking_uri}
