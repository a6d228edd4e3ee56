"""Judge check on released rows with the offline judges: can they discriminate at all?

Runs the probe battery of ``pipelines/evaluation/judge_probes.py`` (reference 1.0, half the
key points 0.5, a fabricated quote 0.25, another video's answer 0, empty 0) on
``--n-questions`` released questions (test split when present, else RL; 5 probes each) with

* ``smollm2``: the packaged SmolLM2-135M as a constrained local judge (the offline default),
  on the first ``--record-chars`` characters of each OCR/ASR record (CPU budget), and
* ``overlap``: the token-overlap smoke judge (``rl_training/smoke_judge.py``) behind the real
  HTTP client, repeated with seed + 1;

then asks the constrained judge for each legal score in turn (``levels_reachable``). Calls are
cached in ``--cache`` (a rerun is free).

    .venv/bin/python benchmarks/judge.py [--n-questions 10] [--record-chars 600]

Prints a table; the last line is one JSON object with ``probes``, ``levels_reachable``,
``auc_reference_vs_swapped``, ``mean_r5_by_probe``, ``invalid_rate`` (of the SmolLM2 judge) and
every judge's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from evads_kedro.calls.cache import JsonlCache  # noqa: E402
from evads_kedro.calls.judge import judge_settings, levels_reachable  # noqa: E402
from evads_kedro.pipelines.evaluation.judge_probes import (  # noqa: E402
    check_summary,
    finite,
    probe_rows,
    score_probes,
)
from evads_kedro.pipelines.rl_training.smoke_judge import SmokeJudgeServer  # noqa: E402

JUDGE_PROMPT = str(ROOT / "conf/base/prompts/evaluation/judge.txt")


def released_qa(data_dir: Path):
    import pandas as pd

    from evads_kedro.pipelines.ingestion.released import import_splits

    splits = [(s, pd.read_parquet(data_dir / f)) for s, f in
              (("rl", "EVAds_RL.parquet"), ("sft", "EVAds_SFT.parquet"))
              if (data_dir / f).is_file()]
    if not splits:
        raise SystemExit(f"no released parquet in {data_dir}; set --data-dir or EVADS_DATA_DIR")
    return import_splits(splits, data_dir / "videos").qa


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("EVADS_DATA_DIR", ROOT.parent / "shared/evads")))
    ap.add_argument("--n-questions", type=int, default=10)
    ap.add_argument("--record-chars", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=ROOT / "data/07_model_output/cache/"
                    "benchmark_judge_probes.jsonl")
    args = ap.parse_args(argv)

    qa = released_qa(args.data_dir)
    probes = probe_rows(qa, n_questions=args.n_questions, seed=args.seed)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    cache = JsonlCache(args.cache)
    smol = judge_settings({"judge_prompt_path": JUDGE_PROMPT, "judge": {
        "backend": {"backend": "local", "asset": "smollm2", "device": "cpu",
                    "num_threads": args.threads}, "constrained": True}})
    t0 = time.perf_counter()
    levels = asyncio.run(levels_reachable(smol))
    t_levels = time.perf_counter() - t0
    with SmokeJudgeServer() as srv:
        overlap = judge_settings({"judge_prompt_path": JUDGE_PROMPT, "judge": {
            "backend": {"backend": "openai", "base_url": srv.base_url,
                        "model": "smoke-overlap-judge", "api_key_env": None},
            "concurrency": 8, "invalid_retries": 0}})
        t0 = time.perf_counter()
        scores = score_probes(probes, {"smollm2": smol, "overlap": overlap}, cache,
                              {"repeat": "auto", "max_record_chars": args.record_chars,
                               "progress": True})
        t_probes = time.perf_counter() - t0
    summary = check_summary(probes, scores)
    print(f"\n{summary['data']}; {len(probes)} probes; record cut to {args.record_chars} chars")
    print(f"{'judge':10s} {'ref':>5s} {'half':>5s} {'fab':>5s} {'swap':>5s} {'empty':>5s} "
          f"{'AUC':>5s} {'rho':>5s} {'inval':>5s} {'repeat':>6s} flagged")
    for name, f in summary["judges"].items():
        m = f["mean_r5_by_probe"]
        cells = " ".join(f"{(m[k] if m[k] is not None else float('nan')):5.2f}"
                         for k in ("reference", "half", "fabricated", "swapped", "empty"))
        rep = f.get("repeat_agreement")
        print(f"{name:10s} {cells} {f['auc_reference_vs_swapped']:5.2f} {f['spearman']:5.2f} "
              f"{f['invalid_rate']:5.2f} {'' if rep is None else f'{rep:6.2f}':>6s} "
              f"{f['flagged']}")
    print("kappa:", {k: round(v, 3) for k, v in summary["kappa"].items()})
    print(f"levels reachable (constrained SmolLM2): {levels} in {t_levels:.1f}s; "
          f"probes graded in {t_probes:.1f}s ({int(scores['cached'].sum())} from cache)")
    s = summary["judges"]["smollm2"]
    out = {"probes": len(probes), "levels_reachable": levels,
           "auc_reference_vs_swapped": s["auc_reference_vs_swapped"],
           "mean_r5_by_probe": s["mean_r5_by_probe"], "invalid_rate": s["invalid_rate"],
           "spearman": s["spearman"], "record_chars": args.record_chars,
           "judges": summary["judges"], "kappa": summary["kappa"],
           "seconds": {"levels": round(t_levels, 1), "probes": round(t_probes, 1)}}
    print(json.dumps(finite(out), ensure_ascii=False, default=str))
    return out


if __name__ == "__main__":
    main()
