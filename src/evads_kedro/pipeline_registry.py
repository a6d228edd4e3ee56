"""Register the five E-VAds pipelines by name, ``rl_compare`` (re-score trained RL variants)
and ``__default__``."""

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
    }
    # rl_training's variant comparison is a rewired copy of the evaluation pipeline: it is
    # handed over here, so neither pipeline imports the other
    pipelines["rl_training"] = rl_training.create_pipeline(evaluation=pipelines["evaluation"])
    pipelines["rl_compare"] = rl_training.create_comparison(pipelines["evaluation"])
    pipelines["__default__"] = pipelines["ingestion"] + pipelines["density"]
    return pipelines
