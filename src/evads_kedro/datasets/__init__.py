"""Custom Kedro datasets, only where kedro-datasets has none."""

from evads_kedro.datasets.frames import FramesDataset
from evads_kedro.datasets.optional_parquet import OptionalParquetDataset

__all__ = ["FramesDataset", "OptionalParquetDataset"]
