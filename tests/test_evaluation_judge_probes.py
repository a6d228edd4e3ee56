"""Judge check: probes with a known right score; a judge that returns the right tier passes,
one that returns random legal scores is flagged (both scripted loopback judges), and the
HTML report carries the section and the banner."""

from __future__ import annotations

import hashlib
import random

import pandas as pd
import pytest

from evads_kedro.calls.cache import JsonlCache
from evads_kedro.pipelines.evaluation.judge_probes import (
    PROBE_KINDS,
    auc,
    cohen_kappa,
    half_answer,
    judge_check,
    probe_rows,
)
from llm_server import FakeLLMServer, Reply
from test_evaluation_report_html import _items, _report

JUDGE_PROMPT = "conf/base/prompts/evaluation/judge.txt"
LEGAL = ("0", "0.25", "0.5", "0.75", "1.0")


def released_qa(n_videos: int = 8) -> pd.DataFrame:
    rows = []
    for v in range(n_videos):
        cat = ("服饰鞋包", "美容彩妆")[v % 2]
        for q in range(2):
            rows.append({"question_id": f"ques_{v:02d}{q:030d}", "video_id": str(v),
                         "split": "rl", "category": cat, "question": f"视频{v}的卖点{q}是什么？",
                         "answer": f"第{v}款主打保暖，面料亲肤{q}，版型显瘦，适合通勤。",
                         "clues": "字幕与口播", "timeline_full": (
                             f"Category: {cat}\nDuration: 12s\n\n[Time-aligned Events]:\n"
                             f"Time 0s: OCR Text: [第{v}款保暖]")})
    return pd.DataFrame(rows)


def _section(prompt: str, start: str, end: str) -> str:
    return prompt.split(start, 1)[1].split(end, 1)[0].strip()


def right_tier(body, n):
    """Grades by construction: equal to the reference 1.0, a prefix 0.5, the reference plus a
    caption quote 0.25, anything else (or nothing) 0."""
    prompt = body["messages"][-1]["content"]
    ref = _section(prompt, "Reference answer:\n", "\n\nAnswer to grade:")
    out = _section(prompt, "Answer to grade:\n", "\n\nReply with")
    if out == ref:
        score = "1.0"
    elif out and out.startswith(ref) and "字幕写着" in out:
        score = "0.25"
    elif out and ref.startswith(out):
        score = "0.5"
    else:
        score = "0"
    return Reply(f"Answer: {score}")


def random_legal(body, n):
    h = hashlib.sha256(repr(body["messages"]).encode() + bytes([n])).digest()
    return Reply(f"Answer: {random.Random(h).choice(LEGAL)}")


def _judge(srv, model):
    return {"backend": {"backend": "openai", "base_url": srv.base_url, "model": model,
                        "api_key_env": None, "max_retries": 0},
            "smoke_test": False, "invalid_retries": 0}


def test_probes_have_known_kinds_and_a_swap_from_the_same_category():
    probes = probe_rows(released_qa(), n_questions=4, seed=1)
    assert len(probes) == 20 and set(probes["kind"]) == set(PROBE_KINDS)
    for _qid, g in probes.groupby("question_id"):
        out = g.set_index("kind")["output"]
        ref = g["reference"].iloc[0]
        assert out["reference"] == ref and out["empty"] == ""
        assert ref.startswith(out["half"]) and len(out["half"]) < len(ref)
        assert out["fabricated"].startswith(ref) and "字幕写着" in out["fabricated"]
        assert out["swapped"] != ref
    assert half_answer("甲，乙，丙，丁。") == "甲，乙"
    with pytest.raises(ValueError, match="no released question in splits"):
        probe_rows(released_qa(), n_questions=1, splits=("test",))


def test_figures_auc_and_kappa():
    assert auc([1.0, 1.0], [0.0, 0.0]) == 1.0
    assert auc([0.5], [0.5]) == 0.5
    assert cohen_kappa([0, 1, 0.5], [0, 1, 0.5]) == 1.0
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) < 0


