import pytest

from evads_kedro.scoring import (
    InvalidScore,
    RewardWeights,
    all_scores,
    compose_reward,
    format_reward,
    multi_grained,
    parse_judge_reply,
    r3,
    split_completion,
    strict,
    validate_r5,
)

# SPEC §6-7: R3 maps .75 -> .5 and .25 -> 0; S = 1 iff R5 = 1; G = (S + R3 + R5) / 3.
EXPECTED = {
    0.0: {"r5": 0.0, "r3": 0.0, "s": 0.0, "mg": 0.0},
    0.25: {"r5": 0.25, "r3": 0.0, "s": 0.0, "mg": 0.25 / 3},
    0.5: {"r5": 0.5, "r3": 0.5, "s": 0.0, "mg": 1 / 3},
    0.75: {"r5": 0.75, "r3": 0.5, "s": 0.0, "mg": 1.25 / 3},
    1.0: {"r5": 1.0, "r3": 1.0, "s": 1.0, "mg": 1.0},
}


@pytest.mark.parametrize("r5", sorted(EXPECTED))
def test_every_r5_value_maps_to_r3_s_g(r5):
    assert all_scores(r5) == pytest.approx(EXPECTED[r5])


def test_mg_levels_match_the_paper():
    levels = [round(multi_grained(v), 3) for v in (0, 0.25, 0.5, 0.75, 1)]
    assert levels == [0.0, 0.083, 0.333, 0.417, 1.0]


@pytest.mark.parametrize("bad", [0.8, 0.3, -0.25, 1.25, 2, "x", None, True, float("nan")])
def test_values_outside_the_rubric_are_rejected(bad):
    with pytest.raises(InvalidScore):
        validate_r5(bad)
    with pytest.raises(InvalidScore):
        r3(bad)


def test_strict_only_rewards_perfect():
    assert [strict(v) for v in (0, 0.25, 0.5, 0.75, 1)] == [0, 0, 0, 0, 1]


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("Answer: 0.75", 0.75),
        ("Answer: 1", 1.0),
        ("Answer: 1.0", 1.0),
        ("answer：0.5", 0.5),
        ("Some reasoning\nAnswer: 0.25\n", 0.25),
        ("Answer: 0\n", 0.0),
    ],
)
def test_judge_reply_parsing(reply, expected):
    assert parse_judge_reply(reply) == expected


@pytest.mark.parametrize(
    "reply", ["Answer: 0.8", "Answer: 1.0/1", "Answer: ", "", "The score is 1", "Answer: 0.5-0.75"]
)
def test_judge_reply_parsing_is_strict(reply):
    with pytest.raises(InvalidScore):
        parse_judge_reply(reply)


def test_split_completion_and_format_reward():
    good = "<think>the caption says 99</think> <answer>It costs 99 yuan.</answer>"
    c = split_completion(good)
    assert (c.think, c.answer, c.well_formed) == ("the caption says 99", "It costs 99 yuan.", True)
    assert format_reward(good) == 1.0
    assert format_reward("<think>t</think>\n<answer>a</answer>") == 1.0
    for bad in ("just text", "<answer>a</answer>", "<think>t</think>", "<think>t</think> <answer></answer>",
                "<think>t</think> <answer>a</answer> trailing", "<think>a</think><think>b</think><answer>c</answer>"):
        assert format_reward(bad) == 0.0, bad
    # Without tags the whole output is judged (SPEC §6).
    assert split_completion("plain answer").answer == "plain answer"


def test_compose_reward_variants():
    w = RewardWeights()
    assert compose_reward(1.0, 1.0, 1.0, "mg", w) == pytest.approx(2.0)
    assert compose_reward(0.75, 0.5, 1.0, "mg", w) == pytest.approx(0.8 * 1.25 / 3 + 0.2 / 3 + 1)
    assert compose_reward(0.75, 0.5, 0.0, "s", w) == 0.0
    assert compose_reward(0.75, 0.5, 0.0, "r3", w) == pytest.approx(0.8 * 0.5 + 0.2 * 0.5)
    no_trace = RewardWeights(trace=0.0)
    assert compose_reward(0.5, 1.0, 0.0, "mg", no_trace) == pytest.approx(0.8 / 3)
    # A failed judge call contributes nothing rather than crashing the batch.
    assert compose_reward(None, None, 1.0) == 1.0
