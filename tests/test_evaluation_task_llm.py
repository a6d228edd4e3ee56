"""LLM task classifier through a real OpenAI-compatible server on 127.0.0.1: strict parsing,
re-asks, rule fallback for invalid and failed calls, the report, and a rerun from the cache."""

from __future__ import annotations

import pandas as pd
import pytest

from evads_kedro.calls.cache import JsonlCache
from evads_kedro.pipelines.evaluation.nodes import classify_tasks
from evaluation_data import QUESTIONS, make_qa
from llm_server import FakeLLMServer, Reply, Status, prompt_text

# the model's view of each task's question (QUESTIONS are worded like the release)
ANSWERS = {"价格是多少": "Task: BP", "真的很保暖": "Task: CM", "如何利用": "Task: ML",
           "核心受众": "Task: CI", "违规虚假宣传": "Task: RC"}


def _responder(body, n):
    text = prompt_text(body).split("Question:")[-1]
    if "[Sgarbled]" in text:  # first reply unusable, the re-ask succeeds
        return Reply("I think it is BP or CM" if n == 0 else "Task: CM")
    if "[Snever]" in text:
        return Reply("no idea")
    if "[Sdown]" in text:
        return Status(500)
    for needle, reply in ANSWERS.items():
        if needle in text:
            return Reply(reply)
    return Reply("Task: BP")


def _params(base_url: str) -> dict:
    return {"method": "llm", "assign_per_video": True, "invalid_retries": 1, "progress": False,
            "backend": {"backend": "openai", "base_url": base_url, "model": "classifier",
                        "api_key_env": None, "concurrency": 4, "max_retries": 1,
                        "backoff_base": 0.01, "backoff_max": 0.02, "timeout": 5}}


def test_llm_classifier_with_fallback_and_cache(tmp_path):
    # video 0 plain; video 1: CM garbled once, ML never parseable, RC endpoint always 500
    qa = make_qa([["1"] * 5, ["1", "garbled", "never", "1", "down"]])
    cache_path = tmp_path / "task_labels.jsonl"
    with FakeLLMServer(_responder) as srv:
        labels, report = classify_tasks(qa, JsonlCache(cache_path), None, _params(srv.base_url))
        # 5 + BP 1 + CM 2 (re-asked) + ML 2 (re-asked, invalid) + CI 1 + RC 2 (500, 1 retry)
        assert srv.n_requests == 13
        # requests arrive in any order (4 in flight): look the BP question's prompt up
        prompts = [r["body"]["messages"][0]["content"] for r in srv.requests]
        assert any("Question:\n视频字幕中显示的产品价格是多少？" in p for p in prompts)
        assert not any("{question}" in p for p in prompts)
        again, report2 = classify_tasks(qa, JsonlCache(cache_path), None, _params(srv.base_url))
        assert srv.n_requests == 15  # only the failed call is made again (2 attempts)
    truth = list(QUESTIONS) * 2
    assert labels["task"].tolist() == truth
    assert labels["llm_status"].tolist() == ["ok"] * 5 + ["ok", "ok", "invalid", "ok", "failed"]
    assert labels["task_source"].tolist() == ["llm_raw"] * 7 + ["rules_fallback_raw", "llm_raw",
                                                                 "rules_fallback_raw"]
    assert report["llm"]["labelled"] == 8 and report["llm"]["fallback_to_rules"] == 2
    assert report["llm"]["status_counts"] == {"ok": 8, "invalid": 1, "failed": 1}
    assert again["task"].tolist() == truth
    assert report2["llm"]["calls_from_cache"] == 9  # the failed call is not cached


def test_llm_method_needs_a_backend(tmp_path):
    qa = make_qa([["1"] * 5])
    with pytest.raises(ValueError, match="task_classifier.backend"):
        classify_tasks(qa, JsonlCache(tmp_path / "c.jsonl"), None, {"method": "llm"})
    with pytest.raises(ValueError, match="unknown"):
        classify_tasks(qa, JsonlCache(tmp_path / "c.jsonl"), None, {"method": "magic"})


def test_rules_method_reports_reference_accuracy(tmp_path):
    qa = make_qa([["1"] * 5])
    ref = pd.DataFrame({"question_id_prefix": [q[5:] for q in qa["question_id"]],
                        "task": list(QUESTIONS), "sample": "synthetic"})
    ref.loc[0, "task"] = "CI"  # one deliberately wrong reference label
    labels, report = classify_tasks(qa, JsonlCache(tmp_path / "c.jsonl"), ref,
                                    {"method": "rules"})
    assert report["reference"]["synthetic"]["n"] == 5
    assert report["reference"]["synthetic"]["accuracy"] == pytest.approx(0.8)
    assert not (tmp_path / "c.jsonl").exists()  # the rules make no call
