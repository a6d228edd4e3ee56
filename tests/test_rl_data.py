"""Training examples: SFT targets, judge columns, held-out videos, frames only for VL + video."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evads_kedro.pipelines.rl_training import data as d
from evads_kedro.scoring import split_completion

INSTR = "answer as <think>…</think> <answer>…</answer>"


def qa_table(n_videos=6):
    rows = []
    for v in range(n_videos):
        for split in ("sft", "rl"):
            for k in range(2):
                qid = f"ques_{v:02d}{k}{'0' if split == 'sft' else '1'}".ljust(37, "0")
                rows.append({
                    "question_id": qid, "video_id": f"v{v}", "split": split, "category": "其他",
                    "task": None, "question": f"问题{k}？", "answer": f"答案{v}{k}",
                    "think": f"想法{v}{k}" if split == "sft" else None,
                    "clues": None if split == "sft" else f"线索{v}",
                    "ground_truth": "", "instruction": INSTR,
                    "prompt": f"<video>Voiceover: Duration: 3s\n\n Question: 问题{k}？\n{INSTR}"
                              + ("长" * 50 * v),
                    "prompt_timeline": "", "timeline_full": f"Category: 其他\nDuration: {v}s\n"})
    return pd.DataFrame(rows)


def count(text):
    return len(text)


def test_sft_targets_and_rl_judge_columns_text_only():
    sft, rl, held, report = d.build_examples(qa_table(), None, count,
                                             {"max_prompt_tokens": 10_000, "heldout_videos": 2},
                                             vision=False, seed=0)
    assert len(sft) == 12 and len(rl) + len(held) == 12
    c = split_completion(sft.loc[0, "completion_text"])
    assert c.well_formed and c.think.startswith("想法") and c.answer.startswith("答案")
    assert sft.loc[0, "completion_text"] == f"<think>{c.think}</think> <answer>{c.answer}</answer>"
    assert not any(p.startswith("<video>") for p in pd.concat([sft, rl])["prompt_text"])
    assert {"question_id", "question", "clues", "timeline_full", "reference_answer"} <= set(rl)
    assert rl["reference_answer"].str.startswith("答案").all()
    # whole videos are held out
    assert set(held["video_id"]).isdisjoint(rl["video_id"]) and held["video_id"].nunique() == 2
    assert report["input_mode"] == "text-only (timeline)" and report["rl"]["with_frames"] == 0


def test_long_prompts_are_dropped_and_counted():
    sft, rl, held, report = d.build_examples(qa_table(), None, count,
                                             {"max_prompt_tokens": 150, "heldout_videos": 0},
                                             vision=False)
    assert (sft["n_prompt_tokens"] <= 150).all() and (rl["n_prompt_tokens"] <= 150).all()
    assert report["dropped_long_prompts"]["sft"] > 0
    with pytest.raises(ValueError, match="no SFT examples"):
        d.build_examples(qa_table(), None, count, {"max_prompt_tokens": 5}, vision=False)


def test_sampling_limits_are_seeded():
    args = (qa_table(), None, count, {"max_sft_examples": 3, "max_rl_examples": 4,
                                      "heldout_videos": 1})
    a = d.build_examples(*args, vision=False, seed=3)
    b = d.build_examples(*args, vision=False, seed=3)
    assert len(a[0]) == 3 and len(a[1]) == 4
    assert a[0]["question_id"].tolist() == b[0]["question_id"].tolist()


def _write_video(path, n=6, size=(48, 32)):
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=2)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n):
            img = np.full((size[1], size[0], 3), i * 40, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_frames_only_for_a_vision_model_with_an_existing_video(tmp_path):
    video = tmp_path / "v0.mp4"
    _write_video(video)
    videos = pd.DataFrame({"video_id": ["v0", "v1"], "video_exists": [True, True],
                           "video_path": [str(video), str(tmp_path / "missing.mp4")]})
    params = {"max_prompt_tokens": 10_000, "heldout_videos": 0,
              "frames": {"enabled": True, "num_frames": 3, "max_side": 32}}
    sft, rl, _, report = d.build_examples(qa_table(2), videos, count, params, vision=True)
    assert report["rl"]["with_frames"] == 2 and report["rl"]["text_only"] == 2
    assert report["input_mode"] == "frames+timeline"
    # the <video> token stays in the table for VL rows, then becomes image slots
    assert rl.loc[rl["video_id"] == "v0", "prompt_text"].str.startswith("<video>").all()
    records = d.rl_records(rl, params["frames"])
    with_frames = [r for r in records if r["video_id"] == "v0"]
    assert all(len(r["images"]) == 3 and max(r["images"][0].size) <= 32 for r in with_frames)
    content = with_frames[0]["prompt"][0]["content"]
    assert [c["type"] for c in content] == ["image"] * 3 + ["text"]
    assert not content[-1]["text"].startswith("<video>")
    assert all(r["images"] == [] for r in records if r["video_id"] == "v1")
    ds = d.sft_dataset(sft, params["frames"])
    assert "images" in ds.column_names
    # a text-only model never gets frames, even with the video present
    _, rl_text, _, report = d.build_examples(qa_table(2), videos, count, params, vision=False)
    assert rl_text["video_path"].isna().all() and report["rl"]["with_frames"] == 0
