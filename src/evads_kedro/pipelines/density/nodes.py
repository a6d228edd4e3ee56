"""Nodes of the ``density`` pipeline: V_den, A_den, O_den per video and per dataset.

SPEC §3: A_den = ASR units / duration, O_den = OCR units / duration summed over *every*
per-second snapshot (text that stays on screen counts each second), V_den = α·mean_i(1 − S̄_i)
over frame embeddings (``evads_kedro.vden``); a dataset's value is the mean over its videos.

Datasets measured (each a row of the table, ``source = measured``):

* the released splits ``evads_sft`` / ``evads_rl``: A_den, O_den from their timelines; V_den
  only for videos whose file exists (the release ships no videos);
* the project's own videos (``density.samples_dataset``, default ``samples``): the ingestion
  pipeline's frames and timelines -> all three densities;
* every ``density.datasets.<name>: <video folder>``: frames sampled here -> V_den, plus A_den /
  O_den from the ingestion pipeline's timeline of the same content (sha256) when that video
  was ingested (``kedro run --pipeline ingestion --params "ingestion.video_root=<folder>"``),
  else from a ``<stem>.timeline.txt`` (E-VAds full timeline) beside it; the warning of a
  folder without either names the command. ``text_source`` says which, per video.

The paper's published values stay in the table as labelled reference rows (``source = paper``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evads_kedro.executors import executor_params, fan_out, limit_threads
from evads_kedro.units import count_units
from evads_kedro.vden import vden_params, visual_density

logger = logging.getLogger(__name__)

PER_VIDEO_COLUMNS = [
    "dataset", "video_id", "category", "duration_s", "asr_units", "ocr_units", "a_den", "o_den",
]
VIDEO_TABLE_COLUMNS = [
    "dataset", "video_id", "category", "category_en", "duration_s", "n_frames", "asr_units",
    "ocr_units", "v_den", "a_den", "o_den", "encoder",
    # where A_den / O_den came from: released (the release's timelines) | ingestion (the
    # ingestion pipeline's timeline of this content hash) | sidecar (<stem>.timeline.txt) | none
    "text_source",
]
VISUAL_COLUMNS = [
    "group", "dataset", "video_id", "category", "duration_s", "n_frames", "v_den", "encoder",
    "cached", "asr_units", "ocr_units", "a_den", "o_den", "text_source",
]
TABLE_COLUMNS = [
    "dataset", "n_videos", "v_den", "a_den", "o_den", "n_v_den", "v_den_median", "a_den_median",
    "o_den_median", "encoder", "source",
]
DENSITIES = ("v_den", "a_den", "o_den")
EMBEDDING_FORMAT = 1
PAPER_ENCODER = "DINOv3-Base (paper)"


# ------------------------------------------------------------------------------ A_den / O_den
def text_density(timelines: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """Per video: unit counts and A_den / O_den from per-second timeline rows.

    ``timelines``: one row per (video_id, second) with ``ocr`` (list of boxes) and ``asr``;
    ``videos``: ``video_id``, ``category``, ``duration_s``. A video without timeline rows has
    zero units (a silent video without captions). Raises on a missing/zero duration.
    """
    cols = ["video_id", "category", "duration_s", "asr_units", "ocr_units", "a_den", "o_den"]
    if videos is None or videos.empty:
        return pd.DataFrame(columns=cols)
    if timelines is None or timelines.empty:
        units = pd.DataFrame(columns=["asr_units", "ocr_units"], index=pd.Index([], name="video_id"))
    else:
        units = timelines.assign(
            ocr_units=timelines["ocr"].map(lambda boxes: sum(count_units(b) for b in _boxes(boxes))),
            asr_units=timelines["asr"].map(lambda t: count_units(t) if isinstance(t, str) else 0),
        ).groupby("video_id")[["asr_units", "ocr_units"]].sum()
    per_video = videos[["video_id", "category", "duration_s"]].merge(
        units, left_on="video_id", right_index=True, how="left"
    )
    per_video[["asr_units", "ocr_units"]] = per_video[["asr_units", "ocr_units"]].fillna(0).astype(int)
    bad = per_video["duration_s"].isna() | (per_video["duration_s"] <= 0)
    if bad.any():
        raise ValueError(
            f"videos without a positive duration: {per_video.loc[bad, 'video_id'].tolist()[:10]};"
            " fix the Duration: header of their timeline"
        )
    per_video["a_den"] = per_video["asr_units"] / per_video["duration_s"]
    per_video["o_den"] = per_video["ocr_units"] / per_video["duration_s"]
    return per_video[cols]


def text_density_per_video(
    timelines: pd.DataFrame, videos: pd.DataFrame, qa: pd.DataFrame
) -> pd.DataFrame:
    """Released splits: per (dataset, video) A_den / O_den; datasets are ``evads_<split>``.

    ``qa`` maps videos to splits: a video in both released splits is measured once and listed
    under each.
    """
    if videos is None or videos.empty or qa is None or qa.empty:
        logger.warning("No released E-VAds tables (set EVADS_DATA_DIR): released rows omitted")
        return pd.DataFrame(columns=PER_VIDEO_COLUMNS)
    per_video = text_density(timelines, videos)
    membership = qa[["split", "video_id"]].drop_duplicates()
    membership["dataset"] = "evads_" + membership["split"]
    out = membership[["dataset", "video_id"]].merge(per_video, on="video_id", how="inner")
    out[["asr_units", "ocr_units"]] = out[["asr_units", "ocr_units"]].astype(int)
    return out[PER_VIDEO_COLUMNS].sort_values(["dataset", "video_id"]).reset_index(drop=True)


def samples_text_density(timelines: pd.DataFrame, videos: pd.DataFrame,
                         name: str, samples_video_root: str | None) -> pd.DataFrame:
    """The project's sample ads (ingestion's ``video_timelines`` / ``ingested_videos`` of the
    videos under ``density.samples_video_root``; videos ingested from other folders belong to
    their ``density.datasets`` row, not to this one) as the table row ``name``
    (``density.samples_dataset``)."""
    videos = samples_only(videos, {"samples_video_root": samples_video_root})
    if videos is None or videos.empty:
        logger.warning("No ingested videos (put ads in data/01_raw/videos, run `make samples`): "
                       "the %r row is omitted", name)
        return pd.DataFrame(columns=PER_VIDEO_COLUMNS)
    out = text_density(timelines, videos)
    out.insert(0, "dataset", name)
    return out[PER_VIDEO_COLUMNS].sort_values("video_id").reset_index(drop=True)


def _boxes(cell: Any) -> list[str]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return [str(b) for b in cell]


# ---------------------------------------------------------------------------------- V_den
def frame_stack_key(timestamps, frames) -> str:
    """Content hash of sampled frames (timestamps, shapes, pixels): the embedding cache key."""
    h = hashlib.sha256(json.dumps([round(float(t), 6) for t in timestamps]).encode())
    for f in frames:
        h.update(f"{f.shape}".encode())
        h.update(np.ascontiguousarray(f).tobytes())
    return "frames:" + h.hexdigest()


def video_file_key(sha256: str, fps: float, max_side: int | None) -> str:
    """Cache key of frames sampled here from a video file: its content hash + sampling."""
    return f"video:{sha256}:fps={float(fps):g}:max_side={max_side}"


class _EmbeddingStore:
    """Bookkeeping of per-video embeddings keyed ``<encoder_id>/<dataset>/<video_id>``: the
    cache loaders handed to the embedding tasks, the new partitions to save, the counters."""

    def __init__(self, cache: Mapping[str, Callable[[], dict]], encoder_params: dict[str, Any]):
        from evads_kedro.backends.encoders import encoder_id

        self._cache = cache or {}
        self.encoder_params = dict(encoder_params or {})
        self.encoder_id = encoder_id(self.encoder_params)  # known without loading the model
        self.new: dict[str, dict[str, Any]] = {}
        self.hits = self.misses = 0
        self.encode_s = 0.0
        self.frames_encoded = 0

    def pid(self, dataset: str, video_id: str) -> str:
        return f"{self.encoder_id}/{dataset}/{video_id}"

    def loader(self, dataset: str, video_id: str) -> Callable[[], dict] | None:
        return self._cache.get(self.pid(dataset, video_id))

    def account(self, dataset: str, video_id: str, out: dict[str, Any]) -> None:
        if out["hit"]:
            self.hits += 1
            return
        self.misses += 1
        self.encode_s += out["encode_s"]
        self.frames_encoded += len(out["data"]["timestamps"])
        self.new[self.pid(dataset, video_id)] = out["data"]


def _cached(job: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The cached embeddings of the job's video if their key and format are current."""
    load = job.get("cache")
    if load is None:
        return None
    try:
        data = load()
    except Exception as exc:  # a corrupt cache file is recomputed, not fatal
        logger.warning("Embedding cache %s/%s unreadable (%s); recomputing", job["dataset"],
                       job["video_id"], exc)
        return None
    meta = data.get("meta", {})
    if meta.get("key") != key or meta.get("format") != EMBEDDING_FORMAT:
        return None
    return data


