"""Keyframe captions for the agents' context (issue 8, step 1).

For every context video with a decoded frame stack (the ingestion ``frames`` partitions), pick
scene-change keyframes (:func:`~evads_kedro.backends.captions.select_keyframes`), caption each
with the configured vision-language captioner, and return one row per keyframe. Calls are
cached by (captioner model, prompt, frame content hash), so a rerun or another video sharing a
frame costs nothing. A failed caption is a row with ``error`` set; it never stops the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from evads_kedro.backends.captions import build_captioner, frame_hash, select_keyframes
from evads_kedro.calls.cache import stable_hash, text_hash
from evads_kedro.calls.runner import Job

logger = logging.getLogger(__name__)

CAPTION_COLUMNS = ["video_id", "second", "frame_index", "scene_score", "frame_hash", "model_id",
                   "caption", "error", "cached"]


def caption_rows(video_ids: list[str], frames: Mapping[str, Callable[[], Any] | Any],
                 params: Mapping[str, Any], cache=None) -> pd.DataFrame:
    """One row per captioned keyframe (empty when ``captions.backend`` is ``none``)."""
    from evads_kedro.pipelines.qa_generation.agents import prompt_folder
    from evads_kedro.pipelines.qa_generation.calls import run_calls

    cp = dict(params.get("captions") or {})
    captioner = build_captioner(cp)
    if captioner is None:
        return pd.DataFrame(columns=CAPTION_COLUMNS)
    folder = prompt_folder(params)
    prompt = (folder / cp.get("prompt_file", "caption.txt")).read_text(encoding="utf-8").strip()
    max_n = int(cp.get("max_keyframes", 6))
    threshold = float(cp.get("scene_threshold", 0.3))
    jobs, rows = [], []
    for vid in video_ids:
        if vid not in frames:
            logger.warning("qa_generation captions: no frame stack for video %s (run the "
                           "ingestion pipeline first); its context has no captions", vid)
            continue
        part = frames[vid]
        stack = part() if callable(part) else part
        for kf in select_keyframes(stack, max_n, threshold):
            image = stack.frames[kf.index]
            fh = frame_hash(image)
            key = stable_hash({"kind": "qa_caption", "model": captioner.model_id,
                               "prompt": text_hash(prompt), "frame": fh})
            jobs.append(_caption_job(captioner, image, prompt, key))
            rows.append({"video_id": vid, "second": kf.second, "frame_index": kf.index,
                         "scene_score": kf.score, "frame_hash": fh,
                         "model_id": captioner.model_id})
    results = run_calls(jobs, cache, concurrency=int(cp.get("concurrency", 2)),
                        desc="qa captions", backends=[captioner])
    for row, res in zip(rows, results, strict=True):
        ok = res.get("status") == "ok" and res.get("caption")
        row.update(caption=res.get("caption") if ok else None,
                   error=None if ok else str(res.get("error_reason") or res.get("error")
                                             or "empty caption"),
                   cached=bool(res.get("cached")))
    out = pd.DataFrame(rows, columns=CAPTION_COLUMNS)
    logger.info("qa_generation captions: %d keyframe(s) over %d video(s), %d failed, %d cached",
                len(out), out["video_id"].nunique(), int(out["error"].notna().sum()),
                int(out["cached"].sum()))
    return out


def _caption_job(captioner, image, prompt: str, key: str) -> Job:
    async def run() -> dict[str, Any]:
        text = await captioner.caption(image, prompt)
        return {"status": "ok" if text else "invalid", "caption": text,
                "model_id": captioner.model_id}
    return Job(key=key, run=run, group="caption")


def caption_lines(captions: pd.DataFrame) -> dict[str, str]:
    """``{video_id: "[3s] caption\\n[7s] caption"}`` from the caption rows that succeeded."""
    out: dict[str, str] = {}
    if captions is None or captions.empty:
        return out
    good = captions[captions["caption"].notna()].sort_values(["video_id", "second"])
    for vid, g in good.groupby("video_id", sort=False):
        out[str(vid)] = "\n".join(f"[{int(s)}s] {c}" for s, c in zip(g["second"], g["caption"],
                                                                      strict=True))
    return out
