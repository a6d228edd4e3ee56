"""The end-of-run summary of the video ingestion: a markdown table + MLflow metrics."""

from __future__ import annotations

from typing import Any

import pandas as pd

STAGES = ("probe", "decode", "ocr", "asr")


def _rtf(compute_s: float, video_s: float) -> float | None:
    return compute_s / video_s if video_s > 0 else None


def ingestion_summary(
    probes: pd.DataFrame, videos: pd.DataFrame, quarantine: pd.DataFrame,
    probe_stats: dict[str, Any], decode_stats: dict[str, Any], ocr_stats: dict[str, Any],
    asr_stats: dict[str, Any], video_root: str | None,
) -> tuple[str, dict[str, dict[str, float]]]:
    """Markdown summary (printed at the end of ``kedro run`` and saved as
    ``data/08_reporting/ingestion_summary.md``) and the ``ingestion.*`` MLflow metrics.

    Per stage: videos processed in this run (done), already up to date (skipped), failed in
    this run, seconds of video processed, compute seconds and compute seconds per second of
    video (RTF). Totals: files found, videos ready (timeline written), quarantined by stage.
    ``video_root`` (``params:ingestion.video_root``) is named in the header.
    """
    stats = {"probe": probe_stats or {}, "decode": decode_stats or {}, "ocr": ocr_stats or {},
             "asr": asr_stats or {}}
    n_found = int(len(probes)) if probes is not None else 0
    n_ready = int(len(videos)) if videos is not None else 0
    q = quarantine if quarantine is not None else pd.DataFrame(columns=["stage", "reason"])
    by_stage = q.groupby("stage").size().to_dict() if len(q) else {}
    lines = [
        "# Video ingestion",
        "",
        f"- video root: `{video_root}`; video files found: {n_found}",
        f"- ready (timeline written): {n_ready}; quarantined: {len(q)}"
        + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(by_stage.items())) + ")"
           if by_stage else ""),
        f"- seconds of video ready: {float(videos['duration_s'].sum()) if n_ready else 0.0:.1f}",
        "",
        "| stage | done | skipped (up to date) | failed | video s | compute s | model load s "
        "| compute s / video s | videos/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    metrics: dict[str, dict[str, float]] = {}

    def metric(name: str, value: float | None) -> None:
        if value is not None:
            metrics[name] = {"value": float(value), "step": 0}

    tot_compute = tot_video = 0.0
    for stage in STAGES:
        s = stats[stage]
        done, skipped, failed = int(s.get("done", 0)), int(s.get("skipped", 0)), \
            int(s.get("failed", 0))
        video_s, compute_s = float(s.get("video_s", 0.0)), float(s.get("compute_s", 0.0))
        setup_s, wall_s = float(s.get("setup_s", 0.0)), float(s.get("wall_s", 0.0))
        rtf = _rtf(compute_s, video_s)
        rate = (done + failed) / wall_s if wall_s > 0 and (done + failed) else None
        lines.append(
            f"| {stage} | {done} | {skipped} | {failed} | {video_s:.1f} | {compute_s:.2f} | "
            f"{setup_s:.2f} | {'-' if rtf is None else f'{rtf:.3f}'} | "
            f"{'-' if rate is None else f'{rate:.2f}'} |")
        for k, v in (("done", done), ("skipped", skipped), ("failed", failed),
                     ("video_s", video_s), ("compute_s", compute_s), ("setup_s", setup_s),
                     ("rtf", rtf)):
            metric(f"{stage}.{k}", v)
        if stage != "probe":
            tot_compute += compute_s + setup_s
            tot_video = max(tot_video, video_s)
    if "ocr_calls" in stats["ocr"]:
        calls, reused = stats["ocr"].get("ocr_calls", 0), stats["ocr"].get("ocr_reused", 0)
        lines += ["", f"OCR: {calls} frames read, {reused} reused from the previous frame "
                      f"(near-identical)."]
        metric("ocr.calls", calls)
        metric("ocr.reused", reused)
    lines += _speech_lines(videos, metric)
    if len(q):
        lines += ["", "## Quarantined", "", "| file | stage | reason |", "|---|---|---|"]
        for r in q.sort_values(["stage", "file"]).head(50).itertuples(index=False):
            reason = str(r.reason).replace("|", "\\|")
            lines.append(f"| `{r.file}` | {r.stage} | {reason} |")
        if len(q) > 50:
            lines.append(f"| … | | {len(q) - 50} more in ingestion_quarantine.csv |")
    metric("videos_found", n_found)
    metric("videos_ready", n_ready)
    metric("quarantined", len(q))
    for stage, n in by_stage.items():
        metric(f"quarantined.{stage}", n)
    metric("overall.compute_s", tot_compute)
    metric("overall.rtf", _rtf(tot_compute, tot_video))
    return "\n".join(lines) + "\n", metrics


def _speech_lines(videos: pd.DataFrame | None, metric) -> list[str]:
    """Speech languages (videos per decoding language and how it was chosen) and the videos
    whose decoded speech a guard dropped entirely (status ok, but no ASR text: listed so the
    loss is visible)."""
    if videos is None or not len(videos) or "asr_language" not in videos:
        return []
    spoken = videos[videos["asr_language"].notna()]
    lines: list[str] = []
    if len(spoken):
        counts = spoken.groupby("asr_language").size().sort_values(ascending=False)
        sources = spoken.groupby("asr_language_source").size().to_dict()
        chosen = ", ".join(f"{k}: {v}" for k, v in sorted(sources.items()))
        lines += ["", "Speech languages: " + ", ".join(f"{k}: {v}" for k, v in counts.items())
                  + (f" (chosen by {chosen})" if chosen else "") + "."]
        for lang, n in counts.items():
            metric(f"asr.language.{lang}", n)
    lost = videos[videos["asr_all_dropped"].notna()] if "asr_all_dropped" in videos else []
    metric("asr.all_dropped", len(lost))
    if len(lost):
        lines += ["", "## Speech dropped entirely", "",
                  "Every decoded segment was dropped by a guard: the timeline has no ASR text.",
                  "", "| file | language | guards |", "|---|---|---|"]
        for r in lost.sort_values("file").itertuples(index=False):
            lines.append(f"| `{r.file}` | {r.asr_language} | {r.asr_all_dropped} |")
    return lines
