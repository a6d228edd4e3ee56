"""Judge node: strict parsing through a real HTTP server, invalid replies counted with their raw
text, the official judge prompt filled, and cache keys that do not repeat calls."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from evads_kedro.calls.cache import JsonlCache
from evads_kedro.calls.templates import load_template, render
from evads_kedro.pipelines.evaluation.nodes import (
    generate_answers,
    judge_answers,
    select_questions,
)
from evads_kedro.pipelines.evaluation.tasks import classify_tasks
from evads_kedro.scoring import InvalidScore, parse_judge_reply
from evaluation_data import eval_params, make_qa, make_videos, scripted_responder
from llm_server import FakeLLMServer, Reply, scripted

OFFICIAL = "/work/shared/evads/official_judge_prompt.txt"


@pytest.mark.parametrize(("reply", "value"), [
    ("Answer: 0.75", 0.75), ("Answer: 1", 1.0), ("Answer: 1.0", 1.0), ("answer：0.5", 0.5),
    ("Some words\nAnswer: 0.25", 0.25), ("Answer: 0", 0.0),
])
def test_legal_replies(reply, value):
    assert parse_judge_reply(reply) == value


@pytest.mark.parametrize("reply", ["Answer: 0.8", "Answer: 1.0/1", "Answer: ", "", "0.5",
                                   "Answer: 1.5", "Answer: -0.25", "Answer: 0.5 or 0.75"])
def test_illegal_replies_are_rejected_not_rounded(reply):
    with pytest.raises(InvalidScore):
        parse_judge_reply(reply)


def _questions(markers):
    qa = make_qa(markers)
    labels, _ = classify_tasks(qa, {"assign_per_video": True})
    return select_questions(qa, labels, make_videos(qa), {"subset": {"splits": ["rl"]}})


def _run(srv, tmp_path, markers, **over):
    params = eval_params(srv.base_url, **over)
    qs = _questions(markers)
    answers = generate_answers(qs, JsonlCache(tmp_path / "a.jsonl"), params)
    judgements = judge_answers(qs, answers, JsonlCache(tmp_path / "j.jsonl"), params)
    return qs, answers, judgements


def test_invalid_replies_are_retried_then_recorded(tmp_path):
    with FakeLLMServer(scripted_responder()) as srv:
        qs, answers, j = _run(srv, tmp_path, [["1", "bad", "frac", "empty", "0.25"]])
        n_judge_calls = sum("Answer to grade" in json.dumps(r["body"], ensure_ascii=False)
                            for r in srv.requests)
    j = j.merge(answers[["question_id", "answer"]], on="question_id").set_index("answer")
    assert j.loc["token=1", "judge_status"] == "ok" and j.loc["token=1", "r5"] == 1.0
    assert j.loc["token=0.25", "r5"] == 0.25
    for tok, raw in (("bad", "Answer: 0.8"), ("frac", "Answer: 1.0/1"), ("empty", "Answer: ")):
        row = j.loc[f"token={tok}"]
        assert row.judge_status == "invalid" and pd.isna(row.r5)
        assert row.attempts == 3 and row.raw_reply == raw  # 1 + invalid_retries=2
        assert json.loads(row.raw_replies) == [raw] * 3
    assert n_judge_calls == 2 + 3 * 3


def test_official_judge_prompt_is_filled_and_parsed(tmp_path):
    template = load_template(OFFICIAL)
    for name in ("question", "metadata", "clues", "reference_answer", "model_output"):
        assert "{" + name + "}" in template
    with FakeLLMServer(scripted_responder()) as srv:
        qs, answers, j = _run(srv, tmp_path, [["0.75", "0", "1", "0.5", "0.25"]],
                              judge_prompt_path=OFFICIAL)
        judge_prompts = [r["body"]["messages"][0]["content"] for r in srv.requests
                         if "[Model Output]" in r["body"]["messages"][0]["content"]]
    assert len(judge_prompts) == 5
    q = qs.iloc[0]
    p = next(p for p in judge_prompts if q["question"] in p)
    assert not re.search(r"\{(question|metadata|clues|reference_answer|model_output)\}", p)
    assert f"1. [Question]: {q['question']}" in p
    assert f"2. [Metadata (OCR/ASR)]: {q['timeline_full']}" in p
    assert f"3. [Clues]: {q['clues']}" in p and f"4. [Reference Answer]: {q['answer']}" in p
    assert re.search(r"5\. \[Model Output\]: token=[0-9.]+\n", p)  # only the <answer> inside
    assert sorted(j["r5"]) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_our_judge_prompt_has_the_rubric_and_fields():
    t = load_template("conf/base/prompts/evaluation/judge.txt")
    out = render(t, question="Q?", metadata="TL", clues="C", reference_answer="R",
                 model_output="{not a placeholder}")
    for s in ("Q?", "TL", "C", "R", "{not a placeholder}", "Answer: <one of 0, 0.25, 0.5, 0.75, 1.0>"):
        assert s in out
    for grade in ("1.0 ", "0.75", "0.5 ", "0.25", "0    "):
        assert grade in out


def test_failed_generation_is_skipped_not_dropped(tmp_path):
    with FakeLLMServer(scripted_responder()) as srv:
        qs, answers, j = _run(srv, tmp_path, [["fail", "1", "1", "1", "1"]])
    failed = answers[answers["status"] == "failed"]
    assert len(failed) == 1 and "http_400" in failed.iloc[0]["error"]
    row = j[j["question_id"] == failed.iloc[0]["question_id"]].iloc[0]
    assert row.judge_status == "skipped" and "generation failed" in row.error
    assert len(j) == 5


def test_judge_transport_failure_is_recorded_and_retried_next_run(tmp_path):
    calls = {"n": 0}

    def flaky_judge(body, n):
        text = body["messages"][0]["content"]
        if "Answer to grade" in text:
            calls["n"] += 1
            from llm_server import Status
            return Status(500) if calls["n"] <= 3 else Reply("Answer: 0.5")
        return scripted_responder()(body, n)

    with FakeLLMServer(scripted([], default=flaky_judge)) as srv:
        params = eval_params(srv.base_url)
        params["judge"]["concurrency"] = 1
        qs = _questions([["1", "1", "1", "1", "1"]])
        answers = generate_answers(qs, JsonlCache(tmp_path / "a.jsonl"), params)
        jc = JsonlCache(tmp_path / "j.jsonl")
        j1 = judge_answers(qs, answers, jc, params)
        assert (j1["judge_status"] == "failed").sum() == 1  # 3 × 500 = max_retries exhausted
        assert "http_500" in j1.loc[j1["judge_status"] == "failed", "error"].iloc[0]
        assert len(jc) == 4  # failures are not cached...
        j2 = judge_answers(qs, answers, JsonlCache(tmp_path / "j.jsonl"), params)
        assert (j2["judge_status"] == "ok").all()  # ...so the next run retries them
        assert j2["cached"].sum() == 4
