from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import dag, task

from kedro.framework.session import KedroSession
from kedro.framework.project import configure_project

# Kedro settings required to run your pipeline
env = "airflow"
pipeline_name = "density"
project_path = Path.cwd()
package_name = "evads_kedro"
conf_source = "" or Path.cwd() / "conf"


def _run_kedro_node(node_names=None, namespaces=None):
    """Run a Kedro pipeline slice. Pass node_names for regular node groups or namespaces for namespace groups."""
    configure_project(package_name)
    with KedroSession.create(project_path=project_path, env=env, conf_source=conf_source) as session:
        if namespaces is not None:
            session.run(pipeline_names=[pipeline_name], namespaces=namespaces)
        else:
            session.run(pipeline_names=[pipeline_name], node_names=node_names)


@dag(
    dag_id="evads-kedro",
    start_date=datetime(2023,1,1),
    max_active_runs=3,
    schedule="@once",
    catchup=False,
    default_args=dict(
        owner="airflow",
        depends_on_past=False,
        email_on_failure=False,
        email_on_retry=False,
        retries=1,
        retry_delay=timedelta(minutes=5)
    ),
)
def evads_kedro():

    @task(task_id="released-text-density")
    def released_text_density():
        _run_kedro_node(node_names=["released_text_density"])

    @task(task_id="samples-text-density")
    def samples_text_density():
        _run_kedro_node(node_names=["samples_text_density"])

    @task(task_id="visual-density-per-video")
    def visual_density_per_video():
        _run_kedro_node(node_names=["visual_density_per_video"])

    @task(task_id="merge-video-density")
    def merge_video_density():
        _run_kedro_node(node_names=["merge_video_density"])

    @task(task_id="density-table")
    def density_table():
        _run_kedro_node(node_names=["density_table"])

    @task(task_id="density-plots")
    def density_plots():
        _run_kedro_node(node_names=["density_plots"])

    @task(task_id="density-report")
    def density_report():
        _run_kedro_node(node_names=["density_report"])

    tasks = {
        "released-text-density": released_text_density(),
        "samples-text-density": samples_text_density(),
        "visual-density-per-video": visual_density_per_video(),
        "merge-video-density": merge_video_density(),
        "density-table": density_table(),
        "density-plots": density_plots(),
        "density-report": density_report(),
    }
    tasks["released-text-density"] >> tasks["merge-video-density"]
    tasks["samples-text-density"] >> tasks["merge-video-density"]
    tasks["visual-density-per-video"] >> tasks["merge-video-density"]
    tasks["merge-video-density"] >> tasks["density-table"]
    tasks["density-table"] >> tasks["density-plots"]
    tasks["merge-video-density"] >> tasks["density-plots"]
    tasks["density-table"] >> tasks["density-report"]


evads_kedro()