"""Minimal rows in the released verl layout (SPEC §5), built here so tests need no download."""

from __future__ import annotations

import copy

import pandas as pd

INSTRUCTION = (
    "You are permitted to gather any relevant clues, think step by step, to answer this question. "
    "Output your thought process (no length limit) and the final answer (using approximately 50 "
    "words; longer answers will be truncated) in the following format\n"
    "<think>your_thinking</think> <answer>your_answer_within_50_words</answer>"
)
FULL = (
    "Category: 服饰鞋包\nDuration: 6s\n\n[Time-aligned Events]:\n"
    'Time 0s: OCR Text: [限时特价 | ¥99] ; ASR Text: "是谁突然降温"\n'
    'Time 1-2s: OCR Text: [限时特价 | ¥99]\n'
    'Time 3s: ASR Text: "buy 2 get 1"'
)
ASR_ONLY = (
    "Voiceover: Duration: 6s\n\n[Time-aligned Events]:\n"
    'Time 0s: Audio Speech: "是谁突然降温"\n'
    'Time 3s: Audio Speech: "buy 2 get 1"'
)


def sft_row(video="../videos/7.mp4", qid="ques_" + "a" * 32, question="价格是多少？"):
    return {
        "data_source": "EVAdsBench",
        "videos": video,
        "prompt": [{"content": "<video>" + FULL + "\n" + question + "\n\n" + INSTRUCTION, "role": "user"}],
        "ability": "QA",
        "answer": "<think>字幕显示¥99</think>\n<answer>99元</answer>",
        "extra_info": {"id": qid, "video_path": video},
    }


def rl_row(video="../videos/7.mp4", qid="ques_" + "b" * 32, question="谁是目标人群？"):
    return {
        "data_source": "EVAdsBench",
        "videos": video,
        "prompt": [{"content": "<video>" + ASR_ONLY + "\n\n Question: " + question + "\n" + INSTRUCTION,
                    "role": "user"}],
        "ability": "QA",
        "reward_model": {
            "accuracy_ratio": 1,
            "answer": "怕冷的上班族",
            "format_ratio": 1,
            "ground_truth": "<answer>怕冷的上班族</answer>",
            "verifier": [{"clues": "开头降温场景", "meta_info": FULL}],
        },
        "extra_info": {"id": qid, "video_path": video},
    }


def frame(rows):
    return pd.DataFrame([copy.deepcopy(r) for r in rows])


# one spelling per task, as a split may write its ques_categories
TASK_SPELLINGS = ("BP", "Cross-Modal Detection", "营销逻辑", "CI", "Regulatory Compliance")
OFFICIAL_COLUMNS = ["question", "answer", "ques_categories", "goods_category", "asr_input",
                    "video_id", "ques_id", "evidence", "asr_ocr_meta"]


def official_test_frame(n_videos: int = 2, rl: pd.DataFrame | None = None) -> pd.DataFrame:
    """An ``EVAds_TEST``-shaped table (the official script's columns) made from released RL
    rows: the first ``n_videos`` videos of ``rl`` (a released RL parquet), or synthetic RL rows
    (5 questions per video) when ``rl`` is None. ``ques_categories`` cycles through
    :data:`TASK_SPELLINGS` within each video."""
    from evads_kedro.pipelines.ingestion.released import import_splits

    if rl is None:
        rows = [rl_row(video=f"../videos/vid{v}.mp4", qid=f"ques_{0xe5a0 + v:016x}{q:016x}",
                       question=f"问题{v}-{q}：谁是目标人群？")
                for v in range(n_videos) for q in range(5)]
        rl = frame(rows)
    qa = import_splits([("rl", rl)], "/nonexistent/videos").qa
    keep = list(dict.fromkeys(qa["video_id"]))[:n_videos]
    qa = qa[qa["video_id"].isin(keep)].reset_index(drop=True)
    order = qa.groupby("video_id").cumcount()
    return pd.DataFrame({
        "question": qa["question"], "answer": qa["answer"],
        "ques_categories": [TASK_SPELLINGS[i % 5] for i in order],
        "goods_category": qa["category"], "asr_input": qa["prompt_timeline"],
        "video_id": qa["video_id"], "ques_id": qa["question_id"], "evidence": qa["clues"],
        "asr_ocr_meta": qa["timeline_full"],
    })[OFFICIAL_COLUMNS]
