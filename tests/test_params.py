"""Typed parameters (evads_kedro.params): every shipped environment validates; a typo, a nested
typo or a wrong type is an error naming the key's full path and the closest valid key; a real
``kedro run`` stops on it before any node."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from evads_kedro.params import ParameterError, check_chat_backend, validate_parameters

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir())


def _params(env: str = "local") -> dict:
    from kedro.config import OmegaConfigLoader

    from evads_kedro.settings import CONFIG_LOADER_ARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
                    ["parameters"])


def _problems(params: dict) -> list[str]:
    with pytest.raises(ParameterError) as err:
        validate_parameters(params)
    return err.value.problems


@pytest.mark.parametrize("env", ENVS)
def test_every_shipped_environment_validates(env: str) -> None:
    params = _params(env)
    checked = validate_parameters(params)
    # each block the environment ships was checked, not skipped
    assert {k for k in params} <= {k for k, v in checked if v is not None}


def test_ships_base_smoke_and_airflow() -> None:
    assert {"base", "smoke", "airflow"} <= set(ENVS)


def test_a_typo_names_the_full_path_and_the_closest_key() -> None:
    p = _params()
    p["evaluation"]["judge"]["backend"]["concurency"] = 32
    assert _problems(p) == ["evaluation.judge.backend.concurency: unknown key; "
                            "did you mean 'concurrency'?"]


def test_nested_typos_in_two_blocks_are_all_reported() -> None:
    p = _params("smoke")
    p["rl_training"]["grpo"]["reward_weights"]["anwser"] = 1.0
    p["qa_generation"]["dedup"]["treshold"] = 0.5
    assert sorted(_problems(p)) == [
        "qa_generation.dedup.treshold: unknown key; did you mean 'threshold'?",
        "rl_training.grpo.reward_weights.anwser: unknown key; did you mean 'answer'?"]


def test_a_top_level_typo() -> None:
    p = _params()
    p["evalution"] = {}
    assert _problems(p) == ["evalution: unknown key; did you mean 'evaluation'?"]


def test_a_wrong_type_and_a_wrong_choice_name_their_key() -> None:
    p = _params()
    p["evaluation"]["judge"]["backend"]["concurrency"] = "many"
    p["density"]["vden"]["weighting"] = "gaussian"
    probs = _problems(p)
    assert len(probs) == 2
    assert probs[0].startswith("density.vden.weighting: Input should be 'inverse', 'exp' or "
                               "'uniform'")
    assert probs[1].startswith("evaluation.judge.backend.concurrency: Input should be a valid "
                               "integer") and "'many'" in probs[1]


def test_a_partial_block_validates_but_is_still_checked() -> None:
    """conf/local may restate a block partially (Kedro replaces top-level blocks per env)."""
    p = _params()
    p["evaluation"] = {"judge": {"backend": {"backend": "openai", "base_url": "http://h/v1",
                                            "model": "m"}, "seed": 1}}
    assert validate_parameters(p).evaluation.report is None
    p["evaluation"]["report"] = {"level": 1.5}
    assert _problems(p) == ["evaluation.report.level: Input should be less than 1 (got 1.5)"]


def test_a_far_off_key_lists_the_valid_ones() -> None:
    p = _params()
    p["density"]["vden"]["zzz"] = 1
    (line,) = _problems(p)
    assert line == "density.vden.zzz: unknown key; valid keys: alpha, window, weighting, tau"


def test_chat_backend_block_rejects_typos_and_a_local_backend_without_a_model() -> None:
    ok = check_chat_backend({"backend": "openai", "base_url": "http://h/v1", "model": "m",
                             "concurrency": 4})
    assert ok.concurrency == 4
    with pytest.raises(ParameterError, match=r"judge\.backend\.concurency: unknown key; did "
                                             r"you mean 'concurrency'\?"):
        check_chat_backend({"backend": "openai", "concurency": 4}, "judge.backend")
    # the README's override: backend=openai over a local block keeps its asset (ignored)
    check_chat_backend({"backend": "openai", "asset": "smollm2", "base_url": "http://h",
                        "model": "m"})
    with pytest.raises(ParameterError, match="needs asset or model_dir"):
        check_chat_backend({"backend": "local"})


def test_plugin_backends_take_their_own_keys_builtin_ones_do_not() -> None:
    p = _params()
    p["ingestion"]["asr"] = {"backend": "my_pkg.mod:MyAsr", "log": "/tmp/x"}
    validate_parameters(p)
    p["ingestion"]["asr"] = {"backend": "faster_whisper", "log": "/tmp/x"}
    assert _problems(p)[0].startswith("ingestion.asr.log: unknown key")


def test_blocks_are_frozen() -> None:
    checked = validate_parameters(_params())
    with pytest.raises(ValidationError, match="frozen"):
        checked.evaluation.judge.seed = 1


def _kedro_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "kedro", "run", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def test_kedro_run_stops_on_a_typo_before_any_node(kedro_project: Path) -> None:
    bad = _kedro_run(kedro_project, "--pipelines", "density", "--params",
                     "evaluation.judge.backend.concurency=32")
    out = bad.stdout + bad.stderr
    assert bad.returncode == 1
    assert "evaluation.judge.backend.concurency: unknown key; did you mean 'concurrency'?" in out
    assert "Running node" not in out and "Loading data" not in out
    assert "Traceback" not in out
    # control: the right key passes validation and the run goes on to select nodes (none
    # match here, so it stops there without running anything)
    good = _kedro_run(kedro_project, "--pipelines", "density", "--nodes", "no_such_node",
                      "--params", "evaluation.judge.backend.concurrency=32")
    out = good.stdout + good.stderr
    assert good.returncode != 0 and "no_such_node" in out
    assert "invalid parameters" not in out


def _unresolved(params: dict, inputs) -> list[str]:
    """The ``params:a.b.c`` inputs whose key path is not in ``params``."""
    missing = []
    for name in inputs:
        if not name.startswith("params:"):
            continue
        node = params
        for key in name.removeprefix("params:").split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(name)
                break
            node = node[key]
    return sorted(set(missing))


@pytest.mark.parametrize("env", ENVS)
def test_every_params_input_of_every_pipeline_resolves(env: str) -> None:
    """Nodes take narrow blocks (``params:rl_training.seed``): each must exist in every env,
    where Kedro replaces a top-level block restated there (a missing one fails at run time)."""
    from evads_kedro.pipeline_registry import register_pipelines

    params = _params(env)
    inputs = {i for p in register_pipelines().values() for i in p.inputs()}
    assert {"params:rl_training.seed", "params:evaluation.task_classifier"} <= inputs
    assert _unresolved(params, inputs) == []
    assert _unresolved({"rl_training": {"model": {}}},
                       ["params:rl_training.seed", "params:rl_training.model", "x"]) == [
        "params:rl_training.seed"]
