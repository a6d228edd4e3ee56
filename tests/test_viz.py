"""kedro-viz static site as ``make viz`` builds it: the five pipelines with all their datasets,
and every plot / table dataset previewable — also through kedro-mlflow's artifact wrapper —
with real previews once the evaluation pipeline has produced its outputs."""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from evads_kedro.pipeline_registry import PIPELINE_NAMES

ROOT = Path(__file__).resolve().parents[1]


def make_viz_command() -> list[str]:
    """The recipe of ``make viz`` with ``$(KEDRO)`` as this interpreter's ``-m kedro``."""
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^viz:.*\n\t(.+)$", text, re.M).group(1)
    assert recipe.startswith("$(KEDRO) viz build"), recipe
    return [sys.executable, "-m", "kedro"] + shlex.split(recipe)[1:]


def _expected_preview(ds) -> str | None:
    """The preview kind a dataset must show in kedro-viz (None: not a plot/table dataset)."""
    from kedro_datasets.json import JSONDataset
    from kedro_datasets.matplotlib import MatplotlibDataset
    from kedro_datasets.pandas import CSVDataset, ParquetDataset

    from evads_kedro.datasets.previews import PreviewableTextDataset

    for cls, kind in ((MatplotlibDataset, "ImagePreview"), (CSVDataset, "TablePreview"),
                      (ParquetDataset, "TablePreview"), (JSONDataset, "JSONPreview"),
                      (PreviewableTextDataset, "HTMLPreview")):
        if isinstance(ds, cls):
            return kind
    return None


def _catalog(project):
    from kedro.framework.session import KedroSession

    with KedroSession.create(project_path=project) as session:
        return session.load_context().catalog


@pytest.mark.slow
def test_make_viz_site_lists_pipelines_datasets_and_previews(kedro_project):
    from evads_kedro.pipeline_registry import register_pipelines
    from test_evaluation_report_html import run_evaluation_on_loopback

    run_evaluation_on_loopback(kedro_project)
    proc = subprocess.run(make_viz_command(), cwd=kedro_project, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    api = kedro_project / "build/api"
    assert (kedro_project / "build/index.html").is_file()
    main = json.loads((api / "main").read_text())
    assert {p["id"] for p in main["pipelines"]} >= set(PIPELINE_NAMES) | {"__default__"}
    assert "circular" not in proc.stdout + proc.stderr  # layers are acyclic

    pipelines = register_pipelines()
    catalog = _catalog(kedro_project)
    data_nodes: dict[str, dict] = {}
    for name in PIPELINE_NAMES:
        site = json.loads((api / "pipelines" / name).read_text())
        shown = {n["name"]: n for n in site["nodes"] if n["type"] == "data"}
        expected = {d for d in pipelines[name].datasets()
                    if not d.startswith("params:") and d != "parameters"}
        assert expected <= set(shown), (name, expected - set(shown))
        tasks = [n["name"] for n in site["nodes"] if n["type"] == "task"]
        # kedro-viz shows a namespaced node (grpo_mg.train_grpo) by its short name
        assert sorted(tasks) == sorted(n.name.split(".")[-1] for n in pipelines[name].nodes)
        data_nodes.update(shown)

    kinds: dict[str, str] = {}
    for name, node in data_nodes.items():
        ds = catalog.get(name)
        kind = _expected_preview(ds)
        viz = (getattr(ds, "metadata", None) or {}).get("kedro-viz") or {}
        if kind is None or viz.get("preview") is False:
            continue
        meta = json.loads((api / "nodes" / node["id"]).read_text())
        assert meta["preview_type"] == kind, (name, meta.get("preview_type"))
        if node.get("layer") == "reporting" and kind == "TablePreview":
            assert viz.get("preview_args") == {"nrows": 20}, name
        kinds[name] = kind
    plots = {n for n, k in kinds.items() if k == "ImagePreview"}
    assert {"density_comparison_plot", "density_distribution_plot", "density_category_plot",
            "evaluation_plot", "rl_reward_curves"} <= plots
    assert sum(k == "TablePreview" for k in kinds.values()) >= 20

    def preview(name):
        return json.loads((api / "nodes" / data_nodes[name]["id"]).read_text())["preview"]

    # real previews of what the run produced, through MlflowArtifactDataset
    assert base64.b64decode(preview("evaluation_plot"))[:8] == b"\x89PNG\r\n\x1a\n"
    board = preview("evaluation_leaderboard")
    assert "model" in board["columns"] and {r[0] for r in board["data"]} == {"endpoint", "second"}
    assert len(preview("evaluation_item_results")["data"]) == 20  # preview_args nrows: 20
    report = preview("evaluation_report_html")
    assert "<h1>E-VAds evaluation report</h1>" in report and "&lt;script&gt;" in report
    assert "permutation_rate" in json.dumps(preview("evaluation_task_report"))
    # the Markdown leaderboard previews as its text (kedro-viz renders the Markdown)
    md = preview("evaluation_leaderboard_md")
    assert md.startswith("#") and "endpoint" in md and "second" in md
