"""Rule-based task classifier: synthetic questions, and on the released data the share of videos
whose 5 raw labels are a permutation of the 5 tasks, plus accuracy on a hand-checked sample."""

from __future__ import annotations

import pandas as pd
import pytest

from evads_kedro.paths import project_root
from evads_kedro.pipelines.evaluation.tasks import (
    assign_permutation,
    classify_question,
    classify_tasks,
    parse_task_reply,
    reference_accuracy,
    task_scores,
)
from evads_kedro.taxonomy import TASK_CODES

# Hand-checked labels (question id prefix after "ques_" -> task), read question by question:
# 12 random videos (seed 7) and 30 hard questions of videos whose raw labels collide.
REFERENCE = pd.read_csv(project_root() / "conf/base/reference/task_labels_hand_checked.csv")
RANDOM_SAMPLE = dict(REFERENCE.query("sample == 'random'")[["question_id_prefix", "task"]].values)
HARD_SAMPLE = dict(REFERENCE.query("sample == 'hard'")[["question_id_prefix", "task"]].values)


@pytest.mark.parametrize(("question", "task"), [
    ("视频字幕中显示的产品价格是多少？", "BP"),
    ("当ASR提到“真的很保暖”时，画面中模特穿的衣服是什么颜色？", "CM"),
    ("字幕显示“0.75%黄金浓度”时，承接液体的容器呈什么形状？", "CM"),
    ("视频如何利用价格锚点与痛点场景驱动转化？", "ML"),
    ("视频锁定哪类核心受众，试图满足其何种需求？", "CI"),
    ("视频宣称“全网第一”是否属于违规虚假宣传？", "RC"),
    ("视频中“1.28至高洗净比”的合规性如何判定？", "RC"),
    ("视频中标注的地坪漆单桶作业面积与物理耐受性如何？", "BP"),  # trailing 如何 is not ML
    ("", "BP"),
])
def test_synthetic_questions(question, task):
    assert classify_question(question) == task


def test_assignment_resolves_collisions():
    qs = ["视频中产品的价格是多少？", "产品适合哪类人群，价格是多少？", "视频如何利用锚点驱动转化？",
          "视频锁定哪类核心受众？", "视频宣称“第一”是否合规？"]
    scores = [task_scores(q) for q in qs]
    assert [classify_question(q) for q in qs].count("CI") == 2
    assert sorted(assign_permutation(scores)) == sorted(TASK_CODES)
    assert assign_permutation(scores[:4]) is None


def test_existing_labels_are_kept():
    qa = pd.DataFrame({"question_id": ["q1", "q2"], "video_id": ["v", "v"],
                       "question": ["价格是多少？", "价格是多少？"], "task": ["RC", None]})
    labels, report = classify_tasks(qa, {})
    assert labels["task"].tolist() == ["RC", "BP"]
    assert labels["task_source"].tolist() == ["given", "rules_raw"]
    assert report["n_videos_with_5"] == 0 and report["permutation_rate"] is None


