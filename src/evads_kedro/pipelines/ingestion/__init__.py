"""The ``ingestion`` pipeline."""

from evads_kedro.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
