"""``ingestion``: released parquets → tidy tables (and, from raw videos, timelines)."""

from kedro.pipeline import Node, Pipeline

from evads_kedro.pipelines.ingestion import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.import_released,
                inputs=["released_sft_raw", "released_rl_raw", "params:ingestion.released"],
                outputs=[
                    "released_videos",
                    "released_timelines",
                    "released_qa",
                    "released_import_errors",
                    "released_import_metrics",
                ],
                name="import_released",
                tags=["released"],
            ),
        ]
    )