def embed_one(job: dict[str, Any]) -> dict[str, Any]:
    """Worker task of :func:`visual_density_per_video`: one video's frames -> embeddings.

    ``job["source"]`` is ``stack`` (``load`` = the frame stack's catalog loader) or ``file``
    (``path``: probed and sampled at ``fps`` / ``max_side`` here). Returns ``{"data",
    "hit", "encode_s", "duration_s"}`` (``hit``: the cached embeddings were current) or
    ``{"skip": reason}`` for a video that cannot be read. The encoder is built once per
    process (``build_encoder``); an encoder that cannot be built raises (configuration)."""
    from evads_kedro.backends import encoders
    from evads_kedro.video import InvalidVideo, probe_video, sample_frames

    limit_threads(job.get("threads"))
    vid = job["video_id"]
    try:
        if job["source"] == "stack":
            stack = job["load"]()
            if len(stack) == 0:
                return {"skip": "empty frame stack"}
            key, duration = frame_stack_key(stack.timestamps, stack.frames), _stack_duration(stack)
        else:
            probe = probe_video(Path(job["path"]))
            key = video_file_key(probe.sha256, job["fps"], job["max_side"])
            duration, stack = probe.duration_s, None
        data = _cached(job, key)
        if data is not None:
            return {"data": data, "hit": True, "encode_s": 0.0, "duration_s": duration}
        if stack is None:
            stack = sample_frames(Path(job["path"]), fps=job["fps"], max_side=job["max_side"],
                                  video_id=vid, duration_s=duration)
    except (InvalidVideo, OSError) as exc:
        return {"skip": f"{job.get('path') or 'frame stack'} ({getattr(exc, 'reason', exc)})"}
    except Exception as exc:  # noqa: BLE001 - e.g. a corrupt zip: this video only
        return {"skip": f"frame stack unreadable ({type(exc).__name__}: {exc}); delete "
                        "data/02_intermediate/frames/<id>.zip and rerun ingestion"}
    encoder = encoders.build_encoder(job["encoder"])
    limit_threads(job.get("threads"))  # torch may have been loaded by the build
    t0 = time.perf_counter()
    emb = encoder.encode(stack.frames)
    encode_s = time.perf_counter() - t0
    data = {"embeddings": emb, "timestamps": np.asarray(stack.timestamps, dtype=np.float64),
            "meta": {"key": key, "format": EMBEDDING_FORMAT, "encoder": job["encoder_id"],
                     "encoder_description": encoder.description,
                     "dataset": job["dataset"], "video_id": vid}}
    return {"data": data, "hit": False, "encode_s": encode_s, "duration_s": duration}