def test_random_judge_is_flagged_and_right_tier_judge_is_not(tmp_path):
    with FakeLLMServer(right_tier) as good, FakeLLMServer(random_legal) as bad:
        evaluation = {"judge_prompt_path": JUDGE_PROMPT, "judge": _judge(good, "good"),
                      "judge_probes": {"n_questions": 8, "seed": 0, "repeat": True,
                                       "second_prompt_path": None, "progress": False,
                                       "judges": {"random": _judge(bad, "bad")}}}
        scores, summary, metrics = judge_check(released_qa(), JsonlCache(tmp_path / "p.jsonl"),
                                               evaluation)
        n_calls = good.n_requests + bad.n_requests
    assert summary["probes"] == 40 and n_calls == 4 * 40  # 2 judges x (main + repeat)
    ok, rnd = summary["judges"]["judge"], summary["judges"]["random"]
    assert not ok["flagged"] and ok["auc_reference_vs_swapped"] == 1.0
    assert ok["mean_r5_by_probe"] == {"reference": 1.0, "half": 0.5, "fabricated": 0.25,
                                      "swapped": 0.0, "empty": 0.0}
    assert ok["spearman"] > 0.9 and ok["repeat_agreement"] == 1.0 and ok["invalid_rate"] == 0
    assert rnd["flagged"] and rnd["reasons"]
    assert rnd["repeat_agreement"] < 0.6  # a fresh random draw per request
    assert abs(summary["kappa"]["judge vs random"]) < 0.3
    assert metrics["judge_check.random.flagged"]["value"] == 1.0
    assert metrics["judge_check.judge.auc_reference_vs_swapped"]["value"] == 1.0
    assert set(scores["variant"]) == {"main", "repeat"}

    html = _report(_items(), judge_check=summary)
    assert "Judge check" in html
    assert "Judge <code>random</code> is below the floor" in html
    assert "Judge <code>judge</code> is below" not in html
    # a rerun is free: every probe comes from the cache
    with FakeLLMServer(right_tier) as good2, FakeLLMServer(random_legal) as bad2:
        evaluation["judge"] = _judge(good2, "good")
        evaluation["judge_probes"]["judges"] = {"random": _judge(bad2, "bad")}
        again, _, _ = judge_check(released_qa(), JsonlCache(tmp_path / "p.jsonl"), evaluation)
        assert good2.n_requests + bad2.n_requests == 0
    assert again["cached"].all()



def test_report_says_when_the_judge_check_did_not_run():
    html = _report(_items(), judge_check={"probes": 0, "judges": {}, "kappa": {}})
    assert "Judge check" in html and "Not run" in html
    assert "Judge check" not in _report(_items())


def test_agreement_under_a_second_prompt_and_disabled_check(tmp_path):
    from evads_kedro.calls.templates import resolve_path

    alt = tmp_path / "judge_alt.txt"
    alt.write_text("A second wording of the grading rules.\n\n"
                   + resolve_path(JUDGE_PROMPT).read_text(encoding="utf-8"), encoding="utf-8")
    with FakeLLMServer(right_tier) as good:
        evaluation = {"judge_prompt_path": JUDGE_PROMPT, "judge": _judge(good, "good"),
                      "judge_probes": {"n_questions": 2, "repeat": False, "progress": False,
                                       "second_prompt_path": str(alt)}}
        scores, summary, metrics = judge_check(released_qa(), JsonlCache(tmp_path / "p.jsonl"),
                                               evaluation)
        assert good.n_requests == 2 * 10 and set(scores["variant"]) == {"main", "prompt"}
        assert summary["judges"]["judge"]["prompt_agreement"] == 1.0
        assert "judge_check.judge.prompt_agreement" in metrics
        evaluation["judge_probes"]["enabled"] = False
        scores, summary, metrics = judge_check(released_qa(), JsonlCache(tmp_path / "q.jsonl"),
                                               evaluation)
        assert scores.empty and summary["enabled"] is False and metrics == {}
        assert good.n_requests == 20
