"""Structured outputs against a loopback server that honours (some of) the fields: the judge
and the task classifier ask for a choice among the legal replies, the QA agents for their JSON
schema; the accepted request shape is detected once and cached; a server that honours none gets
free-text calls, counted."""

from __future__ import annotations

import asyncio
import json

import pytest

from evads_kedro.backends.llm import build_chat, clear_chat_cache
from evads_kedro.calls.judge import JUDGE_CHOICES, judge_call, judge_settings
from llm_server import FakeLLMServer, Reply, prompt_text, structured_field

JUDGE_PROMPT = "conf/base/prompts/evaluation/judge.txt"


@pytest.fixture(autouse=True)
def _fresh_backends():
    clear_chat_cache()
    yield
    clear_chat_cache()


def _backend(srv, model="judge"):
    return {"backend": "openai", "base_url": srv.base_url, "model": model,
            "api_key_env": None, "max_retries": 0}


def _judge(srv, **kw):
    return judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                           "judge": {"backend": _backend(srv), "constrained": True, **kw}})


def _fields(srv):
    return [structured_field(r["body"]) for r in srv.requests]


def test_judge_choice_detects_the_honoured_field_once():
    with FakeLLMServer(lambda b, n: Reply("Answer: 0.5"), structured={"guided_choice"}) as srv:
        js = _judge(srv)
        first = asyncio.run(judge_call(js, "grade A")())
        second = asyncio.run(judge_call(js, "grade B")())
        # vLLM >= 0.10's structured_outputs is refused (400), guided_choice honoured, and
        # the second call goes straight to it
        assert _fields(srv) == ["structured_outputs", "guided_choice", "guided_choice"]
        assert srv.requests[1]["body"]["guided_choice"] == list(JUDGE_CHOICES)
    assert first["r5"] == second["r5"] == 0.5 and first["structured"] == "guided_choice"
    assert js["backend"].structured_stats["choice"] == {"mode": "guided_choice",
                                                        "structured": 2, "fallback": 0}


def test_judge_choice_as_a_json_schema_enum():
    with FakeLLMServer(lambda b, n: Reply("Answer: 1.0"), structured={"response_format"}) as srv:
        rec = asyncio.run(judge_call(_judge(srv), "grade")())
        rf = srv.requests[-1]["body"]["response_format"]
    assert rec["r5"] == 1.0 and rec["raw_reply"] == "Answer: 1.0"
    assert rf["json_schema"]["schema"]["properties"]["choice"]["enum"] == list(JUDGE_CHOICES)


def test_a_server_without_structured_outputs_gets_counted_free_text_calls():
    with FakeLLMServer(lambda b, n: Reply("Answer: 0.25"), structured=()) as srv:
        js = _judge(srv)
        first = asyncio.run(judge_call(js, "grade A")())
        n_first = srv.n_requests
        second = asyncio.run(judge_call(js, "grade B")())
        assert _fields(srv)[n_first:] == [None]  # detected once: then plain calls only
    assert n_first == 4  # three shapes refused, one free call
    assert first["r5"] == second["r5"] == 0.25 and first["structured"] is None
    assert js["backend"].structured_stats["choice"] == {"mode": "none", "structured": 0,
                                                        "fallback": 2}


def test_free_text_fallback_is_parsed_and_reasked_like_a_free_judge():
    replies = iter(["I would say 0.8", "Answer: 0.75"])
    with FakeLLMServer(lambda b, n: Reply(next(replies) if structured_field(b) is None
                                          else "x"), structured=()) as srv:
        rec = asyncio.run(judge_call(_judge(srv, invalid_retries=1), "grade")())
    assert rec["status"] == "ok" and rec["r5"] == 0.75 and rec["attempts"] == 2


def test_official_protocol_keeps_the_free_text_judge():
    with FakeLLMServer(structured={"guided_choice"}) as srv:
        js = judge_settings({"judge_prompt_path": JUDGE_PROMPT, "protocol": "official",
                             "judge": {"backend": _backend(srv), "constrained": True}})
        assert js["constrained"] is False and not js["model_id"].endswith("+choice")
        auto = judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                               "judge": {"backend": _backend(srv), "constrained": "auto"}})
        assert auto["constrained"] is False  # endpoints opt in with constrained: true


def test_task_classifier_asks_for_a_choice(tmp_path):
    from evads_kedro.calls.cache import JsonlCache
    from evads_kedro.pipelines.evaluation.task_llm import CHOICES, llm_task_labels
    from evaluation_data import make_qa

    qa = make_qa([["1"] * 5])
    with FakeLLMServer(lambda b, n: Reply("Task: CM"),
                       structured={"structured_outputs"}) as srv:
        labels = llm_task_labels(qa, JsonlCache(tmp_path / "t.jsonl"),
                                 {"backend": _backend(srv, "clf"), "constrained": True},
                                 progress=False)
        bodies = [r["body"] for r in srv.requests]
    assert labels["llm_task"].tolist() == ["CM"] * 5
    assert all(b["structured_outputs"] == {"choice": list(CHOICES)} for b in bodies)


def test_qa_agents_ask_for_their_json_schema():
    from evads_kedro.pipelines.qa_generation.agents import (
        generate,
        items_schema,
        load_personas,
        timeline_quotes,
    )

    item = {"task": "BP", "question": "价格？", "answer": "59元", "clues": "第3秒字幕",
            "cited_seconds": [3], "quotes": [{"modality": "ocr", "second": 3,
                                              "text": "限时特价59元"}]}

    def respond(body, n):
        return Reply("Sure! " + json.dumps([item], ensure_ascii=False))  # prose around it

    params = {"personas": {"consumer": {"tasks": ["BP", "CI"]}}, "items_per_agent": 1,
              "calls_per_agent": 2, "structured": True,
              "decoding": {"temperature": 0.2, "seed": 0, "max_tokens": 64}}
    ctx = {"video_id": "v1", "category": "服饰鞋包", "duration_s": 6.0,
           "timeline_full": "Category: 服饰鞋包\nDuration: 6s\n\n[Time-aligned Events]:\n"
                            "Time 3s: OCR Text: [限时特价59元]", "captions": None}
    with FakeLLMServer(respond, structured={"response_format"}) as srv:
        backend = build_chat(_backend(srv, "writer"))
        cands, rejections = generate(backend, [ctx], load_personas(params), params)
        bodies = [r["body"] for r in srv.requests]
    schemas = [b["response_format"]["json_schema"]["schema"] for b in bodies]
    # call k asks for the persona's k-th task; the reply is held to JSON by the server
    schemas.sort(key=lambda sc: sc["items"]["properties"]["task"]["enum"])
    assert timeline_quotes("not a timeline") == []
    quotes = timeline_quotes(ctx["timeline_full"])
    assert quotes == [{"modality": "ocr", "second": 3, "text": "限时特价59元"}]
    assert schemas == [items_schema(["BP"], 1, quotes), items_schema(["CI"], 1, quotes)]
    assert all(prompt_text(b).count("Sure") == 0 for b in bodies)
    assert not rejections and [c["item"]["answer"] for c in cands] == ["59元", "59元"]
    assert backend.structured_stats["json"]["mode"] == "response_format"
