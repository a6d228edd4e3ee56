"""Scale-out of video ingestion: videos/min on 1 vs 2 Dask workers, and projections.

Each Dask worker is a separate process (``LocalCluster(processes=True)``) with ONE compute
thread: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` = 1 in its
environment, ``torch.set_num_threads(1)``, RapidOCR's onnxruntime session with
``intra_op_num_threads`` 1 (``ingestion.ocr.threads``) and faster-whisper's CTranslate2 with
``cpu_threads`` 1 (``ingestion.asr.cpu_threads``), which is what
``evads_kedro.executors`` does for ``threads_per_worker: 1``. So the speed-up measures the
distribution layer, not threading.

Per video, a worker runs exactly the ingestion nodes' tasks (``decode_one`` -> ``ocr_one`` ->
``transcribe_one`` of ``evads_kedro.pipelines.ingestion.video_nodes``) with the backends and
parameters of ``conf/base/parameters_ingestion.yml``. Cluster start-up and model loading (one
warm-up per worker that builds the OCR and ASR backends) are timed separately and excluded from
the per-video figures. Projections for 3,961 videos (the paper) and 100,000 use the measured
compute seconds per second of video of one worker (times 33 s, the E-VAds median duration: the
samples are 10-14 s) and the measured 2-worker efficiency. ``--long`` adds the two 40 s
samples (``--only-long``: only them), where per-video start-up weighs less.

    .venv/bin/python benchmarks/scale.py [--videos DIR] [--copies 1] [--workers 1,2]
                                         [--long [DIR]] [--only-long]

``--videos`` defaults to the sample ads in ``data/01_raw/videos`` (else they are rendered into
a temp folder first, ~40 s). Wall times
depend on what else runs on the machine: the JSON records the load average before and after.
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the driver process does no compute; keep it small

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PROJECT_N = (1, 2, 8, 32, 128)
PROJECT_VIDEOS = (3961, 100_000)
#: seconds per video for the projections: the E-VAds median (~33 s; the samples are 10-14 s,
#: real ads run to 270 s), so hours follow compute seconds per second of video
PROJECT_VIDEO_S = 33.0


def _params() -> dict[str, Any]:
    with open(ROOT / "conf/base/parameters_ingestion.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)["ingestion"]


def ingest_video(job: dict[str, Any]) -> dict[str, Any]:
    """Decode, OCR and transcribe one video in this worker; returns the three records' status
    and compute seconds (the frames stay in the worker)."""
    from evads_kedro.pipelines.ingestion import video_nodes as nv

    t0 = time.perf_counter()
    dec = nv.decode_one(job["decode"])
    out = {"video_id": job["decode"]["row"]["video_id"], "decode": dec["record"]["status"]}
    if dec["stack"] is not None:
        stack = dec["stack"]
        ocr = nv.ocr_one({**job["ocr"], "load": lambda: stack})
        asr = nv.transcribe_one(job["asr"])
        out.update(ocr=ocr["record"]["status"], asr=asr["record"]["status"],
                   setup_s=ocr["setup_s"] + asr["setup_s"],
                   n_frames=dec["record"]["n_frames"])
    out["wall_s"] = time.perf_counter() - t0
    out["pid"] = os.getpid()
    return out


def warm_up(ocr_cfg: dict[str, Any], asr_cfgs: list[dict[str, Any]], threads: int) -> dict:
    """Load the models in this worker (what the first video would otherwise pay)."""
    from evads_kedro.executors import limit_threads
    from evads_kedro.pipelines.ingestion import video_nodes as nv
    from evads_kedro.pipelines.ingestion.video_helpers import build_backend

    t0 = time.perf_counter()
    limit_threads(threads)
    build_backend("ocr", nv._worker_cfg(ocr_cfg, "threads", threads))
    for ap in asr_cfgs:
        build_backend("asr", nv._worker_cfg(ap, "cpu_threads", threads))
    import av  # noqa: F401 - decoding libraries too
    import torch

    limit_threads(threads)
    return {"pid": os.getpid(), "load_s": time.perf_counter() - t0,
            "torch_threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS")}


def _jobs(videos: list[Path], params: dict[str, Any], threads: int) -> list[dict[str, Any]]:
    from evads_kedro.backends.ocr_reuse import stack_options
    from evads_kedro.pipelines.ingestion import video_nodes as nv
    from evads_kedro.pipelines.ingestion.video_helpers import (
        asr_params,
        decode_params,
        ocr_params,
        stage_key,
    )
    from evads_kedro.video import probe_video

    dp, op = decode_params(params), ocr_params(params)
    ocr_cfg = dict(params.get("ocr") or {})
    jobs = []
    for path in videos:
        probe = probe_video(path)
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) \
            if path.with_suffix(".json").is_file() else None
        ap = nv.video_asr_params(params, sidecar) if sidecar else asr_params(params)
        row = {"video_id": path.stem, "file": path.name, "path": str(path),
               "sha256": probe.sha256, "duration_s": probe.duration_s,
               "has_audio": bool(probe.has_audio)}
        dkey = stage_key("decode", probe.sha256, dp)
        jobs.append({
            "decode": {"row": row, "key": dkey, "dp": dp, "threads": threads,
                       "method": params.get("decode_method", "auto")},
            "ocr": {"row": row, "key": stage_key("ocr", probe.sha256, op), "dkey": dkey,
                    "ocr_cfg": ocr_cfg, "stack": stack_options(ocr_cfg), "threads": threads},
            "asr": {"row": row, "key": stage_key("asr", probe.sha256, ap), "ap": ap,
                    "threads": threads},
        })
    return jobs


def measure(n_workers: int, jobs: list[dict[str, Any]], params: dict[str, Any]) -> dict:
    """Start a LocalCluster of ``n_workers`` one-thread processes, warm it up, then time the
    ingestion of every job through :class:`evads_kedro.executors.DaskExecutor`."""
    from evads_kedro.executors import DaskExecutor, longest_first

    t0 = time.perf_counter()
    ex = DaskExecutor("local", workers=n_workers, threads_per_worker=1)
    startup_s = time.perf_counter() - t0
    try:
        asr_cfgs = {json.dumps(j["asr"]["ap"], sort_keys=True): j["asr"]["ap"] for j in jobs}
        t1 = time.perf_counter()
        warm = ex.client.run(warm_up, dict(params.get("ocr") or {}), list(asr_cfgs.values()), 1)
        load_wall_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        # longest first, as the ingestion nodes submit (executors.fan_out with a cost)
        order = longest_first(jobs, lambda j: j["decode"]["row"]["duration_s"])
        results = [r for _, r in ex.imap(ingest_video, [jobs[i] for i in order])]
        wall_s = time.perf_counter() - t2
    finally:
        ex.close()
    bad = [r for r in results if r.get("decode") != "ok" or r.get("ocr") != "ok"
           or r.get("asr") != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} videos failed a stage: {bad[:3]}")
    return {
        "workers": n_workers, "videos": len(results), "startup_s": round(startup_s, 2),
        "model_load_s": round(max(w["load_s"] for w in warm.values()), 2),
        "model_load_wall_s": round(load_wall_s, 2),
        "torch_threads": sorted({w["torch_threads"] for w in warm.values()}),
        "wall_s": round(wall_s, 2), "videos_per_min": round(60 * len(results) / wall_s, 2),
        "per_video_s": round(sum(r["wall_s"] for r in results) / len(results), 3),
        "setup_in_videos_s": round(sum(r.get("setup_s", 0.0) for r in results), 3),
        "pids": len({r["pid"] for r in results}),
    }


def _videos(folder: Path | None, copies: int) -> list[Path]:
    default = ROOT / "data/01_raw/videos"
    if folder is None and any(p.with_suffix(".json").is_file() for p in default.glob("ad_*.mp4")):
        folder = default  # the sample ads, rendered by `make samples`
    if folder is None:
        from evads_kedro.sample_videos import generate_sample_videos

        folder = Path(tempfile.mkdtemp(prefix="evads_scale_samples_"))
        print(f"rendering the sample ads into {folder} ...", file=sys.stderr)
        generate_sample_videos(folder, progress=False)
    vids = sorted(p for p in folder.glob("*.mp4"))
    if copies > 1:  # more work per worker, same content under other names
        extra = Path(tempfile.mkdtemp(prefix="evads_scale_copies_"))
        for k in range(1, copies):
            for v in list(vids[: len(vids)]):
                if "_copy" in v.stem:
                    continue
                dst = extra / f"{v.stem}_copy{k}.mp4"
                shutil.copy(v, dst)
                if v.with_suffix(".json").is_file():
                    shutil.copy(v.with_suffix(".json"), dst.with_suffix(".json"))
        vids += sorted(extra.glob("*.mp4"))
    return vids


def _hours(n_videos: int, per_video_s: float, n_workers: int, efficiency: float) -> float:
    eff = 1.0 if n_workers == 1 else efficiency
    return n_videos * per_video_s / (n_workers * eff) / 3600


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=Path, default=None, help="folder of ads (default: samples)")
    ap.add_argument("--copies", type=int, default=1, help="ingest each video this many times")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--long", type=Path, nargs="?", const=ROOT / "data/01_raw/long_videos",
                    default=None, metavar="DIR",
                    help="add the two 40 s long samples (rendered into DIR when missing)")
    ap.add_argument("--only-long", action="store_true", help="with --long: only the long ones")
    args = ap.parse_args(argv)

    params = _params()
    videos = [] if args.only_long and args.long else _videos(args.videos, args.copies)
    if args.long:
        from evads_kedro.sample_videos import LONG_SAMPLE_SCRIPTS, generate_sample_videos

        generate_sample_videos(args.long, LONG_SAMPLE_SCRIPTS, progress=False)
        videos += sorted(args.long / f"{sc.video_id}.mp4" for sc in LONG_SAMPLE_SCRIPTS)
    from evads_kedro.video import probe_video

    video_s = sum(float(probe_video(v).duration_s) for v in videos)
    jobs = _jobs(videos, params, threads=1)
    load_before = os.getloadavg()[0]
    runs = {n: measure(n, jobs, params) for n in (int(x) for x in args.workers.split(","))}
    load_after = os.getloadavg()[0]

    one = runs.get(1)
    two = runs.get(2)
    speedup = round(two["videos_per_min"] / one["videos_per_min"], 3) if one and two else None
    per_video_s = 60 / one["videos_per_min"] if one else None
    # compute seconds per second of video on one 1-thread worker (start-up and loads excluded)
    per_video_second = one["wall_s"] / video_s if one and video_s else None
    eff2 = speedup / 2 if speedup else 1.0

    print(f"{'workers':>7} {'videos':>6} {'startup_s':>9} {'model_load_s':>12} {'wall_s':>7} "
          f"{'videos/min':>10} {'s/video/worker':>14}")
    for r in runs.values():
        print(f"{r['workers']:>7} {r['videos']:>6} {r['startup_s']:>9.2f} "
              f"{r['model_load_s']:>12.2f} {r['wall_s']:>7.2f} {r['videos_per_min']:>10.2f} "
              f"{r['per_video_s']:>14.2f}")
    if speedup:
        print(f"speed-up 1 -> 2 workers: {speedup:.2f}x (target >= 1.6x), efficiency "
              f"{eff2:.2f}; load average {load_before:.1f} before, {load_after:.1f} after")
    projection: dict[str, dict[str, float]] = {}
    if per_video_second:
        print(f"\nProjected hours ({per_video_second:.3f} compute s per video s on one 1-thread "
              f"worker, measured on {video_s:.0f} s of video; {PROJECT_VIDEO_S:.0f} s per video "
              f"(E-VAds median); efficiency {eff2:.2f} from N >= 2; ignores start-up and I/O):")
        print(f"{'videos':>8} " + " ".join(f"{'N=' + str(n):>9}" for n in PROJECT_N))
        for m in PROJECT_VIDEOS:
            projection[str(m)] = {
                str(n): round(_hours(m, per_video_second * PROJECT_VIDEO_S, n, eff2), 3)
                for n in PROJECT_N}
            print(f"{m:>8} " + " ".join(f"{projection[str(m)][str(n)]:>9.2f}"
                                        for n in PROJECT_N))
    print(json.dumps({
        "benchmark": "scale", "n_videos": len(jobs), "threads_per_worker": 1,
        "runs": list(runs.values()), "speedup_2_workers": speedup,
        "efficiency_2_workers": round(eff2, 3) if speedup else None,
        "per_video_s_1_worker": round(per_video_s, 3) if per_video_s else None,
        "video_seconds": round(video_s, 1),
        "compute_s_per_video_s_1_worker": round(per_video_second, 4) if per_video_second
        else None,
        "projection_video_s": PROJECT_VIDEO_S,
        "projected_hours": projection, "load_avg_before": round(load_before, 2),
        "load_avg_after": round(load_after, 2), "cores": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
