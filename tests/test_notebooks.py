"""The notebooks in notebooks/ run top to bottom on a throw-away project (as CI runs them) and are
committed without outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from evads_kedro.paths import find_evads_data_dir
from test_project import _run

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_explore_dataset", "02_density", "03_compare_grpo_variants"]


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch):
    """A `python3` kernelspec pointing at this interpreter (the venv), found first via
    JUPYTER_PATH, so a user-level kernelspec or a missing one cannot change what runs."""
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager

    prefix = tmp_path / "jupyter-prefix"
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    install(prefix=str(prefix), kernel_name="python3")
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert Path(spec.argv[0]) == Path(sys.executable), spec.argv
    return "python3"


def _execute(name: str, project: Path, kernel_name: str) -> str:
    """Run one notebook with cwd = project; return all its output text (fails on a cell error)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name=kernel_name,
                   resources={"metadata": {"path": str(project)}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
            texts.append(out.get("text", ""))
            data = out.get("data", {})
            texts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(t if isinstance(t, str) else "".join(t) for t in texts)


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_without_outputs(name):
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, name


@pytest.mark.slow
def test_explore_and_density_notebooks_run_after_ingestion_and_density(kedro_project, python3_kernel):
    # The video half sees an empty data/01_raw/videos (a clean run); the released half imports
    # the release when EVADS_DATA_DIR has it.
    _run(kedro_project, "ingestion")
    _run(kedro_project, "density")
    released = find_evads_data_dir() is not None

    text01 = _execute("01_explore_dataset", kedro_project, python3_kernel)
    assert "project: " + str(kedro_project) in text01
    assert "[empty] ingested_videos" in text01  # no sample videos in the copy: says what to run
    if released:
        assert "released video:" in text01 and "QA task " in text01

    text02 = _execute("02_density", kedro_project, python3_kernel)
    assert "cross-benchmark density table:" in text02
    assert "E-VAds (paper)" in text02
    if released:
        assert "evads_rl" in text02


@pytest.mark.slow
def test_compare_grpo_notebook_without_runs_says_what_to_run(kedro_project, python3_kernel):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    mlflow.create_experiment("evads-grpo")  # exists but empty
    text = _execute("03_compare_grpo_variants", kedro_project, python3_kernel)
    assert "NO GRPO RUNS: MLflow experiment 'evads-grpo' has no GRPO variant runs" in text
    assert "make train-smoke" in text


@pytest.mark.slow
def test_notebooks_degrade_on_a_project_with_no_data(kedro_project, python3_kernel):
    for name in NAMES:
        text = _execute(name, kedro_project, python3_kernel)
        assert "run `" in text.lower(), name
