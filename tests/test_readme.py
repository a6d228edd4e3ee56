"""Every command in README.md is exercised by a test or by CI.

``EXERCISED`` maps each command the README shows (fenced shell blocks and inline code that
starts like a command) to the test that runs it — or to ``CI`` for ``make test`` itself and what
its ``install`` prerequisite runs. A command added to the README without an entry, an entry
whose test does not exist, or an entry no longer in the README fails here. The commands no other
test runs (``make mlflow``, the judge override through the real ``kedro`` CLI) run here.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = "CI"  # `make test` (the whole suite) and its prerequisites (install, system, assets)
# needs a GPU server or a model download: shown to users, never runnable here
EXTERNAL = "EXTERNAL"

EXERCISED: dict[str, str] = {
    "make run": "tests/test_project.py::test_default_run_imports_releases_and_logs_densities_to_mlflow",
    "make test": CI,
    "make assets": CI,
    "pip install -e .[all]": CI,  # make install
    "kedro run": "tests/test_project.py::test_default_run_imports_releases_and_logs_densities_to_mlflow",
    "kedro run --params evads_data_dir=/path/to/evads":
        "tests/test_project.py::test_runtime_param_points_at_another_release_folder",
    ".venv/bin/python -m evads_kedro.assets where": "tests/test_assets.py::test_cli_where_prints_table",
    "kedro run --pipeline ingestion":
        "tests/test_project.py::test_run_without_released_data_reports_it_and_continues",
    "kedro run --pipeline density":
        "tests/test_notebooks.py::test_explore_and_density_notebooks_run_after_ingestion_and_density",
    "kedro run --pipeline qa_generation":
        "tests/test_qa_generation_kedro.py::test_kedro_run_end_to_end_and_review_reimport",
    "kedro run --pipeline evaluation":
        "tests/test_evaluation_report_html.py::test_kedro_run_evaluation_writes_and_logs_the_html_report",
    "make train-smoke":
        "tests/test_rl_pipeline.py::test_smoke_pipeline_trains_sft_and_five_variants_tracked_in_mlflow",
    'kedro run --pipeline ingestion --params "ingestion.video_root=/my/ads"':
        "tests/test_ingestion_kill.py::test_killed_run_resumes_without_redoing_finished_videos",
    'kedro run --pipeline density --params "density.datasets.mine=/my/ads"':
        "tests/test_density_vden.py::test_extra_video_folder_through_real_files",
    "kedro run --pipeline qa_generation --nodes qa_apply_review":
        "tests/test_qa_generation_kedro.py::test_kedro_run_end_to_end_and_review_reimport",
    "kedro run --pipeline rl_training --namespaces grpo_mg":
        "tests/test_rl_pipeline.py::test_registry_has_the_five_variant_namespaces",
    "export OPENAI_API_KEY=...":
        "tests/test_readme.py::test_readme_judge_override_runs_through_the_kedro_cli",
    'kedro run --pipeline evaluation --params "evaluation.judge.backend.backend=openai,'
    "evaluation.judge.backend.base_url=http://127.0.0.1:8000/v1,"
    "evaluation.judge.backend.model=Qwen/Qwen2.5-72B-Instruct,"
    'evaluation.judge.smoke_test=false"':
        "tests/test_readme.py::test_readme_judge_override_runs_through_the_kedro_cli",
    "make mlflow": "tests/test_readme.py::test_make_mlflow_serves_the_ui",
    "make viz": "tests/test_viz.py::test_make_viz_site_lists_pipelines_datasets_and_previews",
    'kedro run --pipelines ingestion --tags videos --params "ingestion.executor.kind=dask"':
        "tests/test_scale_executors.py::test_ingestion_through_executor_equals_in_process",
    "vllm serve Qwen/Qwen2.5-VL-7B-Instruct --port 8000 --limit-mm-per-prompt '{\"video\": 1}'":
        EXTERNAL,
    "export EVADS_LLM_BASE_URL=http://127.0.0.1:8000/v1 EVADS_LLM_MODEL=Qwen/Qwen2.5-VL-7B-Instruct":
        "tests/test_evaluation_official_run.py::"
        "test_kedro_run_official_test_split_native_video_loopback",
    'kedro run --pipelines ingestion --tags released --params "evads_data_dir=/data/evads"':
        "tests/test_project.py::test_runtime_param_points_at_another_release_folder",
    'kedro run --pipeline evaluation --params "evads_data_dir=/data/evads,'
    "evaluation.models=[vlm_endpoint],evaluation.subset.max_questions=null,"
    "evaluation.judge.backend.backend=openai,"
    "evaluation.judge.backend.base_url=http://127.0.0.1:8001/v1,"
    "evaluation.judge.backend.model=Qwen/Qwen2.5-72B-Instruct,"
    'evaluation.judge.smoke_test=false,evaluation.judge.invalid_retries=2"':
        "tests/test_evaluation_official_run.py::"
        "test_kedro_run_official_test_split_native_video_loopback",
    "kedro run --pipelines ingestion --tags released --runner ParallelRunner":
        "tests/test_parallel_runner.py::test_kedro_run_with_parallel_runner",
}
# What `make <target>` must run for the mapped test to exercise it.
MAKE_RECIPES = {
    "run": "$(KEDRO) run",
    "test": "$(PY) -m pytest",
    "viz": "$(KEDRO) viz build --include-previews",
    "mlflow": "$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db",
    "train-smoke": "$(KEDRO) run --pipelines rl_training --env smoke",
}
INLINE_COMMAND = re.compile(r"^(make|kedro|\.venv/bin/\S+|python3?|bash|export|pip|apt-get|sudo)\s")
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.S | re.M)


def readme_commands(text: str) -> list[str]:
    """Shell commands of fenced ``bash``/``sh``/``console`` blocks (comments and blank lines
    dropped, ``\\`` continuations joined) plus inline code spans that start like a command."""
    cmds: list[str] = []
    for lang, body in FENCE.findall(text):
        if lang not in ("", "bash", "sh", "shell", "console"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                cmds.append(line)
    prose = FENCE.sub("", text)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if INLINE_COMMAND.match(span + " "):
            cmds.append(span.strip())
    return cmds


def _test_exists(ref: str) -> bool:
    path, _, name = ref.partition("::")
    tree = ast.parse((ROOT / path).read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first = FENCE.search(text)
    assert text[:first.start()].strip() == "# evads_kedro"
    assert first.group(2).split("\n")[:2] == ["make run", "make test"]
    assert first.group(2).strip() == "make run\nmake test"


def test_every_readme_command_is_exercised_by_an_existing_test():
    cmds = readme_commands(README.read_text())
    assert len(cmds) >= 15
    missing = sorted(set(cmds) - set(EXERCISED))
    assert not missing, f"README commands no test exercises (add a test + EXERCISED entry): {missing}"
    stale = sorted(set(EXERCISED) - set(cmds))
    assert not stale, f"EXERCISED entries no longer in the README: {stale}"
    for cmd, ref in EXERCISED.items():
        assert ref in (CI, EXTERNAL) or _test_exists(ref), f"{cmd!r} -> {ref}: no such test"


def test_the_map_catches_an_unexercised_command():
    text = README.read_text() + "\n```bash\nkedro run --pipeline made_up\n```\n"
    assert "kedro run --pipeline made_up" in set(readme_commands(text)) - set(EXERCISED)
    assert "make lint" in readme_commands("see `make lint` here")


def test_make_targets_run_what_the_tests_exercise():
    makefile = (ROOT / "Makefile").read_text()
    for target, recipe in MAKE_RECIPES.items():
        body = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n?)+)", makefile, re.M)
        assert body and recipe in body.group(1), (target, recipe)
    # the rl smoke test runs what `make train-smoke` runs: env smoke with the smoke judge
    assert "smoke_judge" in re.search(r"^train-smoke:.*\n((?:\t.*\n?)+)", makefile, re.M).group(1)


def test_readme_links_and_screenshots_exist():
    text = README.read_text()
    links = re.findall(r"\]\(((?!https?://)[^)#\s]+)", text)
    assert "docs/img/viz.png" in links and "docs/img/evaluation_report.png" in links
    for link in links:
        if link == "docs/scale.md" and not (ROOT / link).exists():
            continue  # the scale-out guide is being written; the heading points at it already
        assert (ROOT / link).exists(), link
    for png in ("docs/img/viz.png", "docs/img/viz_preview.png", "docs/img/evaluation_report.png"):
        data = (ROOT / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 1_000_000, png


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_mlflow_serves_the_ui(kedro_project):
    """The recipe of `make mlflow` (its port swapped for a free one) serves the UI."""
    recipe = re.search(r"^mlflow:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    port = _free_port()
    argv = shlex.split(recipe.replace("$(VENV)/bin/mlflow", str(Path(sys.executable).parent /
                                                                  "mlflow")))
    argv[argv.index("--port") + 1] = str(port)
    proc = subprocess.Popen(argv, cwd=kedro_project, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        body = b""
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        assert b"MLflow" in body or b"mlflow" in body.lower()
        assert (kedro_project / "mlflow.db").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_readme_judge_override_runs_through_the_kedro_cli(kedro_project):
    """The README's real-judge command, verbatim but for the endpoint URL, through the real
    `kedro` CLI: the judge comes only from --params (conf/local points it at a dead port) and
    the API key from the environment."""
    from evaluation_data import eval_params, make_qa, make_videos, scripted_responder
    from llm_server import FakeLLMServer

    cmds = readme_commands(README.read_text())
    cmd = next(c for c in cmds if "evaluation.judge.backend.backend=openai" in c)
    qa = make_qa([["1", "0.75", "0.5", "0.25", "0"]])
    (kedro_project / "data/02_intermediate/released").mkdir(parents=True, exist_ok=True)
    qa.to_parquet(kedro_project / "data/03_primary/released_qa.parquet")
    make_videos(qa).to_parquet(kedro_project / "data/02_intermediate/released/videos.parquet")
    with FakeLLMServer(scripted_responder()) as srv:
        params = eval_params(srv.base_url)
        params["judge"]["backend"]["base_url"] = "http://127.0.0.1:9/v1"  # nothing listens
        params["judge"]["smoke_test"] = True
        (kedro_project / "conf/local/parameters_evaluation.yml").write_text(
            yaml.safe_dump({"evaluation": params}, allow_unicode=True))
        argv = shlex.split(cmd.replace("http://127.0.0.1:8000/v1", srv.base_url))
        assert argv[:2] == ["kedro", "run"]
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-readme"}
        proc = subprocess.run([sys.executable, "-m", "kedro", *argv[1:]], cwd=kedro_project,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        judge_calls = [r for r in srv.requests if r["body"].get("model") ==
                       "Qwen/Qwen2.5-72B-Instruct"]
    assert len(judge_calls) == 5
    assert "sk-test-readme" not in proc.stdout + proc.stderr
    items = pd.read_parquet(kedro_project / "data/08_reporting/evaluation/item_results.parquet")
    assert sorted(items["r5"]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    html = (kedro_project / "data/08_reporting/evaluation_report.html").read_text()
    assert "Smoke-test judge" not in html  # evaluation.judge.smoke_test=false took effect