def visual_density_per_video(
    frames: Mapping[str, Callable[[], Any]],
    ingested_videos: pd.DataFrame,
    released_videos: pd.DataFrame,
    embedding_cache: Mapping[str, Callable[[], dict]],
    params: dict[str, Any],
) -> tuple[dict[str, dict[str, Any]], pd.DataFrame]:
    """Embed every video's 1 fps frames (cached) and compute V_den.

    Returns the *new* embedding partitions (to save; cached ones are not rewritten) and one row
    per video (``VISUAL_COLUMNS``): the project's videos (``group = samples``), released videos
    whose file exists (``released``), and videos under ``density.datasets`` roots (``extra``).
    The per-video work (:func:`embed_one`: read frames, check the cache, encode) runs on the
    ``density.executor`` (in-process, process pool or Dask); rows keep the order of the videos.
    """
    vp = vden_params(params.get("vden", {}))
    store = _EmbeddingStore(embedding_cache, params.get("encoder", {}))
    ex = executor_params(params.get("executor"))
    threads = ex["threads_per_worker"] if ex["kind"] != "inprocess" else None
    jobs: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def add(ctx: dict[str, Any], **job: Any) -> None:
        jobs.append({**job, "dataset": ctx["dataset"], "video_id": ctx["video_id"],
                     "cache": store.loader(ctx["dataset"], ctx["video_id"]),
                     "encoder": store.encoder_params, "encoder_id": store.encoder_id,
                     "threads": threads, "ctx": ctx})

    # 1. the project's videos: frame stacks written by ingestion
    name = params.get("samples_dataset", "samples")
    info = _video_info(ingested_videos)
    if not frames:
        logger.warning("No frame stacks from ingestion: no V_den for %r", name)
    wanted = sorted(frames)
    if ingested_videos is not None and "video_id" in ingested_videos:
        known = set(samples_only(ingested_videos, params)["video_id"].astype(str))
        stale = [v for v in wanted if v not in known]
        if stale:
            logger.info("%d frame stack(s) of videos no longer ingested ignored (e.g. %s)",
                        len(stale), stale[:3])
        wanted = [v for v in wanted if v in known]
    for video_id in wanted:
        meta = info.get(video_id, {})
        add({"group": "samples", "dataset": name, "video_id": video_id,
             "category": meta.get("category", "unknown"), "duration_s": meta.get("duration_s")},
            source="stack", load=frames[video_id])

    # 2. released videos that exist locally; 3. user folders
    fps, max_side = float(params.get("fps", 1.0)), params.get("max_side")
    limit = params.get("max_videos_per_dataset")
    if params.get("released_vden", True) and released_videos is not None and not released_videos.empty:
        present = released_videos[released_videos["video_exists"].fillna(False).astype(bool)]
        if present.empty:
            logger.info("Released splits: no video files present (the release ships none): "
                        "V_den empty for evads_* rows")
        for r in present.head(limit).itertuples(index=False) if limit else present.itertuples(index=False):
            add({"group": "released", "dataset": "evads_released", "video_id": r.video_id,
                 "category": r.category}, source="file", path=str(r.video_path), fps=fps,
                max_side=max_side)
    ingested_text = _ingested_timelines(ingested_videos)
    for ds_name, root in (params.get("datasets") or {}).items():
        missing = 0
        for path, video_id in _folder_videos(str(ds_name), root, limit):
            category, text = _sidecars(path)
            text_source = "sidecar" if text is not None else "none"
            if ingested_text:
                from evads_kedro.video import sha256_file

                found = ingested_text.get(sha256_file(path))
                if found is not None:
                    text, text_source = found, "ingestion"
            missing += text is None
            add({"group": "extra", "dataset": str(ds_name), "video_id": video_id,
                 "category": category, "text": text, "text_source": text_source},
                source="file", path=str(path), fps=fps, max_side=max_side)
        if missing:
            logger.warning(
                "density.datasets.%s: %d video(s) have no timeline, so no A_den / O_den. Fill "
                "them in with: kedro run --pipeline ingestion --params \"ingestion.video_root=%s\" "
                "(then run density again), or put a <stem>.timeline.txt beside each video.",
                ds_name, missing, root)

    results: dict[int, dict[str, Any]] = {}
    tasks = [{k: v for k, v in job.items() if k != "ctx"} for job in jobs]
    for i, out in fan_out(ex, embed_one, tasks):
        results[i] = out
    rows: list[dict[str, Any]] = []
    for i, job in enumerate(jobs):
        ctx, out = job["ctx"], results[i]
        if "skip" in out:
            logger.warning("%s/%s: %s; skipped", ctx["dataset"], ctx["video_id"], out["skip"])
            continue
        store.account(ctx["dataset"], ctx["video_id"], out)
        duration = ctx.get("duration_s") or out["duration_s"]
        row = _visual_row(ctx["group"], ctx["dataset"], ctx["video_id"], ctx["category"],
                          duration, out["data"], vp, store)
        row["text_source"] = ctx.get("text_source", "ingestion" if ctx["group"] == "samples"
                                     else "none")
        if ctx.get("text") is not None:
            row.update(_text_from_timeline(ctx["text"], row["duration_s"]))
        rows.append(row)

    logger.info(
        "V_den: %d videos (%d embeddings from cache, %d computed: %d frames in %.1f s) in %.1f s"
        " [%s]", len(rows), store.hits, store.misses, store.frames_encoded, store.encode_s,
        time.perf_counter() - t0, ex["kind"],
    )
    table = pd.DataFrame(rows, columns=VISUAL_COLUMNS)
    return store.new, table


