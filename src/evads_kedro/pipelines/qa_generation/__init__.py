"""The ``qa_generation`` pipeline."""

from evads_kedro.pipelines.qa_generation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
