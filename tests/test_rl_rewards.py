"""GRPO rewards (SPEC §7): G levels, R_fmt, composition weights, judge context, judge cache."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
import yaml

from evads_kedro.pipelines.rl_training import config as cfg
from evads_kedro.pipelines.rl_training.judge import JudgeItem
from evads_kedro.pipelines.rl_training.rewards import (
    FormatReward,
    JudgeReward,
    build_reward_funcs,
)
from evads_kedro.scoring import R5_VALUES, RewardWeights, compose_reward

ROOT = Path(__file__).resolve().parents[1]
WELL = "<think>the caption says 99</think> <answer>99 yuan</answer>"


class FakeJudge:
    """Returns scripted R5 values and records what it was asked."""

    model_id = "fake"

    def __init__(self, values):
        self.values = list(values)
        self.calls: list[tuple[str, list[JudgeItem]]] = []

    async def judge_batch(self, role, items):
        self.calls.append((role, list(items)))
        return [self.values[i % len(self.values)] if it.output.strip() else 0.0
                for i, it in enumerate(items)]


def columns(n, clues="the caption shows ¥99"):
    return {"question_id": [f"ques_{i:032x}" for i in range(n)], "question": ["price?"] * n,
            "timeline_full": ["Category: 其他\nDuration: 3s\n"] * n, "clues": [clues] * n,
            "reference_answer": ["99 yuan"] * n}


def run(reward, completions, **kw):
    return asyncio.run(reward(completions=completions, **{**columns(len(completions)), **kw}))


def test_every_r5_level_gives_the_multi_grained_levels():
    judge = FakeJudge(R5_VALUES)
    got = run(JudgeReward(judge, "answer", "mg"), [WELL] * 5)
    assert got == pytest.approx([0.0, 1 / 12, 1 / 3, 5 / 12, 1.0])


@pytest.mark.parametrize("kind,expected", [
    ("s", [0, 0, 0, 0, 1]), ("r3", [0, 0, 0.5, 0.5, 1]), ("r5", list(R5_VALUES)),
])
def test_variant_kinds_from_one_judge_value(kind, expected):
    assert run(JudgeReward(FakeJudge(R5_VALUES), "answer", kind), [WELL] * 5) == expected


@pytest.mark.parametrize("text", [
    "99 yuan",                                                   # no tags
    "<answer>99 yuan</answer>",                                  # no think
    "<think>x</think>",                                          # no answer
    "<think>x</think> <answer></answer>",                        # empty answer
    "<answer>99</answer> <think>x</think>",                      # wrong order
    "<think>x</think> <answer>a</answer> <answer>b</answer>",    # two answers
    "<think>x</think> <answer>99</answer> trailing text",        # text after the answer
    "",
])
def test_malformed_output_gets_zero_format_reward(text):
    assert FormatReward()(completions=[text]) == [0.0]
    assert FormatReward()(completions=[[{"role": "assistant", "content": text}]]) == [0.0]


def test_well_formed_output_gets_format_reward_one_in_both_completion_shapes():
    assert FormatReward()(completions=[WELL, [{"role": "assistant", "content": WELL}],
                                       "<think>a</think>\n<answer>b</answer>"]) == [1.0, 1.0, 1.0]


def test_answer_is_judged_inside_tags_and_trace_against_the_clues():
    judge = FakeJudge([0.5])
    run(JudgeReward(judge, "answer", "mg"), [WELL])
    run(JudgeReward(judge, "trace", "mg"), [WELL])
    (role_a, [a]), (role_t, [t]) = judge.calls
    assert (role_a, a.output, a.reference) == ("answer", "99 yuan", "99 yuan")
    assert (role_t, t.output, t.reference) == ("trace", "the caption says 99",
                                               "the caption shows ¥99")
    assert a.metadata.startswith("Category:") and a.question_id.startswith("ques_")
    # trace_reference=answer, and no clues -> the reference answer
    run(JudgeReward(judge, "trace", "mg", trace_reference="answer"), [WELL])
    assert judge.calls[-1][1][0].reference == "99 yuan"
    asyncio.run(JudgeReward(judge, "trace", "mg")(completions=[WELL],
                                                  **columns(1, clues=None)))
    assert judge.calls[-1][1][0].reference == "99 yuan"


def test_untagged_output_is_judged_whole_and_missing_trace_scores_zero():
    judge = FakeJudge([1.0])
    assert run(JudgeReward(judge, "answer", "mg"), ["just 99 yuan"]) == [1.0]
    assert judge.calls[-1][1][0].output == "just 99 yuan"
    assert run(JudgeReward(judge, "trace", "mg"), ["just 99 yuan"]) == [0.0]


def test_failed_judgement_is_none_and_logged():
    logged = {}
    got = run(JudgeReward(FakeJudge([None, 1.0]), "answer", "mg"), [WELL, WELL],
              log_metric=lambda k, v: logged.setdefault(k, v))
    assert got == [None, 1.0]
    assert logged["judge/answer_failed"] == 1.0 and logged["judge/answer_mg"] == 1.0
    assert {"judge/answer_s", "judge/answer_r3", "judge/answer_r5"} <= set(logged)


def _trl_total(values, weights):
    """TRL's composition: NaN (a None reward) is dropped by nansum."""
    return sum(w * v for v, w in zip(values, weights, strict=True) if not math.isnan(v))