def samples_only(videos: pd.DataFrame | None, params: dict[str, Any]) -> pd.DataFrame:
    """The ingested videos whose file lies under ``samples_video_root`` (all of them when the
    key is null or the table has no ``video_path``); says so when others are left out."""
    if videos is None or videos.empty:
        return pd.DataFrame(columns=["video_id"]) if videos is None else videos
    root = params.get("samples_video_root")
    if not root or "video_path" not in videos:
        return videos
    base = Path(str(root)).expanduser()
    # a relative root is the project's folder wherever the project lives (a run's cwd or a
    # copy of the project): match it as a run of path components
    parts = tuple(x for x in base.parts if x not in (".", ""))

    def under(p: Any) -> bool:
        try:
            path = Path(str(p)).expanduser()
            if base.is_absolute():
                return path.resolve().is_relative_to(base.resolve())
            dirs = path.resolve().parts[:-1] if path.is_absolute() else path.parts[:-1]
            return any(dirs[i:i + len(parts)] == parts for i in range(len(dirs)))
        except (OSError, ValueError):
            return False

    keep = videos["video_path"].map(under)
    if not keep.all():
        logger.info("%d ingested video(s) outside %s are not sample ads: left out of the %r row "
                    "(measure them with density.datasets.NAME=<their folder>)", int((~keep).sum()),
                    base, params.get("samples_dataset", "samples"))
    return videos[keep.astype(bool)]