@pytest.mark.needs_shared
def test_released_permutation_rate_and_hand_checked_accuracy(evads_data_dir, capsys):
    from evads_kedro.pipelines.ingestion.released import import_splits

    raw = [(s, pd.read_parquet(evads_data_dir / f)) for s, f in
           (("sft", "EVAds_SFT.parquet"), ("rl", "EVAds_RL.parquet"))]
    qa = import_splits(raw, evads_data_dir / "videos").qa
    labels, report = classify_tasks(qa, {"assign_per_video": True})
    assert report["n_videos_with_5"] == 572
    assert report["permutation_rate"] >= 0.94  # measured 0.955
    assert set(report["final_counts"].values()) == {572}
    prefix = labels["question_id"].str[5:17]
    lines = []
    for name, sample, floor in (("random", RANDOM_SAMPLE, 1.0), ("hard", HARD_SAMPLE, 0.9)):
        sub = labels[prefix.isin(sample)]
        sub = sub.assign(truth=sub["question_id"].str[5:17].map(sample))
        assert len(sub) == len(sample)
        acc = float((sub["task"] == sub["truth"]).mean())
        raw_acc = float((sub["task_raw"] == sub["truth"]).mean())
        conf = pd.crosstab(sub["truth"], sub["task"]).reindex(index=TASK_CODES, columns=TASK_CODES,
                                                             fill_value=0)
        lines.append(f"{name} sample ({len(sub)} questions): assigned accuracy {acc:.3f}, "
                     f"raw {raw_acc:.3f}\n{conf}")
        assert acc >= floor
    ref = reference_accuracy(labels, REFERENCE)
    assert {k: v["n"] for k, v in ref.items()} == {"random": 60, "hard": 30}
    for name, sample in (("random", RANDOM_SAMPLE), ("hard", HARD_SAMPLE)):
        sub = labels[prefix.isin(sample)]
        assert ref[name]["accuracy"] == pytest.approx(
            float((sub["task"] == sub["question_id"].str[5:17].map(sample)).mean()))
        assert sum(sum(r.values()) for r in ref[name]["confusion"].values()) == len(sample)
    with capsys.disabled():
        print(f"\npermutation rate {report['permutation_rate']:.4f}; "
              + "\n".join(lines))


@pytest.mark.parametrize(("reply", "code"), [
    ("Task: CM", "CM"), ("CM", "CM"), ("**RC**", "RC"), ("Task: ML.\n", "ML"),
    ("Task: BP or CM", None), ("", None), (None, None), ("BPM", None), ("Task: XX", None),
])
def test_parse_task_reply_is_strict(reply, code):
    assert parse_task_reply(reply) == code


def test_llm_labels_dominate_rules_and_fallback_keeps_rules():
    qs = ["视频中产品的价格是多少？", "当ASR提到“好用”时画面显示什么？", "视频如何利用锚点驱动转化？",
          "视频锁定哪类核心受众？", "视频宣称“第一”是否合规？"]
    qa = pd.DataFrame({"question_id": [f"q{i}" for i in range(5)], "video_id": "v",
                       "question": qs})
    # the LLM swaps BP and CM (against the rules) and cannot label the RC question
    llm = {"q0": "CM", "q1": "BP", "q2": "ML", "q3": "CI", "q4": None}
    labels, report = classify_tasks(qa, {"assign_per_video": True}, llm)
    assert labels["task"].tolist() == ["CM", "BP", "ML", "CI", "RC"]
    assert labels["task_source"].tolist() == ["llm_raw"] * 4 + ["rules_fallback_raw"]
    assert report["method"] == "llm"
    assert report["llm"]["labelled"] == 4 and report["llm"]["fallback_to_rules"] == 1
    assert report["llm"]["agreement_with_rules"] == 0.5
    # two LLM labels collide: the per-video assignment resolves it with the rule scores
    labels, _ = classify_tasks(qa, {"assign_per_video": True}, {**llm, "q1": "CM", "q0": "CM"})
    assert sorted(labels["task"]) == sorted(TASK_CODES)
    assert labels.loc[labels["question_id"] == "q0", "task"].item() == "BP"
    assert "llm_assigned" in set(labels["task_source"])


def test_reference_accuracy_confusion():
    labels = pd.DataFrame({"question_id": ["ques_aa01", "ques_aa02", "ques_bb03", "ques_zz"],
                           "task": ["BP", "CM", "RC", "ML"], "task_raw": ["BP", "BP", "RC", "ML"]})
    ref = pd.DataFrame({"question_id_prefix": ["aa01", "aa02", "bb03", "cc04"],
                        "task": ["BP", "ML", "RC", "CI"], "sample": ["s", "s", "t", "u"]})
    out = reference_accuracy(labels, ref)
    assert set(out) == {"s", "t"}  # sample u has no question in labels
    assert out["s"]["n"] == 2 and out["s"]["accuracy"] == 0.5 and out["s"]["raw_accuracy"] == 0.5
    assert out["s"]["confusion"]["ML"]["CM"] == 1 and out["t"]["accuracy"] == 1.0
    assert reference_accuracy(labels, None) == {}
