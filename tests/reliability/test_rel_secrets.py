"""API keys: a real ``kedro run --pipelines evaluation`` against an OpenAI-compatible server on
127.0.0.1, the model's key from an environment variable and the judge's key from
``conf/local/credentials.yml``. The server receives both as ``Authorization: Bearer <key>``,
and neither key appears in stdout/stderr, the log files, the MLflow store (sqlite bytes, params,
tags, artifacts) or any file the run wrote. A key put in a parameter file is refused before
anything is logged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_server import FakeLLMServer

TESTS = Path(__file__).resolve().parents[1]
ENV_KEY = "sk-ENVSENTINEL-4d2c9e71b0a8"
CRED_KEY = "sk-CREDSENTINEL-93fa1c07d6e2"


def _files_containing(root: Path, needle: bytes, skip: set[Path]) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p not in skip
            and needle in p.read_bytes()]


def _setup(project: Path, base_url: str) -> None:
    from evaluation_data import eval_params, make_qa, make_videos

    qa = make_qa([["1", "0.5", "0.75", "0.25", "0"]])
    (project / "data/02_intermediate/released").mkdir(parents=True, exist_ok=True)
    qa.to_parquet(project / "data/03_primary/released_qa.parquet")
    make_videos(qa).to_parquet(project / "data/02_intermediate/released/videos.parquet")
    params = eval_params(base_url)
    params["models_under_test"]["endpoint"]["backend"]["api_key_env"] = "OPENAI_API_KEY"
    params["judge"]["backend"]["api_key_env"] = "EVADS_JUDGE_API_KEY"
    params["report"]["bootstrap"] = 20
    (project / "conf/local/parameters_evaluation.yml").write_text(
        yaml.safe_dump({"evaluation": params}, allow_unicode=True), encoding="utf-8")
    (project / "conf/local/credentials.yml").write_text(
        yaml.safe_dump({"llm_api_keys": {"EVADS_JUDGE_API_KEY": CRED_KEY}}), encoding="utf-8")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.kinds("evaluation", "secret: API key from env + credentials.yml")
def test_keys_reach_the_server_and_nowhere_else(kedro_project, outcome):
    from evaluation_data import scripted_responder

    env = {k: v for k, v in os.environ.items() if k != "EVADS_JUDGE_API_KEY"}
    env |= {"OPENAI_API_KEY": ENV_KEY,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))}
    with FakeLLMServer(scripted_responder()) as srv:
        _setup(kedro_project, srv.base_url)
        proc = subprocess.run([sys.executable, "-m", "kedro", "run", "--pipelines", "evaluation"],
                              cwd=kedro_project, env=env, capture_output=True, timeout=600)
        requests = list(srv.requests)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    auth = {}
    for r in requests:
        headers = {k.lower(): v for k, v in r["headers"].items()}
        auth.setdefault(r["body"]["model"], set()).add(headers.get("authorization"))
    assert auth == {"fake-model": {f"Bearer {ENV_KEY}"}, "fake-judge": {f"Bearer {CRED_KEY}"}}

    credentials = kedro_project / "conf/local/credentials.yml"
    leaks: dict[str, list[str]] = {}
    for key in (ENV_KEY, CRED_KEY):
        needle = key.encode()
        # the secret part alone too: a log line might show the key without its prefix
        for n in (needle, needle.split(b"-", 1)[1]):
            if n in proc.stdout + proc.stderr:
                leaks.setdefault(key, []).append("stdout/stderr")
            leaks.setdefault(key, []).extend(
                str(p) for p in _files_containing(kedro_project, n, {credentials}))
    # the run did log and track something, so the scan looked at real outputs
    assert (kedro_project / "mlflow.db").stat().st_size > 0
    assert list((kedro_project / "logs").glob("*.log"))
    assert (kedro_project / "data/08_reporting/evaluation/leaderboard.csv").is_file()
    assert list((kedro_project / "mlruns").rglob("leaderboard.csv")), "no MLflow artifact scanned"
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs)
    values = " ".join(str(v) for v in runs.to_numpy().ravel())
    for key in (ENV_KEY, CRED_KEY):
        if key in values:
            leaks.setdefault(key, []).append("mlflow run params/tags")
    leaks = {k: v for k, v in leaks.items() if v}
    outcome.record("secret: API key from env + credentials.yml", "evaluation", tried=2,
                   handled=2 - len(leaks), lost=0)
    assert not leaks, leaks


@pytest.mark.kinds("evaluation", "secret: API key written in parameters")
def test_api_key_in_parameters_is_refused_before_anything_is_logged(kedro_project, outcome):
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from evads_kedro.credentials import SecretInParametersError

    (kedro_project / "conf/local/parameters_evaluation.yml").write_text(yaml.safe_dump(
        {"evaluation": {"judge": {"backend": {"backend": "openai", "api_key": ENV_KEY}}}}))
    bootstrap_project(kedro_project)
    configure_project("evads_kedro")
    with pytest.raises(SecretInParametersError, match=r"evaluation\.judge\.backend\.api_key") as e:
        with KedroSession.create(project_path=kedro_project) as s:
            s.run(pipeline_names=["evaluation"])
    assert "conf/local/credentials.yml" in str(e.value) and ENV_KEY not in str(e.value)
    skip = {kedro_project / "conf/local/parameters_evaluation.yml"}
    leaked = _files_containing(kedro_project, ENV_KEY.encode(), skip)
    outcome.record("secret: API key written in parameters", "evaluation", tried=1,
                   handled=int(not leaked), lost=0)
    assert not leaked


def test_environment_wins_over_the_credentials_file():
    from evads_kedro.credentials import export_api_keys

    environ = {"A_KEY": "from-env"}
    names = export_api_keys({"llm_api_keys": {"A_KEY": "from-file", "B_KEY": "b", "C_KEY": None}},
                            environ)
    assert names == ["B_KEY"] and environ == {"A_KEY": "from-env", "B_KEY": "b"}
    with pytest.raises(ValueError, match="must map variable names"):
        export_api_keys({"llm_api_keys": "sk-oops"}, {})
