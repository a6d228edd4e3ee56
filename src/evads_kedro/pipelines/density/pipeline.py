"""``density``: V_den / A_den / O_den per video and per dataset, against the paper's table.

Inputs from ingestion: ``released_*`` (released splits), ``ingested_videos`` and
``video_timelines`` (the project's videos) and ``frames`` (their 1 fps frame stacks; an empty
folder loads as no videos). ``density_embedding_cache`` and ``density_embeddings`` are the same
folder: cached embeddings in, newly computed ones out.

Each node takes the narrowest parameter block it reads; ``visual_density_per_video`` reads
almost every key of ``density`` (encoder, vden, executor, sampling, folders), so it takes the
block.
"""

from kedro.pipeline import Node, Pipeline

from evads_kedro.pipelines.density import nodes, plots


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.text_density_per_video,
                inputs=["released_timelines", "released_videos", "released_qa"],
                outputs="released_text_density",
                name="released_text_density",
            ),
            Node(
                nodes.samples_text_density,
                inputs=["video_timelines", "ingested_videos", "params:density.samples_dataset",
                        "params:density.samples_video_root"],
                outputs="samples_text_density",
                name="samples_text_density",
            ),
            Node(
                nodes.visual_density_per_video,
                inputs=["frames", "ingested_videos", "released_videos",
                        "density_embedding_cache", "params:density"],
                outputs=["density_embeddings", "video_visual_density"],
                name="visual_density_per_video",
            ),
            Node(
                nodes.merge_video_density,
                inputs=["released_text_density", "samples_text_density", "video_visual_density"],
                outputs="video_density",
                name="merge_video_density",
            ),
            Node(
                nodes.density_table,
                inputs=["video_density", "params:density.paper_reference"],
                outputs="density_table",
                name="density_table",
            ),
            Node(
                nodes.density_report,
                inputs="density_table",
                outputs=["density_table_md", "density_metrics"],
                name="density_report",
            ),
            Node(
                plots.density_plots,
                inputs=["video_density", "density_table"],
                outputs=["density_comparison_plot", "density_distribution_plot",
                         "density_category_plot"],
                name="density_plots",
            ),
        ]
    )
