"""Training examples from the imported splits (``released_qa``; qa_generation output later).

Tables (parquet in the catalog, viewable) → Hugging Face datasets (built inside the training
nodes, where frames are decoded):

* SFT: user turn = the split's prompt (SPEC §5 layout and instruction), assistant turn =
  ``<think>{think}</think> <answer>{answer}</answer>``;
* RL / held-out: the prompt plus the judge's context columns (``question_id``, ``question``,
  ``clues``, ``timeline_full``, ``reference_answer``), which TRL hands to the reward functions.

Frames: when the base model is vision-language **and** the video file exists, ``num_frames``
evenly spaced frames are attached as an ``images`` list (TRL has no video input) and the
``<video>`` token becomes image slots; otherwise the example is text-only (timeline), and the
``<video>`` token is dropped. The data report records which path each split took.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from evads_kedro.prompts import VIDEO_TOKEN

logger = logging.getLogger(__name__)

SFT_COLUMNS = ["question_id", "video_id", "prompt_text", "completion_text", "n_prompt_tokens",
               "video_path"]
RL_COLUMNS = ["question_id", "video_id", "question", "prompt_text", "clues", "timeline_full",
              "reference_answer", "n_prompt_tokens", "video_path"]
DEFAULT_TARGET = "<think>{think}</think> <answer>{answer}</answer>"


def strip_video_token(prompt: str) -> str:
    return prompt[len(VIDEO_TOKEN):] if prompt.startswith(VIDEO_TOKEN) else prompt


def sft_target(think: str, answer: str, template: str = DEFAULT_TARGET) -> str:
    return template.format(think=(think or "").strip(), answer=(answer or "").strip())


def _video_paths(videos: pd.DataFrame | None) -> dict[str, str]:
    if videos is None or videos.empty or "video_exists" not in videos:
        return {}
    ok = videos[videos["video_exists"].astype(bool)]
    return {str(v): str(p) for v, p in zip(ok["video_id"], ok["video_path"], strict=True)
            if Path(p).is_file()}


def _sample_rows(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or len(df) <= int(n):
        return df
    return df.sample(n=int(n), random_state=seed).sort_index()


def build_examples(qa: pd.DataFrame, videos: pd.DataFrame | None, count_tokens,
                   data: Mapping[str, Any], vision: bool, seed: int = 0
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(sft, rl, heldout, report). ``count_tokens(text) -> int`` measures prompts; prompts
    longer than ``max_prompt_tokens`` are dropped (TRL no longer truncates prompts)."""
    max_tokens = int(data.get("max_prompt_tokens", 6144))
    frames = dict(data.get("frames") or {})
    paths = _video_paths(videos) if vision and frames.get("enabled", True) else {}
    per_video = image_tokens(frames) if paths else 0
    report: dict[str, Any] = {"vision_model": bool(vision), "max_prompt_tokens": max_tokens,
                              "image_tokens_per_video": per_video}

    def prompts(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df["video_path"] = [paths.get(str(v)) for v in df["video_id"]]
        df["prompt_text"] = [p if vp else strip_video_token(p)
                             for p, vp in zip(df["prompt"], df["video_path"], strict=True)]
        # the frames' image tokens count too: a prompt that fits as text may not with 8 frames
        df["n_prompt_tokens"] = [int(count_tokens(p)) + (per_video if vp else 0)
                                 for p, vp in zip(df["prompt_text"], df["video_path"],
                                                  strict=True)]
        return df

    # --- SFT
    sft = qa[qa["split"] == data.get("sft_split", "sft")]
    sft = sft[sft["think"].notna() & sft["answer"].notna()]
    sft = _sample_rows(sft, data.get("sft_candidates"), seed)
    sft = prompts(sft)
    dropped = {"sft": int((sft["n_prompt_tokens"] > max_tokens).sum())}
    sft = sft[sft["n_prompt_tokens"] <= max_tokens]
    sft = _sample_rows(sft, data.get("max_sft_examples"), seed)
    template = str(data.get("target_template", DEFAULT_TARGET))
    sft = sft.assign(completion_text=[sft_target(t, a, template)
                                      for t, a in zip(sft["think"], sft["answer"], strict=True)])
    # --- RL + held-out (whole videos held out, so no question of a held-out ad is trained on)
    rl = qa[qa["split"] == data.get("rl_split", "rl")]
    rl = _sample_rows(rl, data.get("rl_candidates"), seed)
    rl = prompts(rl).rename(columns={"answer": "reference_answer"})
    dropped["rl"] = int((rl["n_prompt_tokens"] > max_tokens).sum())
    rl = rl[rl["n_prompt_tokens"] <= max_tokens]
    vids = sorted(rl["video_id"].astype(str).unique())
    random.Random(seed).shuffle(vids)
    held = set(vids[: int(data.get("heldout_videos", 20))])
    heldout = rl[rl["video_id"].astype(str).isin(held)]
    heldout = _sample_rows(heldout, data.get("max_heldout_examples"), seed)
    rl = rl[~rl["video_id"].astype(str).isin(held)]
    rl = _sample_rows(rl, data.get("max_rl_examples"), seed)

    out_sft = sft[SFT_COLUMNS].reset_index(drop=True)
    out_rl = rl[RL_COLUMNS].reset_index(drop=True)
    out_held = heldout[RL_COLUMNS].reset_index(drop=True)
    for name, df in (("sft", out_sft), ("rl", out_rl), ("heldout", out_held)):
        report[name] = {
            "examples": len(df),
            "videos": int(df["video_id"].nunique()),
            "with_frames": int(df["video_path"].notna().sum()),
            "text_only": int(df["video_path"].isna().sum()),
            "prompt_tokens_median": float(df["n_prompt_tokens"].median()) if len(df) else None,
            "prompt_tokens_max": int(df["n_prompt_tokens"].max()) if len(df) else None,
        }
    report["dropped_long_prompts"] = dropped
    report["input_mode"] = ("frames+timeline" if any(report[k]["with_frames"] for k in ("sft", "rl"))
                            else "text-only (timeline)")
    if vision and report["input_mode"].startswith("text-only"):
        report["warning"] = TEXT_ONLY_WARNING
        logger.warning("!" * 88 + "\n%s\n" + "!" * 88, TEXT_ONLY_WARNING)
    if not len(out_sft):
        raise ValueError("no SFT examples: released_qa has no rows of split "
                         f"{data.get('sft_split', 'sft')!r} with think+answer under "
                         f"{max_tokens} prompt tokens; run the ingestion pipeline first")
    if not len(out_rl):
        raise ValueError("no RL examples left after filtering; raise max_prompt_tokens or "
                         "lower heldout_videos")
    return out_sft, out_rl, out_held, report


# -------------------------------------------------------------------------------- frames
TEXT_ONLY_WARNING = (
    "TEXT-ONLY TRAINING of a vision-language model: no example has a video file (the released "
    "splits ship none). The policy sees timelines, never frames. Put the videos under "
    "<evads_data_dir>/videos and rerun ingestion to train on frames.")


def image_tokens(frames: Mapping[str, Any]) -> int:
    """Upper bound of the image tokens the frames of one example add to its prompt:
    ``num_frames`` × ceil(max_side / pixels_per_token)² (Qwen2/2.5-VL: 14 px patches merged
    2×2 = 28 px per token; Qwen3-VL: 32), plus 2 vision start/end tokens per frame."""
    n = int(frames.get("num_frames", 8))
    side = math.ceil(int(frames.get("max_side", 448)) / int(frames.get("pixels_per_token", 28)))
    return n * (side * side + 2)


def sample_frames(video_path: str, num_frames: int, max_side: int) -> list:
    """``num_frames`` evenly spaced RGB frames (PIL) of a video, longer side ≤ ``max_side``,
    from the project's one frame sampler (:func:`evads_kedro.video.sample_n_frames`: rotation
    honoured, no full-resolution decode of the whole video), once per video and process (the
    five questions of a video share it)."""
    return list(_frames_cached(str(video_path), int(num_frames), int(max_side)))


@functools.lru_cache(maxsize=64)
def _frames_cached(video_path: str, num_frames: int, max_side: int) -> tuple:
    from PIL import Image

    from evads_kedro.video import sample_n_frames

    frames = sample_n_frames(video_path, num_frames, max_side)
    if not frames:
        raise ValueError(f"{video_path}: no decodable video frames")
    return tuple(Image.fromarray(f) for f in frames)


def user_turn(prompt_text: str, n_images: int) -> dict[str, Any]:
    """A user message: plain text, or image slots followed by the text (``<video>`` removed)."""
    if not n_images:
        return {"role": "user", "content": prompt_text}
    content = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": strip_video_token(prompt_text)})
    return {"role": "user", "content": content}


def _frames_for(row: Mapping[str, Any], frames: Mapping[str, Any]) -> list:
    vp = row.get("video_path")
    if not vp or not isinstance(vp, str):
        return []
    try:
        return sample_frames(vp, int(frames.get("num_frames", 8)), int(frames.get("max_side", 448)))
    except Exception as exc:  # one unreadable video falls back to text-only, recorded in logs
        logger.warning("frames of %s unavailable (%s): text-only example", vp, exc)
        return []


def sft_dataset(df: pd.DataFrame, frames: Mapping[str, Any]):
    from datasets import Dataset

    rows = []
    for r in df.to_dict("records"):
        imgs = _frames_for(r, frames)
        row = {"prompt": [user_turn(r["prompt_text"], len(imgs))],
               "completion": [{"role": "assistant", "content": r["completion_text"]}]}
        if imgs:
            row["images"] = imgs
        rows.append(row)
    return Dataset.from_list(_same_keys(rows))


def rl_records(df: pd.DataFrame, frames: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in df.to_dict("records"):
        imgs = _frames_for(r, frames)
        row = {"prompt": [user_turn(r["prompt_text"], len(imgs))],
               "question_id": r["question_id"], "video_id": r["video_id"],
               "question": r["question"], "clues": r["clues"] or "",
               "timeline_full": r["timeline_full"], "reference_answer": r["reference_answer"]}
        if imgs:
            row["images"] = imgs
        rows.append(row)
    return _same_keys(rows)


def _same_keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One column schema when some rows carry frames: text-only rows get ``images: []`` and
    their user content as a list of parts (a VL processor's chat template expects parts)."""
    if any("images" in r for r in rows):
        for r in rows:
            if "images" not in r:
                r["images"] = []
                turn = r["prompt"][0]
                if isinstance(turn["content"], str):
                    turn["content"] = [{"type": "text",
                                        "text": strip_video_token(turn["content"])}]
    return rows


def rl_dataset(df: pd.DataFrame, frames: Mapping[str, Any]):
    from datasets import Dataset

    return Dataset.from_list(rl_records(df, frames))
