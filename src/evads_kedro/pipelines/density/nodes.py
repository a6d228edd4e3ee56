"""Nodes of the ``density`` pipeline: A_den, O_den (and V_den) per video and per dataset.

SPEC §3: A_den = ASR units / duration, O_den = OCR units / duration summed over *every*
per-second snapshot (text that stays on screen counts each second), a dataset's value is the
mean over its videos.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evads_kedro.units import count_units

PER_VIDEO_COLUMNS = [
    "dataset", "video_id", "category", "duration_s", "asr_units", "ocr_units", "a_den", "o_den",
]
TABLE_COLUMNS = [
    "dataset", "n_videos", "v_den", "a_den", "o_den", "a_den_median", "o_den_median", "source",
]


def text_density_per_video(
    timelines: pd.DataFrame, videos: pd.DataFrame, qa: pd.DataFrame
) -> pd.DataFrame:
    """Per (dataset, video): unit counts and A_den / O_den from per-second timeline rows.

    ``timelines`` has one row per (video_id, second) with ``ocr`` (list of boxes) and ``asr``;
    ``videos`` gives ``duration_s`` and ``category``; ``qa`` maps videos to splits: a video in
    both released splits is measured once and listed under each (datasets are split names).
    """
    ocr_units = timelines.assign(
        ocr_units=timelines["ocr"].map(lambda boxes: sum(count_units(b) for b in _boxes(boxes))),
        asr_units=timelines["asr"].map(lambda t: count_units(t) if isinstance(t, str) else 0),
    ).groupby("video_id")[["asr_units", "ocr_units"]].sum()
    per_video = videos[["video_id", "category", "duration_s"]].merge(
        ocr_units, left_on="video_id", right_index=True, how="left"
    ).fillna({"asr_units": 0, "ocr_units": 0})
    bad = per_video["duration_s"].isna() | (per_video["duration_s"] <= 0)
    if bad.any():
        raise ValueError(
            f"videos without a positive duration: {per_video.loc[bad, 'video_id'].tolist()[:10]};"
            " fix the Duration: header of their timeline"
        )
    per_video["a_den"] = per_video["asr_units"] / per_video["duration_s"]
    per_video["o_den"] = per_video["ocr_units"] / per_video["duration_s"]
    membership = qa[["split", "video_id"]].drop_duplicates()
    membership["dataset"] = "evads_" + membership["split"]
    out = membership[["dataset", "video_id"]].merge(per_video, on="video_id", how="inner")
    out[["asr_units", "ocr_units"]] = out[["asr_units", "ocr_units"]].astype(int)
    return out[PER_VIDEO_COLUMNS].sort_values(["dataset", "video_id"]).reset_index(drop=True)


def _boxes(cell: Any) -> list[str]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return [str(b) for b in cell]


def density_table(per_video: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Per-dataset means (``source = measured``) followed by the paper's rows (``paper``)."""
    grouped = per_video.groupby("dataset", sort=True)
    measured = pd.DataFrame({
        "dataset": list(grouped.groups),
        "n_videos": grouped["video_id"].nunique().to_numpy(),
        "v_den": grouped["v_den"].mean().to_numpy() if "v_den" in per_video else np.nan,
        "a_den": grouped["a_den"].mean().to_numpy(),
        "o_den": grouped["o_den"].mean().to_numpy(),
        "a_den_median": grouped["a_den"].median().to_numpy(),
        "o_den_median": grouped["o_den"].median().to_numpy(),
        "source": "measured",
    })
    paper = pd.DataFrame([
        {"dataset": f"{name} (paper)", "n_videos": np.nan, "v_den": v["v_den"],
         "a_den": v["a_den"], "o_den": v["o_den"], "a_den_median": np.nan,
         "o_den_median": np.nan, "source": "paper"}
        for name, v in params["paper_reference"].items()
    ])
    table = pd.concat([measured, paper], ignore_index=True)[TABLE_COLUMNS]
    table["n_videos"] = table["n_videos"].astype("Int64")
    return table


def density_report(table: pd.DataFrame) -> tuple[str, dict[str, Any]]:
    """The table as markdown (the run prints it at the end, see hooks) and MLflow metrics."""
    shown = table.copy()
    for col in ("v_den", "a_den", "o_den", "a_den_median", "o_den_median"):
        shown[col] = shown[col].map(lambda x: "" if pd.isna(x) else f"{x:.2f}")
    shown["n_videos"] = shown["n_videos"].map(lambda x: "" if pd.isna(x) else str(int(x)))
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    lines = [header, rule] + ["| " + " | ".join(map(str, r)) + " |" for r in shown.itertuples(index=False)]
    markdown = "\n".join(lines) + "\n"
    metrics = {}
    for r in table[table["source"] == "measured"].itertuples(index=False):
        for col in ("v_den", "a_den", "o_den"):
            value = getattr(r, col)
            if not pd.isna(value):
                metrics[f"{r.dataset}.{col}"] = {"value": float(value), "step": 0}
    return markdown, metrics
