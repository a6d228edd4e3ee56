"""kedro-mlflow's ``MlflowArtifactDataset`` made picklable, so ``--runner ParallelRunner`` works.

kedro-mlflow wraps a dataset by building, per catalog entry, a subclass of the wrapped dataset's
class inside ``MlflowArtifactDataset.__new__``. Instances of such a local class cannot be
pickled, and Kedro's ParallelRunner refuses any catalog with an unpicklable dataset
("datasets cannot be used with multiprocessing"). This wrapper builds exactly the same object
and teaches its class to pickle as "rebuild from the catalog arguments, then restore the
instance state" (run id, artifact path, logging flag, the wrapped dataset's attributes).

Catalog entries use it in place of kedro-mlflow's class, with the same arguments::

    type: evads_kedro.datasets.mlflow_artifact.MlflowArtifactDataset
    artifact_path: density
    dataset: {type: pandas.CSVDataset, filepath: data/08_reporting/density_table.csv}
"""

from __future__ import annotations

import copy
from typing import Any

from kedro_mlflow.io.artifacts import MlflowArtifactDataset as _KedroMlflowArtifactDataset


def _rebuild(args: tuple[Any, ...]) -> Any:
    return MlflowArtifactDataset(*args)


def _reduce(self) -> tuple[Any, ...]:
    return (_rebuild, (type(self)._evads_args,), dict(self.__dict__))


class MlflowArtifactDataset(_KedroMlflowArtifactDataset):
    """Same behaviour as ``kedro_mlflow.io.artifacts.MlflowArtifactDataset``, picklable."""

    def __new__(cls, dataset: str | dict, run_id: str | None = None,
                artifact_path: str | None = None, credentials: dict[str, Any] | None = None,
                metadata: dict[str, Any] | None = None):
        args = (copy.deepcopy(dataset), run_id, artifact_path, credentials, metadata)
        obj = _KedroMlflowArtifactDataset.__new__(_KedroMlflowArtifactDataset, dataset, run_id,
                                                  artifact_path, credentials, metadata)
        # the class was made for this one instance (kedro-mlflow builds one per entry)
        klass = type(obj)
        klass._evads_args = args
        klass.__reduce__ = _reduce
        return obj
