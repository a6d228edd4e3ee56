"""Density figures (matplotlib, Agg): per-dataset comparison, per-video spread, per category.

Each function returns one ``Figure`` saved by the catalog (``matplotlib.MatplotlibDataset``
wrapped in ``MlflowArtifactDataset``). Every panel is titled, both axes are labelled with
units, measured and published values are told apart by colour and legend, and a figure with
nothing to show says so instead of being blank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LABELS = {
    "v_den": ("V_den: visual change", "V_den (0-100 scale, see note)"),
    "a_den": ("A_den: speech (ASR)", "A_den (spoken units per second)"),
    "o_den": ("O_den: on-screen text (OCR)", "O_den (caption units per second)"),
}
MEASURED, PAPER = "#1f77b4", "#9a9a9a"
UNIT_NOTE = ("Units: one CJK character or one [A-Za-z0-9]+ run. V_den = 100 x mean(1 - weighted "
             "cosine similarity of each 1-fps frame to its neighbours within +/-2 s).")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 12, "axes.titleweight": "bold",
                         "axes.labelsize": 10, "figure.titlesize": 14})
    return plt


def _encoder_note(encoders: list[str]) -> str:
    if not encoders:
        return "No video frames were measured in this run, so measured V_den is empty."
    enc = ", ".join(encoders)
    stand_in = any("efficientnet" in e for e in encoders)
    note = f"Measured V_den: frame encoder {enc}"
    if stand_in:
        note += " (a stand-in for the paper's DINOv3-Base)"
    return note + ". Different encoders give different V_den scales: compare measured rows with each other."


def _measured_encoders(table: pd.DataFrame) -> list[str]:
    enc = table.loc[table["source"] == "measured", "encoder"].dropna()
    return sorted({e for cell in enc for e in str(cell).split(",") if e})


def comparison_figure(table: pd.DataFrame):
    """Three horizontal bar panels: every dataset's mean V_den / A_den / O_den, measured vs paper."""
    plt = _plt()
    t = table.reset_index(drop=True)
    labels = [
        f"{r.dataset}  (n={int(r.n_videos)})" if r.source == "measured" and not pd.isna(r.n_videos)
        else str(r.dataset) for r in t.itertuples(index=False)
    ]
    n = len(t)
    fig, axes = plt.subplots(1, 3, figsize=(16, 2.2 + 0.42 * max(n, 4)), sharey=True)
    y = np.arange(n)
    colors = [MEASURED if s == "measured" else PAPER for s in t["source"]]
    for ax, col in zip(axes, ("v_den", "a_den", "o_den"), strict=True):
        vals = pd.to_numeric(t[col], errors="coerce").to_numpy(dtype=float)
        ax.barh(y, np.nan_to_num(vals), color=colors, edgecolor="black", linewidth=0.4)
        top = np.nanmax(vals) if np.isfinite(vals).any() else 1.0
        for yi, v in zip(y, vals, strict=True):
            if np.isfinite(v):
                ax.text(v + top * 0.01, yi, f"{v:.2f}", va="center", fontsize=9)
            else:
                ax.text(top * 0.01, yi, "not measured (no videos)", va="center", fontsize=8,
                        style="italic", color="#555555")
        ax.set_xlim(0, top * 1.22 if top > 0 else 1)
        ax.set_title(LABELS[col][0])
        ax.set_xlabel(LABELS[col][1])
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    axes[0].set_ylabel("dataset")
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=MEASURED, label="measured in this run (mean over videos)"),
                        Patch(color=PAPER, label="published in the E-VAds paper (reference)")],
               loc="upper right", ncol=2, frameon=False)
    fig.suptitle("Information density per dataset: measured vs the E-VAds paper", x=0.01, ha="left")
    fig.text(0.01, 0.005, _encoder_note(_measured_encoders(t)) + "\n" + UNIT_NOTE, fontsize=8.5,
             color="#333333", va="bottom")
    fig.tight_layout(rect=(0, 0.07, 1, 0.94))
    return fig


