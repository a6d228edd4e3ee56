"""Crash safety of the LLM pipelines, like tests/test_ingestion_kill.py for ingestion: a real
``kedro run`` subprocess against a slow loopback server is SIGKILLed mid-batch (evaluation: once
while answering, once while judging; qa_generation: while the agents run), then rerun; every
item is in the outputs exactly once, every cache line parses, no cache key is duplicated,
every parquet loads, and the finished calls were not made again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llm_server import FakeLLMServer, prompt_text
from test_ingestion_helpers import kill_group_when

TESTS = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _kedro(project: Path, pipeline: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "kedro", "run", "--pipelines", pipeline],
                            cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kill_when(proc: subprocess.Popen, path: Path, n_lines: int) -> None:
    """SIGKILL the run's process group once ``path`` holds ``n_lines`` lines."""
    kill_group_when(proc, lambda: _lines(path) >= n_lines, f"{path.name} reaching {n_lines} lines")


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]


def _cache_records(path: Path) -> list[dict]:
    """Every line parses (a kill must not leave a torn line either) and keys are unique."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), "a cache key was written twice"
    return records


def _all_parquets_load(project: Path) -> None:
    for p in (project / "data").rglob("*.parquet"):
        pd.read_parquet(p)
    assert not list((project / "data").rglob(".tmp-*"))


# ------------------------------------------------------------------------------ evaluation
def _eval_setup(project: Path, base_url: str, n_videos: int) -> pd.DataFrame:
    from evaluation_data import eval_params, make_qa, make_videos

    qa = make_qa([["1", "0.5", "0.75", "0.25", "0"] for _ in range(n_videos)])
    qa["question"] = [f"{q}#{v}#" for q, v in zip(qa["question"], qa["video_id"], strict=True)]
    (project / "data/02_intermediate/released").mkdir(parents=True, exist_ok=True)
    qa.to_parquet(project / "data/03_primary/released_qa.parquet")
    make_videos(qa).to_parquet(project / "data/02_intermediate/released/videos.parquet")
    params = eval_params(base_url)
    params["models_under_test"]["endpoint"]["concurrency"] = 2
    params["judge"]["concurrency"] = 2
    params["report"]["bootstrap"] = 50
    (project / "conf/local/parameters_evaluation.yml").write_text(
        yaml.safe_dump({"evaluation": params}, allow_unicode=True), encoding="utf-8")
    return qa


@pytest.mark.kinds("evaluation", "kill -9: evaluation (answering, judging)")
def test_evaluation_killed_while_answering_and_judging_resumes_exactly_once(kedro_project,
                                                                            outcome):
    from evaluation_data import scripted_responder

    n_videos = 6  # 30 questions
    cache = kedro_project / "data/07_model_output/cache"
    with FakeLLMServer(scripted_responder(latency=0.2)) as srv:
        qa = _eval_setup(kedro_project, srv.base_url, n_videos)
        _kill_when(_kedro(kedro_project, "evaluation"), cache / "answers.jsonl", 6)
        answered_before = {r["key"] for r in _cache_records(cache / "answers.jsonl")}
        assert 6 <= len(answered_before) < len(qa)
        _kill_when(_kedro(kedro_project, "evaluation"), cache / "judgements.jsonl", 6)
        assert len(_cache_records(cache / "answers.jsonl")) == len(qa)
        judged_before = len(_cache_records(cache / "judgements.jsonl"))
        assert judged_before < len(qa)
        _finish(_kedro(kedro_project, "evaluation"))
        prompts = pd.Series([prompt_text(r["body"]) for r in srv.requests])

    out = kedro_project / "data/07_model_output/evaluation"
    answers = pd.read_parquet(out / "answers.parquet")
    judgements = pd.read_parquet(out / "judgements.parquet")
    items = pd.read_parquet(kedro_project / "data/08_reporting/evaluation/item_results.parquet")
    expected = set(qa["question_id"])
    lost = len(expected - set(judgements["question_id"])) + len(expected - set(answers["question_id"]))
    dupes = int(answers["question_id"].duplicated().sum() + judgements["question_id"].duplicated().sum())
    outcome.record("kill -9: evaluation (answering, judging)", "evaluation", tried=2 * len(qa),
                   handled=2 * len(qa) - lost - dupes, lost=lost)
    assert lost == 0 and dupes == 0
    assert (answers["status"] == "ok").all() and (judgements["judge_status"] == "ok").all()
    assert set(items["question_id"]) == expected and items["question_id"].is_unique
    assert len(_cache_records(cache / "answers.jsonl")) == len(qa)
    assert len(_cache_records(cache / "judgements.jsonl")) == len(qa)
    _all_parquets_load(kedro_project)
    # a finished call is never made again; only the ones in flight at a kill (concurrency 2)
    per_prompt = prompts.value_counts()
    assert per_prompt.max() <= 2 and (per_prompt == 2).sum() <= 2 * 2
    assert len(prompts) <= 2 * len(qa) + 2 * 2


# --------------------------------------------------------------------------- qa_generation
@pytest.mark.kinds("qa_generation", "kill -9: qa_generation (agents)")
def test_qa_generation_killed_mid_batch_resumes_exactly_once(kedro_project, outcome):
    from test_qa_generation_pipeline import make_params, responder, videos_frame

    base = videos_frame().set_index("video_id").loc["ad_jacket"]
    n_videos = 5
    videos = pd.DataFrame([{**base.to_dict(), "video_id": f"ad_jacket_{i}"}
                           for i in range(n_videos)])
    ingested = kedro_project / "data/02_intermediate/ingested"
    ingested.mkdir(parents=True, exist_ok=True)
    videos.to_parquet(ingested / "videos.parquet")
    cache = kedro_project / "data/07_model_output/cache/qa_generation.jsonl"

    def slow(body, n):
        time.sleep(0.2)
        return responder(body, n)

    with FakeLLMServer(slow) as srv:
        params = make_params(srv.base_url)
        params["concurrency"] = 2
        (kedro_project / "conf/local/parameters_qa_generation.yml").write_text(
            yaml.safe_dump({"qa_generation": params}, allow_unicode=True), encoding="utf-8")
        _kill_when(_kedro(kedro_project, "qa_generation"), cache, 5)
        before = len(_cache_records(cache))
        assert 5 <= before < n_videos * 5
        _finish(_kedro(kedro_project, "qa_generation"))
        n_requests = srv.n_requests

    records = _cache_records(cache)
    items = pd.read_parquet(kedro_project / "data/03_primary/qa_generation/items.parquet")
    pairs = list(zip(items["video_id"], items["task"], strict=True))
    expected = {(v, t) for v in videos["video_id"] for t in ("BP", "CM", "ML", "CI", "RC")}
    lost = len(expected - set(pairs))
    dupes = len(pairs) - len(set(pairs))
    outcome.record("kill -9: qa_generation (agents)", "qa_generation", tried=len(expected),
                   handled=len(expected) - lost - dupes, lost=lost)
    assert lost == 0 and dupes == 0 and set(pairs) == expected
    assert len(records) == n_videos * 5  # one call per persona x video, none twice
    assert n_requests <= n_videos * 5 + 2  # only the calls in flight at the kill were redone
    sft = pd.read_parquet(kedro_project / "data/03_primary/qa_generation/EVAds_SFT.parquet")
    assert len(sft) == len(expected)
    _all_parquets_load(kedro_project)


# ----------------------------------------------------------------------------- rl_training
def _deep_merge(into: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v
    return into


def test_grpo_killed_mid_training_resumes_from_its_last_checkpoint(kedro_project, outcome):
    """kill -9 of a GRPO stage after its checkpoint at step 2 (of 6); the rerun (only that
    variant's namespace) resumes there and its summary and MLflow run hold all 6 steps."""
    from evads_kedro.pipelines.rl_training import checkpoints
    from evads_kedro.pipelines.rl_training.smoke_judge import SmokeJudgeServer
    from test_rl_pipeline import SHRINK, released_tables

    qa, videos = released_tables()
    (kedro_project / "data/02_intermediate/released").mkdir(parents=True, exist_ok=True)
    qa.to_parquet(kedro_project / "data/03_primary/released_qa.parquet")
    videos.to_parquet(kedro_project / "data/02_intermediate/released/videos.parquet")
    conf = kedro_project / "conf/smoke/parameters_rl_training.yml"
    params = yaml.safe_load(conf.read_text(encoding="utf-8"))
    steps = 6
    _deep_merge(params, SHRINK)
    _deep_merge(params, {"rl_training": {"grpo": {"max_steps": steps},
                                         "checkpoints": {"every_steps": 2, "keep": 2}}})
    conf.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    folder = checkpoints.stage_dir(kedro_project / "data/06_models/rl_training", "grpo_mg")

    def run(*select: str) -> subprocess.Popen:
        env = {**os.environ, "EVADS_JUDGE_BASE_URL": judge.base_url, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
        return subprocess.Popen([sys.executable, "-m", "kedro", "run", "--env", "smoke",
                                 "--pipelines", "rl_training", *select], cwd=kedro_project,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)

    def checkpoint_at(step: int) -> bool:
        found = checkpoints.last_complete(folder)
        return found is not None and found[1] >= step

    with SmokeJudgeServer() as judge:
        kill_group_when(run("--to-nodes", "grpo_mg.train_grpo"), lambda: checkpoint_at(2),
                        "GRPO checkpoint 2", timeout=500)
        at_kill = checkpoints.last_complete(folder)[1]
        assert at_kill < steps
        _finish(run("--namespaces", "grpo_mg"))

    summary = json.loads((kedro_project / "data/08_reporting/rl_training/grpo_mg_summary.json")
                         .read_text(encoding="utf-8"))
    done = [h["step"] for h in summary["history"] if "reward" in h]
    lost = steps - len(set(done))
    outcome.record("kill -9: rl_training (GRPO mid-training)", "rl_training", tried=steps,
                   handled=steps - lost, lost=lost)
    assert summary["resumed_from_step"] == at_kill >= 2
    assert summary["steps"] == steps and done == list(range(1, steps + 1))
    assert (kedro_project / "data/06_models/rl_training/grpo_mg/adapter/adapter_config.json").is_file()
    assert not folder.exists()  # a finished stage leaves no checkpoints behind

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["evads-grpo"],
                              filter_string="tags.`evads.variant` = 'mg'")
    assert len(runs) == 1  # one run per finished stage, holding the steps before the kill too
    history = mlflow.MlflowClient().get_metric_history(runs["run_id"][0], "reward")
    assert sorted(m.step for m in history) == list(range(1, steps + 1))
