"""Frame-encoder cost for V_den on this machine: per frame and per 30 s video (30 frames at 1 fps).

Encodes 360x640 synthetic ad frames (the sample-video size; every frame is resized to the
encoder's input, so the source size barely matters) with batch size 1 and 16, after a warm-up,
and reports the median of ``--repeats`` runs. Also times V_den itself (numpy, negligible) and
a cache hit (loading one ``.npz``), and prints the encoder's cosine similarity of unrelated
natural photos (scikit-image's sample images, when installed): the top of its V_den scale.

    .venv/bin/python benchmarks/density.py [--encoder packaged:efficientnet_lite0] [--repeats 3] [--threads N]

On a shared, oversubscribed machine (load average >> cores, printed below) torch's worker
threads wait for each other and batch-1 timings inflate most; ``--threads 1`` shows the effect.

Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from evads_kedro.backends.encoders import build_encoder  # noqa: E402
from evads_kedro.datasets.embeddings import EmbeddingsDataset  # noqa: E402
from evads_kedro.synth.draw import random_image  # noqa: E402
from evads_kedro.vden import visual_density  # noqa: E402

VIDEO_S = 30


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _natural_photos() -> list[np.ndarray]:
    try:
        import skimage.data as data
    except ImportError:
        return []
    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "horse",
                 "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina"):
        try:
            a = np.asarray(getattr(data, name)())
        except Exception:  # an image needing a download: skip
            continue
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        if a.dtype != np.uint8:
            a = (a * 255 if a.max() <= 1 else a).clip(0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(a[..., :3]))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="packaged:efficientnet_lite0")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice, one per core)")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    enc = build_encoder({"name": args.encoder, "device": args.device, "batch_size": 16})
    build_s = time.perf_counter() - t0
    frames = [np.asarray(random_image(seed, 360, 640)) for seed in range(VIDEO_S)]
    enc.encode(frames[:4], batch_size=4)  # warm-up (allocations, kernels)

    rows = []
    for bs in (1, 16):
        sec = _median_time(lambda bs=bs: enc.encode(frames, batch_size=bs), args.repeats)
        rows.append({"batch_size": bs, "s_per_video": sec, "ms_per_frame": 1000 * sec / VIDEO_S})
    emb = enc.encode(frames)
    ts = [float(i) for i in range(VIDEO_S)]
    vden_ms = 1000 * _median_time(lambda: visual_density(emb, ts), max(args.repeats, 20))
    with tempfile.TemporaryDirectory() as td:
        ds = EmbeddingsDataset(os.path.join(td, "v.npz"))
        ds.save({"embeddings": emb, "timestamps": ts, "meta": {"key": "x"}})
        cache_ms = 1000 * _median_time(ds.load, max(args.repeats, 20))

    photos = _natural_photos()
    unrelated_cos = None
    if len(photos) >= 2:
        e = enc.encode(photos)
        sim = e @ e.T
        unrelated_cos = float(sim[np.triu_indices(len(photos), 1)].mean())

    print(f"encoder {enc.encoder_id} on {enc.device} ({os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads); built in {build_s:.1f} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'batch':>5} {'ms/frame':>9} {'s per 30 s video':>17} {'videos/min':>11}")
    for r in rows:
        print(f"{r['batch_size']:>5} {r['ms_per_frame']:>9.1f} {r['s_per_video']:>17.2f} "
              f"{60 / r['s_per_video']:>11.1f}")
    by = {r["batch_size"]: r for r in rows}
    speedup = by[1]["s_per_video"] / by[16]["s_per_video"]
    print(f"batch 16 vs 1: {speedup:.2f}x faster; V_den of a 30-frame video {vden_ms:.2f} ms; "
          f"cache hit (npz load) {cache_ms:.2f} ms")
    if unrelated_cos is not None:
        print(f"mean cosine of {len(photos)} unrelated natural photos: {unrelated_cos:.3f} "
              f"(V_den of a video cutting to an unrelated photo every second ~ "
              f"{100 * (1 - unrelated_cos):.0f} at alpha 100)")
    result = {
        "benchmark": "density_encoder", "encoder": enc.encoder_id, "device": enc.device,
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2), "build_s": round(build_s, 2),
        "ms_per_frame_bs1": round(by[1]["ms_per_frame"], 1),
        "ms_per_frame_bs16": round(by[16]["ms_per_frame"], 1),
        "s_per_30s_video_bs1": round(by[1]["s_per_video"], 3),
        "s_per_30s_video_bs16": round(by[16]["s_per_video"], 3),
        "speedup_bs16_vs_bs1": round(speedup, 2),
        "vden_ms_per_video": round(vden_ms, 3), "cache_hit_ms_per_video": round(cache_ms, 3),
        "unrelated_photo_cosine": None if unrelated_cos is None else round(unrelated_cos, 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
