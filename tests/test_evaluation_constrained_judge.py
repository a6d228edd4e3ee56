"""Constrained judge: a local text model scores the five legal replies as complete replies
(option + end of turn) and picks the most likely, so it is never ``invalid``; its
log-probabilities match a plain forward pass, and each of the five replies can win."""

from __future__ import annotations

import asyncio

import pytest
import torch

from evads_kedro.backends.llm import ChatError, LocalTransformersChat
from evads_kedro.backends.llm_local import end_of_turn_ids, pick_best
from evads_kedro.calls.judge import (
    JUDGE_CHOICES,
    LEVEL_PROMPT,
    judge_call,
    judge_settings,
    levels_reachable,
)
from evaluation_data import build_tiny_lm
from llm_server import FakeLLMServer

JUDGE_PROMPT = "conf/base/prompts/evaluation/judge.txt"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm_choice"))


def _reference_logprob(chat: LocalTransformersChat, messages, option: str) -> float:
    """log p(option + end of turn | prompt) from one uncached forward pass."""
    model, tok, _ = chat._load()
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)["input_ids"]
    ids = tok(option, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    opt = torch.tensor([ids])
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


def test_constrained_needs_a_backend_that_scores_options(tiny_lm):
    from evads_kedro.backends.llm import resolve_constrained

    with FakeLLMServer() as srv:
        backend = {"backend": "openai", "base_url": srv.base_url, "model": "m",
                   "api_key_env": None}
        js = judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                             "judge": {"backend": backend, "constrained": "auto"}})
        assert js["constrained"] is False  # endpoints reply freely under auto ...
        on = judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                             "judge": {"backend": backend, "constrained": True}})
        assert on["constrained"] and on["model_id"] == "openai:m+choice"  # ... or opt in
    vision = LocalTransformersChat(tiny_lm, vision=True)  # a vision model scores no options
    with pytest.raises(ValueError, match="cannot score fixed options"):
        resolve_constrained(vision, True, "evaluation.judge.constrained")
    assert resolve_constrained(vision, "auto", "x") == (False, vision.model_id)
    with pytest.raises(ChatError, match="no_choice"):
        asyncio.run(vision.choose([{"role": "user", "content": "x"}], ["a"]))


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


def test_ties_go_to_the_first_listed_option_and_are_recorded():
    assert pick_best(["a", "b", "c"], {"a": -2.0, "b": -1.0, "c": -1.0 + 1e-9}) == ("b", ["b", "c"])
    assert pick_best(["c", "b"], {"b": -1.0, "c": -1.0}) == ("c", ["c", "b"])
    assert pick_best(["a", "b"], {"a": -2.0, "b": -1.0}) == ("b", [])


def test_end_of_turn_is_the_templates_special_token(tiny_lm):
    from transformers import AutoTokenizer

    from evads_kedro.assets import smollm2_hf_dir

    smol = AutoTokenizer.from_pretrained(str(smollm2_hf_dir()), local_files_only=True)
    assert smol.convert_ids_to_tokens(end_of_turn_ids(smol)) == ["<|im_end|>"]
    tiny = AutoTokenizer.from_pretrained(str(tiny_lm), local_files_only=True)
    assert end_of_turn_ids(tiny) == [tiny.eos_token_id]  # plain-text turn end: EOS


@pytest.fixture(scope="module")
def smol_judge():
    backend = {"backend": "local", "asset": "smollm2", "device": "cpu", "num_threads": 2}
    return judge_settings({"judge_prompt_path": JUDGE_PROMPT,
                           "judge": {"backend": backend, "constrained": True}})


@pytest.mark.slow
def test_each_legal_reply_can_win_with_the_packaged_smollm2(smol_judge):
    """Scored without an end marker, "Answer: 0" (a prefix of 0.25/0.5/0.75) always beat
    them: only 0 and 1.0 were reachable. A prompt asking for exactly one reply gets it."""
    assert asyncio.run(levels_reachable(smol_judge)) == [0.0, 0.25, 0.5, 0.75, 1.0]
    rec = asyncio.run(judge_call(smol_judge, LEVEL_PROMPT.format(choice="Answer: 0.25"))())
    lps = rec["choice_logprobs"]
    assert lps["Answer: 0.25"] > lps["Answer: 0"]  # the prefix no longer wins by construction


@pytest.mark.slow
def test_each_task_label_can_win_with_the_packaged_smollm2(smol_judge):
    from evads_kedro.pipelines.evaluation.task_llm import CHOICES

    backend = smol_judge["backend"]
    won = [asyncio.run(backend.choose(
        [{"role": "user", "content": LEVEL_PROMPT.format(choice=c)}], CHOICES)).text
        for c in CHOICES]
    assert won == list(CHOICES)
