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
