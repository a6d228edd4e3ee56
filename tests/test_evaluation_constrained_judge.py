"""Constrained judge: a local text model scores the five legal replies and picks the most
likely, so it is never ``invalid``; its log-probabilities match a plain forward pass."""

from __future__ import annotations

import asyncio

import pytest
import torch

from evads_kedro.backends.llm import ChatError, LocalTransformersChat
from evads_kedro.calls.judge import JUDGE_CHOICES, judge_call, judge_settings
from evaluation_data import build_tiny_lm
from llm_server import FakeLLMServer

JUDGE_PROMPT = "conf/base/prompts/evaluation/judge.txt"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm_choice"))


def _reference_logprob(chat: LocalTransformersChat, messages, option: str) -> float:
    """log p(option | prompt) from one uncached forward pass over prompt + option."""
    model, tok, _ = chat._load()
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)["input_ids"]
    opt = tok(option, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([prompt, opt], dim=1)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits[prompt.shape[1] - 1:-1], -1)
    return float(lp.gather(1, opt[0][:, None]).sum())


def test_choose_matches_an_uncached_forward_pass(tiny_lm):
    chat = LocalTransformersChat(tiny_lm, device="cpu")
    messages = [{"role": "user", "content": "视频 问题 Answer:"}]
    reply = asyncio.run(chat.choose(messages, JUDGE_CHOICES))
    lps = reply.raw["choice_logprobs"]
    assert set(lps) == set(JUDGE_CHOICES) and reply.text in JUDGE_CHOICES
    assert reply.text == max(lps, key=lps.get)
    for option in JUDGE_CHOICES:
        assert lps[option] == pytest.approx(_reference_logprob(chat, messages, option), abs=1e-4)


def test_constrained_judge_is_never_invalid_and_keys_apart(tiny_lm):
    backend = {"backend": "local", "model_dir": str(tiny_lm), "device": "cpu"}
    free = judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                           "judge": {"backend": backend, "constrained": False}})
    js = judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                         "judge": {"backend": backend, "constrained": "auto"}})
    assert js["constrained"] and not free["constrained"]
    assert js["model_id"] == free["model_id"] + "+choice"  # separate cache identity
    rec = asyncio.run(judge_call(js, "Question: 视频 问题\nAnswer to grade: b")())
    assert rec["status"] == "ok" and rec["attempts"] == 1
    assert rec["raw_reply"] in JUDGE_CHOICES
    assert rec["r5"] == float(rec["raw_reply"].split(": ")[1])


def test_constrained_needs_a_backend_that_scores_options():
    with FakeLLMServer() as srv:
        backend = {"backend": "openai", "base_url": srv.base_url, "model": "m",
                   "api_key_env": None}
        js = judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                             "judge": {"backend": backend, "constrained": "auto"}})
        assert js["constrained"] is False  # endpoints reply freely under auto
        with pytest.raises(ValueError, match="cannot score fixed options"):
            judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                            "judge": {"backend": backend, "constrained": True}})
        from evads_kedro.backends.llm import build_chat

        with pytest.raises(ChatError, match="cannot score"):
            asyncio.run(build_chat(backend).choose([{"role": "user", "content": "x"}], ["a"]))


def test_constrained_task_classifier_labels_every_question(tiny_lm, tmp_path):
    from evads_kedro.calls.cache import JsonlCache
    from evads_kedro.pipelines.evaluation.nodes import classify_tasks
    from evaluation_data import make_qa

    qa = make_qa([["1"] * 5])
    params = {"method": "llm", "progress": False, "constrained": "auto",
              "backend": {"backend": "local", "model_dir": str(tiny_lm), "device": "cpu"}}
    labels, report = classify_tasks(qa, JsonlCache(tmp_path / "t.jsonl"), None, params)
    # a random model labels badly, but every question gets an LLM label (no fallback) and the
    # per-video assignment still yields one question per task
    assert labels["llm_status"].tolist() == ["ok"] * 5
    assert labels["llm_raw_reply"].str.fullmatch(r"Task: (BP|CM|ML|CI|RC)").all()
    assert report["llm"]["labelled"] == 5 and report["llm"]["fallback_to_rules"] == 0
    assert sorted(labels["task"]) == sorted(["BP", "CM", "ML", "CI", "RC"])
    _, again = classify_tasks(qa, JsonlCache(tmp_path / "t.jsonl"), None, params)
    assert again["llm"]["calls_from_cache"] == 5
