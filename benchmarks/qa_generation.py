"""QA yield of the packaged SmolLM2 writer, before/after JSON-schema decoding.

Runs the qa_generation pipeline (tag ``qa_generation``: agents, verifier, blind check, dedup,
balance) on ``--videos`` ads twice with the default parameters except
``structured: false`` (free text with the JSON prefill: "before") and ``structured: auto``
(xgrammar-constrained JSON: "after"), one call per persona per video, and prints per variant:
calls, completion tokens, wall time, candidates, items passing the verifier per video, final
items and rejections by (stage, reason).

Ads: ``--source released`` (default) takes the released RL videos with the shortest timelines
(CPU budget); ``--source samples`` the first synthetic sample ads' ground truth (as
``tests/test_qa_generation_local.py``).

    .venv/bin/python benchmarks/qa_generation.py [--videos 2] [--threads 1]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from test_qa_generation_pipeline import OUTPUTS  # noqa: E402  (the pipeline's datasets)


def released_videos(data_dir: Path, n: int) -> pd.DataFrame:
    from evads_kedro.pipelines.ingestion.released import import_splits

    rl = pd.read_parquet(data_dir / "EVAds_RL.parquet")
    videos = import_splits([("rl", rl)], data_dir / "videos").videos
    videos = videos.assign(n=videos["timeline_full"].str.len()).sort_values(["n", "video_id"])
    return pd.DataFrame([{"video_id": r.video_id, "category": r.category,
                          "duration_s": float(r.duration_s), "timeline_full": r.timeline_full,
                          "timeline_asr": None} for r in videos.head(n).itertuples()])


def sample_videos(n: int) -> pd.DataFrame:
    from evads_kedro.sample_videos import generate_sample_videos, load_ground_truth
    from test_qa_generation_local import sample_timeline

    out = ROOT / "data/01_raw/sample_videos"
    rows = generate_sample_videos(out, progress=False)[:n]
    gts = [load_ground_truth(r["json_path"]) for r in rows]
    return pd.DataFrame([{"video_id": r["video_id"], "category": g["category"],
                          "duration_s": float(g["duration_s"]), "timeline_full": sample_timeline(g),
                          "timeline_asr": None} for r, g in zip(rows, gts, strict=True)])


class _Kept:
    @staticmethod
    def make():
        from kedro.io import MemoryDataset

        class Kept(MemoryDataset):
            def _release(self) -> None:  # keep outputs for the figures
                pass
        return Kept


def run_variant(videos: pd.DataFrame, structured, threads: int, workdir: Path,
                personas: list[str] | None = None) -> dict:
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from evads_kedro.backends.llm import clear_chat_cache
    from evads_kedro.calls.cache import JsonlCache
    from evads_kedro.pipelines.qa_generation import create_pipeline

    clear_chat_cache()
    params = yaml.safe_load((ROOT / "conf/base/parameters_qa_generation.yml")
                            .read_text(encoding="utf-8"))["qa_generation"]
    params["prompt_dir"] = str(ROOT / params["prompt_dir"])
    params["llm"] = {**params["llm"], "num_threads": threads}
    params["calls_per_agent"] = 1
    params["structured"] = structured
    if personas:
        params["personas"] = {k: v for k, v in params["personas"].items() if k in personas}
    cache_path = workdir / f"cache_{structured}.jsonl"
    kept = _Kept.make()
    ds = {"ingested_videos": MemoryDataset(videos),
          "params:qa_generation": MemoryDataset(params, copy_mode="deepcopy"),
          "qa_generation_cache": MemoryDataset(JsonlCache(cache_path), copy_mode="assign"),
          "frames": MemoryDataset({}, copy_mode="assign")}
    ds.update({n: kept(copy_mode="assign") for n in OUTPUTS})
    catalog = DataCatalog(ds)
    t0 = time.perf_counter()
    SequentialRunner().run(create_pipeline().only_nodes_with_tags("qa_generation"), catalog)
    wall = time.perf_counter() - t0
    out = {n: catalog.load(n) for n in OUTPUTS}
    cand, call_rej = out["qa_generation_candidates"], out["qa_generation_call_rejections"]
    rej, verified = out["qa_generation_rejections"], out["qa_generation_verified"]
    records = [json.loads(line) for line in cache_path.read_text().splitlines() if line.strip()]
    chats = [r for r in records if "text" in r]  # agent, blind-check and critic calls
    heads = rej["reason"].astype(str).str.split(":").str[0] if len(rej) else pd.Series([])
    passed = verified[verified["status"] == "verified"].groupby("video_id").size() \
        if len(verified) else pd.Series(dtype=int)
    return {
        "structured": structured,
        "calls": int(cand["call_key"].nunique() + len(call_rej)) if len(cand) else len(call_rej),
        "chat_calls": len(chats),
        "completion_tokens": int(sum(r.get("completion_tokens") or 0 for r in chats)),
        "wall_s": round(wall, 1),
        "candidates": int(len(cand)),
        "parse_rejections": int(len(call_rej)),
        "verifier_passed_per_video": {str(v): int(passed.get(v, 0))
                                      for v in videos["video_id"]},
        "final_items": int(len(out["qa_generation_items"])),
        "rejections": {f"{s}:{h}": int(c) for (s, h), c in
                       rej.assign(head=heads).groupby(["stage", "head"]).size().items()}
        if len(rej) else {},
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=("released", "samples"), default="released")
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("EVADS_DATA_DIR", ROOT.parent / "shared/evads")))
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=["false", "auto"])
    ap.add_argument("--personas", nargs="+", default=None, help="a subset (default: all 5)")
    args = ap.parse_args(argv)
    videos = released_videos(args.data_dir, args.videos) if args.source == "released" \
        else sample_videos(args.videos)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in args.variants:
            structured = {"false": False, "true": True}.get(v, v)
            results.append(run_variant(videos, structured, args.threads, Path(tmp),
                                       args.personas))
            print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    print(f"\n{len(videos)} {args.source} ads ({', '.join(map(str, videos['video_id']))}), "
          "one call per persona per video, packaged SmolLM2-135M")
    print(f"{'structured':10s} {'calls':>5s} {'tokens':>6s} {'wall s':>7s} {'cand':>5s} "
          f"{'parse rej':>9s} {'verified':>8s} {'final':>5s}")
    for r in results:
        print(f"{str(r['structured']):10s} {r['calls']:5d} {r['completion_tokens']:6d} "
              f"{r['wall_s']:7.1f} {r['candidates']:5d} {r['parse_rejections']:9d} "
              f"{sum(r['verifier_passed_per_video'].values()):8d} {r['final_items']:5d}")
        print("   rejections:", r["rejections"])
    out = {"source": args.source, "videos": list(map(str, videos["video_id"])),
           "variants": results}
    print(json.dumps(out, ensure_ascii=False))
    return out


if __name__ == "__main__":
    main()