@pytest.mark.parametrize("kind", ["s", "r3", "r5", "mg"])
@pytest.mark.parametrize("answer_r5", [*R5_VALUES, None])
@pytest.mark.parametrize("trace_r5", [0.25, 1.0, None])
def test_weighted_reward_funcs_equal_compose_reward(kind, answer_r5, trace_r5):
    weights = RewardWeights(answer=0.8, trace=0.2, format=1.0)
    funcs, w = build_reward_funcs(None, kind, weights)
    assert [f.__name__ for f in funcs] == ["format", f"answer_{kind}", f"trace_{kind}"]
    assert w == [1.0, 0.8, 0.2]
    fmt = FormatReward()(completions=[WELL])[0]
    a = run(JudgeReward(FakeJudge([answer_r5]), "answer", kind), [WELL])[0]
    t = run(JudgeReward(FakeJudge([trace_r5]), "trace", kind), [WELL])[0]
    values = [fmt, math.nan if a is None else a, math.nan if t is None else t]
    assert _trl_total(values, w) == pytest.approx(
        compose_reward(answer_r5, trace_r5, fmt, kind=kind, weights=weights))


def test_weights_are_parameters_and_mg_without_trace_drops_the_trace_reward():
    params = yaml.safe_load((ROOT / "conf/base/parameters_rl_training.yml").read_text())
    default = params["rl_training"]["grpo"]["reward_weights"]
    assert default == {"answer": 0.8, "trace": 0.2, "format": 1.0}
    plan = cfg.DevicePlan("cpu", True, False, False, "float32")
    for ns in ("grpo_s", "grpo_r3", "grpo_r5", "grpo_mg", "grpo_mg_no_trace"):
        v = cfg.make_variant(params[ns]["variant"], default)
        funcs, w = build_reward_funcs(FakeJudge([1.0]), v.kind, v.weights)
        kw = cfg.grpo_config_kwargs({}, plan, "/tmp/unused", v)
        assert kw["reward_weights"] == w
        if ns == "grpo_mg_no_trace":
            assert [f.__name__ for f in funcs] == ["format", "answer_mg"] and w == [1.0, 0.8]
        else:
            assert w == [1.0, 0.8, 0.2]
    # another weighting is a parameter change, not a code change
    v = cfg.make_variant({"name": "x", "kind": "mg", "weights": {"answer": 0.5}},
                         {**default, "format": 0.5})
    assert build_reward_funcs(FakeJudge([1.0]), v.kind, v.weights)[1] == [0.5, 0.5, 0.2]
    with pytest.raises(ValueError, match="unknown reward weight"):
        cfg.make_variant({"kind": "mg", "weights": {"answr": 1}}, default)
    with pytest.raises(ValueError, match="kind"):
        cfg.make_variant({"kind": "g"}, default)
