"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evads_kedro.paths import RL_FILE, SFT_FILE, find_evads_data_dir
from project_copy import enter_project, make_project

pytest_plugins = ["fixtures_videos"]


@pytest.fixture(scope="session")
def evads_data_dir() -> Path:
    """Directory with the released parquets ($EVADS_DATA_DIR, else <repo>/../shared/evads);
    skips the test when they are not available."""
    found = find_evads_data_dir()
    if found is None:
        pytest.skip(
            "released E-VAds parquets not found: set EVADS_DATA_DIR or put them in "
            "<repo>/../shared/evads"
        )
    missing = [name for name in (SFT_FILE, RL_FILE) if not (found / name).is_file()]
    if missing:
        pytest.skip(f"{found} lacks {missing}; set EVADS_DATA_DIR to the release folder")
    return found


@pytest.fixture(autouse=True, scope="session")
def _offline_environment():
    """No hub lookups (they hang ~50 s before failing) and no telemetry in tests."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    yield


@pytest.fixture
def kedro_project(tmp_path, monkeypatch):
    """A throw-away copy of this Kedro project (conf + pyproject) with its own data/ and MLflow.

    The package itself is the installed one; relative catalog paths resolve inside tmp_path, and
    MLflow writes to a sqlite store there, so a test run never touches the developer's data.
    """
    project = make_project(tmp_path)
    data_dir = find_evads_data_dir()
    enter_project(monkeypatch, project, data_dir or tmp_path / "no-release")
    yield project
    # kedro-mlflow leaves its run open after an in-process session.run; the next session in
    # this process would log into it.
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(autouse=True)
def _isolate_mlflow_globals():
    """After every test: no MLflow run left open and no experiment left active.

    In-process Kedro sessions (kedro-mlflow) and tests leave both behind as module globals (and
    ``MLFLOW_EXPERIMENT_ID``); a later test on another tracking store would log into a run or an
    experiment id that does not exist there."""
    yield
    import sys

    if "mlflow" not in sys.modules:  # nothing to reset, and no import cost
        return
    import mlflow
    import mlflow.tracking.fluent as fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


# ------------------------------------------------------- the slowest files start first
# Under `make test` (pytest-xdist, whole files per worker) the first files are dealt to the two
# workers in turn, the rest on demand. The slowest file goes first to one worker and the other
# slow files alternate with light ones, so they land on the other worker and neither ends alone
# on a long file. Only the order changes: every test still runs.
SLOW_FILES_FIRST = (
    "test_qa_generation_local.py", "reliability/test_rel_kill.py", "test_ingestion_e2e.py",
    "test_notebooks.py", "test_evaluation_official_run.py", "test_rl_pipeline.py",
    "test_scale_executors.py", "test_asr.py", "test_ingestion_pipeline.py", "test_readme.py",
)


def _slow_rank(path: str) -> int | None:
    return next((i for i, name in enumerate(SLOW_FILES_FIRST) if path.endswith(name)), None)


def pytest_collection_modifyitems(session, config, items) -> None:
    by_file: dict[str, list] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    slow = sorted((f for f in by_file if _slow_rank(f) is not None), key=_slow_rank)
    light = [f for f in by_file if _slow_rank(f) is None]
    order = slow[:1]
    rest = slow[1:]
    while rest or light:  # slow files on the odd places: dealt to the other worker
        if rest:
            order.append(rest.pop(0))
        if light:
            order.append(light.pop(0))
    items[:] = [item for f in order for item in by_file[f]]


# ----------------------------------------------- pytest-xdist: one reliability table
# The controller collects nothing, so tests/reliability/conftest.py is never loaded there: the
# workers send their outcomes (``workeroutput``) and the table is drawn here, once.
_XDIST_OUTCOMES: dict = {}
_XDIST_EXPECTED: list = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    text = getattr(node, "workeroutput", {}).get("evads_reliability")
    if text:
        from reliability.rel_table import merge_json

        merge_json(text, _XDIST_OUTCOMES, _XDIST_EXPECTED)


def pytest_unconfigure(config) -> None:
    if _XDIST_OUTCOMES or _XDIST_EXPECTED:
        import sys

        from reliability.rel_table import report_lines

        sys.stdout.write("\n".join(report_lines(_XDIST_OUTCOMES, _XDIST_EXPECTED)) + "\n")
        sys.stdout.flush()
