"""The ``density`` pipeline."""

from evads_kedro.pipelines.density.pipeline import create_pipeline

__all__ = ["create_pipeline"]
