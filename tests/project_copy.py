"""A throw-away copy of this Kedro project for tests: conf + pyproject, its own data/ layers,
logs/ and sqlite MLflow store, so a test run never touches the developer's data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evads_kedro.paths import project_root

DATA_LAYERS = ("01_raw/videos", "02_intermediate", "03_primary", "04_feature", "07_model_output",
               "08_reporting")


def make_project(where: Path) -> Path:
    """``where/project``: conf (without ``local``) + pyproject + empty data layers; the package
    itself is the installed one (``src/`` only exists because bootstrap_project wants it)."""
    root = project_root()
    project = where / "project"
    project.mkdir()
    shutil.copy(root / "pyproject.toml", project / "pyproject.toml")
    shutil.copytree(root / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir(exist_ok=True)
    (project / "src").mkdir()
    for layer in DATA_LAYERS:
        (project / "data" / layer).mkdir(parents=True, exist_ok=True)
    (project / "logs").mkdir()
    return project


def enter_project(mp: pytest.MonkeyPatch, project: Path, data_dir: Path) -> None:
    """cwd, MLflow store, logging config and release folder of ``project``."""
    mp.chdir(project)
    mp.setenv("EVADS_MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    mp.setenv("KEDRO_LOGGING_CONFIG", str(project / "conf" / "logging.yml"))
    mp.setenv("EVADS_DATA_DIR", str(data_dir))
