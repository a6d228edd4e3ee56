"""``density``: A_den / O_den (and V_den) per video, per dataset, against the paper's table."""

from kedro.pipeline import Node, Pipeline

from evads_kedro.pipelines.density import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.text_density_per_video,
                inputs=["released_timelines", "released_videos", "released_qa"],
                outputs="video_density",
                name="text_density_per_video",
            ),
            Node(
                nodes.density_table,
                inputs=["video_density", "params:density"],
                outputs="density_table",
                name="density_table",
            ),
            Node(
                nodes.density_report,
                inputs="density_table",
                outputs=["density_table_md", "density_metrics"],
                name="density_report",
            ),
        ]
    )
