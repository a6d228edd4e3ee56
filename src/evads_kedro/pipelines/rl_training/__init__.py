"""The ``rl_training`` pipeline."""

from evads_kedro.pipelines.rl_training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
