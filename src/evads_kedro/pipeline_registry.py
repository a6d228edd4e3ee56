"""Register the five E-VAds pipelines by name, plus ``__default__``."""

from kedro.pipeline import Pipeline

PIPELINE_NAMES = ("ingestion", "density", "qa_generation", "evaluation", "rl_training")


def register_pipelines() -> dict[str, Pipeline]:
    """Map each pipeline name to its Pipeline; ``__default__`` chains the main job.

    Pipelines are imported here explicitly (not discovered) so a broken pipeline module fails
    loudly at start-up instead of silently disappearing from the registry.
    """
    from evads_kedro.pipelines import (
        density,
        evaluation,
        ingestion,
        qa_generation,
        rl_training,
    )

    pipelines: dict[str, Pipeline] = {
        "ingestion": ingestion.create_pipeline(),
        "density": density.create_pipeline(),
        "qa_generation": qa_generation.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "rl_training": rl_training.create_pipeline(),
    }
    pipelines["__default__"] = pipelines["ingestion"] + pipelines["density"]
    return pipelines
