"""The ``rl_training`` pipeline (and its variant comparison, built on the evaluation pipeline)."""

from evads_kedro.pipelines.rl_training.pipeline import create_comparison, create_pipeline

__all__ = ["create_comparison", "create_pipeline"]