def _ingested_timelines(videos: pd.DataFrame | None) -> dict[str, str]:
    """{content sha256: full timeline text} of the videos the ingestion pipeline has ingested
    (from any video root), so a folder ingested before is matched by content, not by name."""
    if videos is None or videos.empty or "content_sha256" not in videos:
        return {}
    ok = videos.dropna(subset=["content_sha256", "timeline_full"])
    return dict(zip(ok["content_sha256"].astype(str), ok["timeline_full"].astype(str),
                    strict=True))


def _video_info(videos: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    if videos is None or videos.empty:
        return {}
    cols = [c for c in ("category", "duration_s") if c in videos]
    return videos.set_index("video_id")[cols].to_dict("index")


def _stack_duration(stack) -> float:
    fps = float(stack.meta.get("fps") or 1.0)
    return float(stack.timestamps[-1]) + 1.0 / fps if len(stack) else 0.0


def _visual_row(group, dataset, video_id, category, duration_s, data, vp, store, text=None):
    ts = data["timestamps"]
    v = visual_density(data["embeddings"], ts, **vp)
    if math.isnan(v):
        logger.warning("%s/%s: %d frame(s), no temporal neighbour within %s s: V_den undefined",
                       dataset, video_id, len(ts), vp.get("window", 2.0))
    row = {"group": group, "dataset": dataset, "video_id": str(video_id), "category": category,
           "duration_s": float(duration_s), "n_frames": int(len(ts)), "v_den": v,
           "encoder": data["meta"].get("encoder", store.encoder_id),
           "cached": store.pid(dataset, video_id) not in store.new,
           "asr_units": np.nan, "ocr_units": np.nan, "a_den": np.nan, "o_den": np.nan}
    if text:
        row.update(text)
    return row


def _folder_videos(name: str, root, limit) -> list[tuple[Path, str]]:
    """``(path, video_id)`` of the videos under ``density.datasets.<name>``, sorted."""
    from evads_kedro.video import VIDEO_EXTENSIONS

    folder = Path(str(root)).expanduser()
    if not folder.is_dir():
        logger.warning("density.datasets.%s: %s is not a folder; row omitted", name, folder)
        return []
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        logger.warning("density.datasets.%s: no videos (%s) under %s; row omitted", name,
                       ", ".join(VIDEO_EXTENSIONS), folder)
        return []
    if limit:
        files = files[: int(limit)]
    logger.info("density.datasets.%s: %d videos under %s", name, len(files), folder)
    return [(p, p.relative_to(folder).with_suffix("").as_posix()) for p in files]


def _sidecars(path: Path) -> tuple[str, str | None]:
    """Category from ``<stem>.json`` (``category`` key) and a ``<stem>.timeline.txt``."""
    category = "unknown"
    js = path.with_suffix(".json")
    if js.is_file():
        try:
            category = str(json.loads(js.read_text(encoding="utf-8")).get("category") or category)
        except (OSError, ValueError, AttributeError):
            logger.warning("%s: unreadable sidecar json, category unknown", js)
    tl = path.with_name(path.stem + ".timeline.txt")
    text = tl.read_text(encoding="utf-8") if tl.is_file() else None
    return category, text


def _text_from_timeline(text: str, duration_s: float) -> dict[str, Any]:
    from evads_kedro.timeline import parse_timeline

    try:
        tl = parse_timeline(text)
        recs = tl.per_second()
    except ValueError as exc:
        logger.warning("unparseable timeline sidecar (%s): A_den/O_den omitted", exc)
        return {}
    duration = tl.duration_seconds or duration_s
    asr = sum(count_units(r.asr) for r in recs if r.asr)
    ocr = sum(count_units(b) for r in recs for b in r.ocr)
    out = {"asr_units": asr, "ocr_units": ocr}
    if duration > 0:
        out |= {"a_den": asr / duration, "o_den": ocr / duration}
    if tl.category:
        out["category"] = tl.category
    return out


# --------------------------------------------------------------------------------- tables
def merge_video_density(released: pd.DataFrame, samples: pd.DataFrame,
                        visual: pd.DataFrame) -> pd.DataFrame:
    """One per-video table (``VIDEO_TABLE_COLUMNS``) over every measured dataset."""
    from evads_kedro.taxonomy import category_name

    frames = []
    vis = visual if visual is not None else pd.DataFrame(columns=VISUAL_COLUMNS)
    rel_vis = vis[vis["group"] == "released"][["video_id", "v_den", "n_frames", "encoder"]]
    if released is not None and not released.empty:
        frames.append(released.merge(rel_vis, on="video_id", how="left"))
    samp_vis = vis[vis["group"] == "samples"][["video_id", "v_den", "n_frames", "encoder"]]
    if samples is not None and not samples.empty:
        frames.append(samples.merge(samp_vis, on="video_id", how="outer"))
        name = samples["dataset"].iloc[0]
        frames[-1]["dataset"] = frames[-1]["dataset"].fillna(name)
    elif not samp_vis.empty:
        frames.append(vis[vis["group"] == "samples"])
    frames.append(vis[vis["group"] == "extra"])
    frames = [f for f in frames if not f.empty]
    if not frames:
        logger.warning("Nothing measured: only the paper's reference rows will be reported")
        return pd.DataFrame(columns=VIDEO_TABLE_COLUMNS)
    out = pd.concat([f.reindex(columns=VIDEO_TABLE_COLUMNS) for f in frames], ignore_index=True)
    out["category"] = out["category"].fillna("unknown")
    out["text_source"] = out["text_source"].fillna(
        out["dataset"].map(lambda d: "released" if str(d).startswith("evads_") else "ingestion"))
    out["category_en"] = out["category"].map(category_name)
    for col in ("duration_s", "v_den", "a_den", "o_den"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    for col in ("n_frames", "asr_units", "ocr_units"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    return out.sort_values(["dataset", "video_id"]).reset_index(drop=True)


def density_table(per_video: pd.DataFrame,
                  paper_reference: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Per-dataset means (``source = measured``) followed by the paper's rows (``paper``:
    ``density.paper_reference``, dataset -> {v_den, a_den, o_den})."""
    per_video = per_video.copy()
    for col in DENSITIES:
        if col not in per_video:
            per_video[col] = np.nan
        per_video[col] = pd.to_numeric(per_video[col], errors="coerce").astype(float)
    if "encoder" not in per_video:
        per_video["encoder"] = None
    rows = []
    for name, g in per_video.groupby("dataset", sort=True):
        encoders = sorted({str(e) for e in g["encoder"].dropna()})
        rows.append({
            "dataset": name, "n_videos": g["video_id"].nunique(),
            "v_den": g["v_den"].mean(), "a_den": g["a_den"].mean(), "o_den": g["o_den"].mean(),
            "n_v_den": int(g["v_den"].notna().sum()), "v_den_median": g["v_den"].median(),
            "a_den_median": g["a_den"].median(), "o_den_median": g["o_den"].median(),
            "encoder": ",".join(encoders) or None, "source": "measured",
        })
    paper = [
        {"dataset": f"{name} (paper)", "n_videos": np.nan, "v_den": v["v_den"],
         "a_den": v["a_den"], "o_den": v["o_den"], "n_v_den": np.nan, "v_den_median": np.nan,
         "a_den_median": np.nan, "o_den_median": np.nan, "encoder": PAPER_ENCODER, "source": "paper"}
        for name, v in paper_reference.items()
    ]
    table = pd.DataFrame(rows + paper, columns=TABLE_COLUMNS)
    for col in ("n_videos", "n_v_den"):
        table[col] = pd.to_numeric(table[col]).astype("Int64")
    for col in ("v_den", "a_den", "o_den", "v_den_median", "a_den_median", "o_den_median"):
        table[col] = pd.to_numeric(table[col]).astype(float)
    return table


def density_report(table: pd.DataFrame) -> tuple[str, dict[str, Any]]:
    """The table as markdown (the run prints it at the end, see hooks) and MLflow metrics."""
    shown = table.copy()
    for col in ("v_den", "a_den", "o_den", "v_den_median", "a_den_median", "o_den_median"):
        if col in shown:
            shown[col] = shown[col].map(lambda x: "" if pd.isna(x) else f"{x:.2f}")
    for col in ("n_videos", "n_v_den"):
        if col in shown:
            shown[col] = shown[col].map(lambda x: "" if pd.isna(x) else str(int(x)))
    if "encoder" in shown:
        shown["encoder"] = shown["encoder"].map(lambda x: "" if x is None or pd.isna(x) else str(x))
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    lines = [header, rule] + ["| " + " | ".join(map(str, r)) + " |" for r in shown.itertuples(index=False)]
    measured = table[table["source"] == "measured"]
    notes = ["", "Units: A_den, O_den = text units per second (one CJK character or one "
             "[A-Za-z0-9]+ run); V_den = alpha * mean(1 - weighted neighbour cosine), 0-100 scale."]
    if "encoder" in measured and measured["encoder"].notna().any():
        notes.append("Measured V_den uses the encoder in the `encoder` column; the paper used "
                     "DINOv3-Base, so measured and paper V_den are on different scales: compare "
                     "measured rows with each other (see docs/density.md).")
    markdown = "\n".join(lines + notes) + "\n"
    metrics = {}
    for r in measured.itertuples(index=False):
        for col in DENSITIES:
            value = getattr(r, col)
            if not pd.isna(value):
                metrics[f"{r.dataset}.{col}"] = {"value": float(value), "step": 0}
        metrics[f"{r.dataset}.n_videos"] = {"value": float(r.n_videos), "step": 0}
    return markdown, metrics
