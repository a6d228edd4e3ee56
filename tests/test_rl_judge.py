"""The GRPO judge through the evaluation client against the loopback smoke judge server."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from evads_kedro.calls.cache import JsonlCache, stable_hash, text_hash
from evads_kedro.calls.templates import load_template, render
from evads_kedro.pipelines.rl_training import smoke_judge as sj
from evads_kedro.pipelines.rl_training.judge import BatchJudge, JudgeItem
from evads_kedro.pipelines.rl_training.rewards import JudgeReward
from evads_kedro.scoring import parse_judge_reply

OFFICIAL = "../shared/evads/official_judge_prompt.txt"
OURS = "conf/base/prompts/evaluation/judge.txt"


@pytest.fixture
def server():
    with sj.SmokeJudgeServer() as s:
        yield s


def params(base_url, concurrency=4):
    from evads_kedro.backends.llm import clear_chat_cache

    clear_chat_cache()
    return {"judge_prompt_path": OURS,
            "judge": {"backend": {"backend": "openai", "base_url": base_url,
                                  "model": sj.MODEL_NAME, "api_key_env": None,
                                  "max_retries": 0, "timeout": 10},
                      "temperature": 0.0, "seed": 42, "max_tokens": 16, "invalid_retries": 0,
                      "concurrency": concurrency}}


def item(output, reference="怕冷的上班族 office workers", qid="ques_" + "a" * 32):
    return JudgeItem(question_id=qid, question="谁是目标人群？", metadata="Category: 其他\n",
                     clues="开头降温场景", reference=reference, output=output)


@pytest.mark.parametrize("template", [OFFICIAL, OURS])
def test_smoke_judge_reads_both_judge_templates(template):
    from evads_kedro.paths import project_root

    path = project_root() / template
    if not path.is_file():
        pytest.skip(f"{path} not available")
    t = load_template(path)
    prompt = render(t, question="Q?", metadata="Time 0s: Question: x", clues="Clues\nmore",
                    reference_answer="怕冷的上班族 office workers", model_output="怕冷的上班族 office workers")
    assert sj.score_prompt(prompt) == (1.0, 1.0)
    prompt = render(t, question="Q?", metadata="m", clues="c",
                    reference_answer="怕冷的上班族", model_output="完全无关")
    assert sj.score_prompt(prompt)[0] == 0.0


def test_smoke_judge_levels_are_legal_and_monotone():
    ref = "一二三四五六七八九十"
    values = [sj.r5_from_f1(sj.overlap_f1(ref[:k], ref)) for k in range(11)]
    assert values == sorted(values) and set(values) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert values[0] == 0.0 and values[-1] == 1.0


def test_batch_judge_uses_the_evaluation_client_and_cache(server, tmp_path):
    cache = JsonlCache(tmp_path / "judgements.jsonl")
    judge = BatchJudge.from_params(params(server.base_url), cache)
    items = [item("怕冷的上班族 office workers"), item("毫无关系 zzz"), item("   ")]
    got = asyncio.run(judge.judge_batch("answer", items))
    assert got == [1.0, 0.0, 0.0]
    assert server.requests == 2  # the empty text is scored 0 without a call
    # answer keys are the evaluation pipeline's keys: one cache for both pipelines
    key = stable_hash({"kind": "judgement", "judge": judge.model_id,
                       "template": judge.template_hash, "question_id": items[0].question_id,
                       "judged": text_hash(items[0].output)})
    assert cache.get(key)["r5"] == 1.0 and parse_judge_reply(cache.get(key)["raw_reply"]) == 1.0
    # same texts again (and a trace): answers from the cache, the trace is a new judgement
    got = asyncio.run(judge.judge_batch("answer", items[:2]))
    assert got == [1.0, 0.0] and server.requests == 2
    asyncio.run(judge.judge_batch("trace", items[:1]))
    assert server.requests == 3
    assert judge.key("trace", items[0].question_id, items[0].output) != key
    # a new process reading the file makes no call either
    judge2 = BatchJudge.from_params(params(server.base_url), JsonlCache(cache.path))
    asyncio.run(judge2.judge_batch("answer", items[:2]))
    assert server.requests == 3


def test_identical_completions_in_a_group_are_judged_once(server, tmp_path):
    judge = BatchJudge.from_params(params(server.base_url), JsonlCache(tmp_path / "c.jsonl"))
    reward = JudgeReward(judge, "answer", "mg")
    out = asyncio.run(reward(completions=["<think>t</think> <answer>怕冷的上班族</answer>"] * 4,
                             question_id=["ques_" + "b" * 32] * 4, question=["q"] * 4,
                             timeline_full=["m"] * 4, clues=["c"] * 4,
                             reference_answer=["怕冷的上班族"] * 4))
    assert out == [1.0] * 4 and server.requests == 1


def test_unreachable_judge_gives_none_and_is_not_cached(tmp_path):
    with sj.SmokeJudgeServer() as s:
        url = s.base_url
    cache = JsonlCache(tmp_path / "c.jsonl")
    judge = BatchJudge.from_params(params(url), cache)
    assert asyncio.run(judge.judge_batch("answer", [item("x")])) == [None]
    assert len(cache) == 0 and judge.stats["failed"] == 1


def test_cli_serves_while_the_command_runs():
    code = ("import json, os, urllib.request; u = os.environ['EVADS_JUDGE_BASE_URL']; "
            "print(json.load(urllib.request.urlopen(u + '/models'))['data'][0]['id'])")
    out = subprocess.run([sys.executable, "-m", "evads_kedro.pipelines.rl_training.smoke_judge",
                          "--", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sj.MODEL_NAME in out.stdout
