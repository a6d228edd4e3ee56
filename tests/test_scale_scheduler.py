"""Running the pipelines under a scheduler: ``kedro airflow create`` (kedro-airflow, a dev extra)
turns a registered pipeline into an Airflow DAG with one task per node."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from evads_kedro.pipeline_registry import register_pipelines

pytest.importorskip("kedro_airflow", reason="kedro-airflow (dev extra) not installed")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("pipeline", ["density", "ingestion"])
def test_kedro_airflow_generates_a_dag_naming_every_node(kedro_project, tmp_path, pipeline):
    out = tmp_path / "dags"
    proc = subprocess.run(
        [sys.executable, "-m", "kedro", "airflow", "create", "--pipelines", pipeline,
         "--env", "airflow", "--target-dir", str(out)],
        cwd=kedro_project, capture_output=True, text=True, timeout=280,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    dag = (out / f"evads_kedro_airflow_{pipeline}_dag.py").read_text()
    compile(dag, "dag.py", "exec")  # valid Python (importing it needs Airflow itself)
    nodes = {n.name for n in register_pipelines()[pipeline].nodes}
    called = set(re.findall(r'node_names=\["([^"]+)"\]', dag))
    assert called == nodes
    assert f'pipeline_name = "{pipeline}"' in dag and 'env = "airflow"' in dag
    # the DAG's edges are the pipeline's node-to-node dependencies (task ids: - for _)
    edges = set(re.findall(r'tasks\["([^"]+)"\] >> tasks\["([^"]+)"\]', dag))
    assert edges == _dependencies(pipeline) and edges


def _dependencies(pipeline: str) -> set[tuple[str, str]]:
    p = register_pipelines()[pipeline]
    producer = {out: n.name for n in p.nodes for out in n.outputs}
    return {(producer[i].replace("_", "-"), n.name.replace("_", "-"))
            for n in p.nodes for i in n.inputs if i in producer}


def test_committed_example_dag_matches_the_density_pipeline():
    from evads_kedro.paths import project_root

    dag = (project_root() / "docs/scheduler/evads_kedro_airflow_density_dag.py").read_text()
    called = set(re.findall(r'node_names=\["([^"]+)"\]', dag))
    assert called == {n.name for n in register_pipelines()["density"].nodes}
