"""Append-only JSONL cache: durable appends, torn lines, zero repeated calls, kill -9 + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from evads_kedro.calls.cache import JsonlCache, stable_hash
from evads_kedro.datasets.jsonl_cache import JsonlCacheDataset
from evads_kedro.pipelines.evaluation.nodes import (
    generate_answers,
    judge_answers,
    select_questions,
)
from evads_kedro.pipelines.evaluation.tasks import classify_tasks
from evaluation_data import eval_params, make_qa, make_videos, scripted_responder
from llm_server import FakeLLMServer, prompt_text

ROOT = Path(__file__).resolve().parents[1]


def test_put_get_reload(tmp_path):
    c = JsonlCache(tmp_path / "c.jsonl")
    c.put("k1", {"status": "ok", "text": "你好"})
    c.put("k2", {"status": "invalid"})
    c.put("k1", {"status": "ok", "text": "later wins"})
    again = JsonlCache(tmp_path / "c.jsonl")
    assert len(again) == 2 and again.get("k1")["text"] == "later wins"
    assert (tmp_path / "c.jsonl").read_text(encoding="utf-8").count("\n") == 3


def test_torn_last_line_is_ignored_and_not_glued(tmp_path):
    path = tmp_path / "c.jsonl"
    JsonlCache(path).put("k1", {"status": "ok"})
    with open(path, "ab") as fh:
        fh.write(b'{"key": "k2", "status": "o')  # a write cut by kill -9
    c = JsonlCache(path)
    assert len(c) == 1 and c.torn_lines == 1 and "k2" not in c
    c.put("k3", {"status": "ok"})
    again = JsonlCache(path)
    assert set(r["key"] for r in again.records()) == {"k1", "k3"}
    assert again.bad_lines == 1  # the old torn line, now terminated, is skipped


def test_concurrent_puts_group_commit(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    c = JsonlCache(tmp_path / "c.jsonl")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: c.put(f"k{i}", {"status": "ok", "i": i}), range(200)))
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert len(lines) == 200 and {json.loads(x)["i"] for x in lines} == set(range(200))
    assert len(JsonlCache(tmp_path / "c.jsonl")) == 200


def test_failed_append_raises_and_is_not_remembered(tmp_path):
    c = JsonlCache(tmp_path / "x.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    c.path = tmp_path / "dir.jsonl"  # a directory: the append cannot open it
    with pytest.raises(OSError, match="cache append"):
        c.put("k", {"status": "ok"})
    assert "k" not in c
    c.path = tmp_path / "x.jsonl"
    c.put("k2", {"status": "ok"})  # the next batch works again
    assert "k2" in JsonlCache(tmp_path / "x.jsonl")


def test_dataset_loads_a_handle_and_refuses_saves(tmp_path):
    ds = JsonlCacheDataset(str(tmp_path / "sub" / "c.jsonl"))
    handle = ds.load()
    assert isinstance(handle, JsonlCache) and len(handle) == 0 and ds.exists()
    handle.put("k", {"status": "ok"})
    assert len(ds.load()) == 1
    with pytest.raises(Exception, match="append-only"):
        ds.save(handle)


def test_stable_hash_is_order_independent():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def _questions(n_videos: int, marker: str = "1") -> pd.DataFrame:
    qa = make_qa([[marker] * 5 for _ in range(n_videos)])
    # distinct questions per video so every prompt (and cache key) differs
    qa["question"] = [f"{q}#{v}#" for q, v in zip(qa["question"], qa["video_id"], strict=True)]
    labels, _ = classify_tasks(qa, {})
    return select_questions(qa, labels, make_videos(qa), {"subset": {"splits": ["rl"]}})


def test_rerun_makes_zero_calls(tmp_path):
    with FakeLLMServer(scripted_responder()) as srv:
        params = eval_params(srv.base_url)
        params["generation"]["n_samples"] = 2  # sampled decoding is cached per sample index
        qs = _questions(2)
        a1 = generate_answers(qs, JsonlCache(tmp_path / "a.jsonl"), params)
        j1 = judge_answers(qs, a1, JsonlCache(tmp_path / "j.jsonl"), params)
        first = srv.n_requests
        # 20 answers; both samples of a question say the same text, and a judgement is keyed
        # by (judge, template, question, judged text): 10 judge calls, not 20
        assert first == 20 + 10 and not a1["cached"].any()
        assert j1["cached"].sum() == 10 and (j1["judge_status"] == "ok").all()
        assert a1["seed"].tolist() == [0, 1] * 10
        a2 = generate_answers(qs, JsonlCache(tmp_path / "a.jsonl"), params)
        j2 = judge_answers(qs, a2, JsonlCache(tmp_path / "j.jsonl"), params)
        assert srv.n_requests == first  # zero HTTP calls the second time
        assert a2["cached"].all() and j2["cached"].all()
        pd.testing.assert_frame_equal(a1.drop(columns="cached"), a2.drop(columns="cached"))
        assert j2["r5"].tolist() == j1["r5"].tolist()
        # a new seed is a new sample: called again
        params["generation"]["seed"] = 100
        generate_answers(qs, JsonlCache(tmp_path / "a.jsonl"), params)
        assert srv.n_requests == first + 20


CHILD = """
import json, sys
import pandas as pd
from evads_kedro.calls.cache import JsonlCache
from evads_kedro.pipelines.evaluation.nodes import generate_answers
qs = pd.read_parquet(sys.argv[1])
params = json.loads(open(sys.argv[2]).read())
generate_answers(qs, JsonlCache(sys.argv[3]), params)
print("DONE", flush=True)
"""


@pytest.mark.slow
def test_kill_minus_nine_then_resume(tmp_path):
    n_videos = 12  # 60 items
    qs = _questions(n_videos)
    qs.to_parquet(tmp_path / "qs.parquet")
    cache_path = tmp_path / "answers.jsonl"
    with FakeLLMServer(scripted_responder(latency=0.1)) as srv:
        params = eval_params(srv.base_url)
        (tmp_path / "params.json").write_text(json.dumps(params))
        (tmp_path / "child.py").write_text(CHILD)
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "child.py"), str(tmp_path / "qs.parquet"),
             str(tmp_path / "params.json"), str(cache_path)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            lines = cache_path.read_bytes().count(b"\n") if cache_path.exists() else 0
            if lines >= 12:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        done_before = JsonlCache(cache_path)
        assert 12 <= len(done_before) < 60, "kill came too late to test resuming"
        before_keys = set(r["key"] for r in done_before.records())
        requests_before = srv.n_requests

        answers = generate_answers(qs, JsonlCache(cache_path), params)
        prompts = [prompt_text(r["body"]) for r in srv.requests]

    assert len(answers) == 60 and (answers["status"] == "ok").all()
    assert answers["cached"].sum() == len(done_before)
    final = JsonlCache(cache_path)
    assert len(final) == 60 and final.bad_lines <= 1
    # every finished item was asked exactly once over both runs; only in-flight ones twice
    per_prompt = pd.Series(prompts).value_counts()
    assert per_prompt.max() <= 2 and (per_prompt == 2).sum() <= 4  # concurrency 4
    for _, row in answers[answers["answer_key"].isin(before_keys)].iterrows():
        q = qs.set_index("question_id").loc[row["question_id"], "question"]
        assert sum(q in p for p in prompts) == 1
    assert len(prompts) <= 60 + 4 and requests_before >= len(done_before)