def distribution_figure(per_video: pd.DataFrame, table: pd.DataFrame | None = None):
    """Per-video spread of each density, one box (with the individual videos) per dataset."""
    plt = _plt()
    datasets = sorted(per_video["dataset"].unique()) if not per_video.empty else []
    fig, axes = plt.subplots(1, 3, figsize=(16, 1.8 + 0.55 * max(len(datasets), 3)), sharey=True)
    rng = np.random.default_rng(0)
    for ax, col in zip(axes, ("v_den", "a_den", "o_den"), strict=True):
        ax.set_title(LABELS[col][0])
        ax.set_xlabel(LABELS[col][1] + ", one value per video")
        ax.grid(axis="x", alpha=0.3)
        data, pos = [], []
        for i, ds in enumerate(datasets):
            vals = pd.to_numeric(per_video.loc[per_video["dataset"] == ds, col],
                                 errors="coerce").dropna().to_numpy(dtype=float)
            if vals.size:
                data.append(vals)
                pos.append(i)
                ax.scatter(vals, i + rng.uniform(-0.18, 0.18, vals.size), s=9, alpha=0.45,
                           color="#d62728", zorder=3, linewidths=0)
            else:
                ax.text(0.02, i, "not measured", transform=ax.get_yaxis_transform(), va="center",
                        fontsize=8, style="italic", color="#555555")
        if data:
            allv = np.concatenate(data)
            hi = float(np.percentile(allv, 99)) * 1.15 if allv.size >= 20 else float(allv.max()) * 1.1
            hi = max(hi, float(allv.max()) if allv.size < 20 else 0.0, 1e-6)
            beyond = int((allv > hi).sum())
            ax.set_xlim(0, hi)
            if beyond:
                ax.text(0.99, 0.01, f"{beyond} video(s) beyond {hi:.0f} not shown (max {allv.max():.0f})",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="#555555")
            ax.boxplot(data, positions=pos, orientation="horizontal", widths=0.6,
                       showfliers=False, patch_artist=True,
                       boxprops={"facecolor": "#c6dbef", "edgecolor": "black"},
                       medianprops={"color": "black", "linewidth": 1.5})
        if not datasets:
            ax.text(0.5, 0.5, "no measured videos in this run", ha="center", va="center",
                    transform=ax.transAxes, style="italic")
            ax.set_xticks([])
            ax.set_yticks([])
    if datasets:
        counts = per_video.groupby("dataset")["video_id"].nunique()
        axes[0].set_yticks(range(len(datasets)), [f"{d}  (n={counts[d]})" for d in datasets])
        axes[0].set_ylim(len(datasets) - 0.5, -0.5)
    axes[0].set_ylabel("dataset (n = videos)")
    fig.suptitle("Per-video density distributions (box = quartiles, line = median, dots = videos)",
                 x=0.01, ha="left")
    encoders = sorted({str(e) for e in per_video.get("encoder", pd.Series(dtype=object)).dropna()})
    fig.text(0.01, 0.005, _encoder_note(encoders) + "\n" + UNIT_NOTE, fontsize=8.5,
             color="#333333", va="bottom")
    fig.tight_layout(rect=(0, 0.08, 1, 0.94))
    return fig


def category_figure(per_video: pd.DataFrame):
    """Mean density per product category, one bar per measured dataset (n videos on the bar)."""
    plt = _plt()
    from evads_kedro.taxonomy import CATEGORIES

    order = [c.name for c in CATEGORIES.values()] + ["Unknown category"]
    present = [c for c in order if not per_video.empty and c in set(per_video["category_en"])]
    datasets = sorted(per_video["dataset"].unique()) if not per_video.empty else []
    n_cat = max(len(present), 1)
    fig, axes = plt.subplots(1, 3, figsize=(16, 2.2 + 0.32 * n_cat * max(len(datasets), 1)),
                             sharey=True)
    cmap = plt.get_cmap("tab10")
    height = 0.8 / max(len(datasets), 1)
    for ax, col in zip(axes, ("v_den", "a_den", "o_den"), strict=True):
        ax.set_title(LABELS[col][0])
        ax.set_xlabel(LABELS[col][1] + ", mean over the category's videos")
        ax.grid(axis="x", alpha=0.3)
        for k, ds in enumerate(datasets):
            sub = per_video[per_video["dataset"] == ds]
            g = sub.groupby("category_en")[col].agg(["mean", "count"])
            ys, ms, ns = [], [], []
            for ci, cat in enumerate(present):
                if cat in g.index and g.loc[cat, "count"] > 0:
                    ys.append(ci - 0.4 + height * (k + 0.5))
                    ms.append(float(g.loc[cat, "mean"]))
                    ns.append(int(g.loc[cat, "count"]))
            ax.barh(ys, ms, height=height * 0.95, color=cmap(k % 10), edgecolor="black",
                    linewidth=0.3)
            for yi, m, c in zip(ys, ms, ns, strict=True):
                ax.text(m, yi, f" {m:.1f} (n={c})", va="center", fontsize=7.5)
            if ms:
                ax.set_xlim(0, max(ax.get_xlim()[1], max(ms) * 1.3))
        if not datasets:
            ax.text(0.5, 0.5, "no measured videos in this run", ha="center", va="center",
                    transform=ax.transAxes, style="italic")
            ax.set_xticks([])
            ax.set_yticks([])
    if present:
        axes[0].set_yticks(range(len(present)), present)
        axes[0].set_ylim(len(present) - 0.5, -0.5)
    axes[0].set_ylabel("product category")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k % 10)) for k in range(len(datasets))]
    if handles:
        fig.legend(handles, datasets, title="dataset", loc="upper right", ncol=min(len(datasets), 4),
                   frameon=False)
    fig.suptitle("Density by product category (bars: dataset mean; n = videos)", x=0.01, ha="left")
    encoders = sorted({str(e) for e in per_video.get("encoder", pd.Series(dtype=object)).dropna()})
    fig.text(0.01, 0.005, _encoder_note(encoders) + " A category with no bar has no video in "
             "that dataset (V_den: no video file).", fontsize=8.5, color="#333333", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 0.92))
    return fig


def density_plots(per_video: pd.DataFrame, table: pd.DataFrame):
    """The three report figures (comparison, distributions, categories)."""
    per_video = per_video.copy()
    if "category_en" not in per_video:
        per_video["category_en"] = "Unknown category"
    return (comparison_figure(table), distribution_figure(per_video, table),
            category_figure(per_video))
