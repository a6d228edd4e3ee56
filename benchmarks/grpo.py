"""GRPO step speed of the rl_training code path with a tiny model: seconds per step, tokens/s.

Builds the smoke model (Qwen2 config, hidden 64 x 2 layers, BPE tokenizer trained on the
split texts or on synthetic text), runs ``GRPOTrainer`` exactly as the pipeline configures it
(config from ``rl_training.config``, rewards from ``rl_training.rewards``) with an in-process
constant-latency judge, on CPU and, when torch sees one, on CUDA. Times the steps after warm-up.

    python benchmarks/grpo.py [--steps 4] [--warmup 1] [--threads 1] [--prompt-tokens 384]

Prints a table, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")

ROOT = Path(__file__).resolve().parents[1]
QA = ROOT / "data/03_primary/released_qa.parquet"


class ConstantJudge:
    """R5 = 0.5 after ``latency`` seconds (stands in for the HTTP judge)."""

    model_id = "bench-constant"

    def __init__(self, latency: float):
        self.latency = latency

    async def judge_batch(self, role, items):
        await asyncio.sleep(self.latency)
        return [0.5 for _ in items]


def _rows(n: int, prompt_tokens: int, tok) -> list[dict]:
    import pandas as pd

    if QA.is_file():
        qa = pd.read_parquet(QA, columns=["question_id", "question", "prompt", "answer", "clues",
                                          "timeline_full", "split"])
        qa = qa[qa["split"] == "rl"].head(200)
    else:  # synthetic rows of the same shape
        rnd = random.Random(0)
        chars = "的是了我不在人有这上们来到时大地为子中你说生国年着就那和要她出也得里后自以会"
        qa = pd.DataFrame([{
            "question_id": f"ques_{i:032x}", "question": "这个广告的卖点是什么？",
            "prompt": "<video>" + "".join(rnd.choice(chars) for _ in range(prompt_tokens * 2)),
            "answer": "".join(rnd.choice(chars) for _ in range(40)), "clues": "线索",
            "timeline_full": "Category: 其他\nDuration: 10s\n", "split": "rl"} for i in range(n)])
    rows = []
    for r in qa.to_dict("records"):
        ids = tok(r["prompt"].removeprefix("<video>"), add_special_tokens=False)["input_ids"]
        text = tok.decode(ids[:prompt_tokens])  # fixed prompt length for comparable timings
        rows.append({"prompt": [{"role": "user", "content": text}],
                     "question_id": r["question_id"], "question": r["question"],
                     "clues": r["clues"] or "", "timeline_full": r["timeline_full"],
                     "reference_answer": r["answer"]})
        if len(rows) == n:
            break
    return rows


def bench(device: str, args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from evads_kedro.pipelines.rl_training import config as cfg
    from evads_kedro.pipelines.rl_training import models, rewards
    from evads_kedro.scoring import RewardWeights

    if device == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    plan = cfg.plan_device(device)
    work = Path(tempfile.mkdtemp(prefix="evads-bench-grpo-"))
    try:
        texts = []
        if QA.is_file():
            import pandas as pd

            qa = pd.read_parquet(QA, columns=["prompt", "answer", "think"]).head(300)
            texts = [t for c in qa.columns for t in qa[c].dropna().astype(str)]
        texts = texts or ["的是了我不在人有这上们来到时大地为子中你说生国年着就那和要她出也得里后自以会"] * 50
        info = models.prepare_base({"source": "tiny", "tiny": {"hidden_size": args.hidden,
                                                                "num_layers": args.layers}},
                                   texts, work / "base")
        info = models.base_info(work / "base")
        tok = models.load_processing_class(info)
        model = models.load_model(info, plan)
        batch = args.generations * args.prompts_per_step
        ds = Dataset.from_list(_rows(max(batch, 8), args.prompt_tokens, tok))
        variant = cfg.make_variant({"name": "mg", "kind": "mg"}, {})
        funcs, weights = rewards.build_reward_funcs(ConstantJudge(args.judge_latency), "mg",
                                                    RewardWeights())
        kw = cfg.grpo_config_kwargs(
            {"num_generations": args.generations, "per_device_train_batch_size": batch,
             "max_steps": args.warmup + args.steps, "max_completion_length": args.completion_tokens,
             "gradient_checkpointing": False, "report_to": [], "logging_steps": 10**6,
             "disable_tqdm": True, "beta": 0.04, "learning_rate": 1e-4},
            plan, str(work / "out"), variant, reward_weights=weights)
        # fixed-length completions: every step generates the same number of tokens
        kw["generation_kwargs"] = {"min_new_tokens": args.completion_tokens}
        stamps: list[float] = []

        class Clock(TrainerCallback):
            def on_step_end(self, *a, **k):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                stamps.append(time.perf_counter())

        trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=cfg.build_grpo_config(**kw),
                              train_dataset=ds, processing_class=tok,
                              peft_config=cfg.build_lora_config({"r": 8, "alpha": 16,
                                                                 "target_modules": "all-linear"}),
                              callbacks=[Clock()])
        t0 = time.perf_counter()
        trainer.train()
        starts = [t0] + stamps[:-1]
        timed = [b - a for a, b in zip(starts, stamps, strict=True)][args.warmup:]
        s_step = sum(timed) / len(timed)
        prompt_tok = args.prompt_tokens * batch
        gen_tok = args.completion_tokens * batch
        return {"device": plan.device, "dtype": plan.dtype, "threads": torch.get_num_threads(),
                "s_per_step": s_step, "gen_tokens_per_s": gen_tok / s_step,
                "tokens_per_s": (prompt_tok + gen_tok) / s_step,
                "completions_per_step": batch, "steps_timed": len(timed),
                "n_params": sum(p.numel() for p in model.parameters())}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="CPU torch threads (0 = default)")
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=384)
    ap.add_argument("--completion-tokens", type=int, default=48)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--judge-latency", type=float, default=0.0)
    ap.add_argument("--devices", default="auto", help="auto = cpu, plus cuda when present")
    args = ap.parse_args()

    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) \
        if args.devices == "auto" else args.devices.split(",")
    results = [bench(d, args) for d in devices]
    print(f"\nGRPO step, tiny Qwen2 (hidden {args.hidden} x {args.layers} layers), "
          f"{args.generations} generations x {args.prompts_per_step} prompt(s), "
          f"{args.prompt_tokens} prompt + {args.completion_tokens} completion tokens, beta 0.04, LoRA r8")
    print(f"{'device':8} {'dtype':9} {'thr':>3} {'s/step':>8} {'gen tok/s':>10} {'tok/s':>9}")
    for r in results:
        print(f"{r['device']:8} {r['dtype']:9} {r['threads']:>3} {r['s_per_step']:8.3f} "
              f"{r['gen_tokens_per_s']:10.1f} {r['tokens_per_s']:9.1f}")
    out = {"benchmark": "grpo_step", "model": f"tiny-qwen2-h{args.hidden}-l{args.layers}",
           "n_params": results[0]["n_params"], "steps_timed": args.steps,
           "completions_per_step": results[0]["completions_per_step"],
           "prompt_tokens": args.prompt_tokens, "completion_tokens": args.completion_tokens,
           "cpu_threads": results[0]["threads"], "cpu_cores": os.cpu_count(),
           "machine": platform.machine(), "python": sys.version.split()[0]}
    for r in results:
        key = "cpu" if r["device"] == "cpu" else "gpu"
        out[f"{key}_s_per_step"] = round(r["s_per_step"], 4)
        out[f"{key}_gen_tokens_per_s"] = round(r["gen_tokens_per_s"], 1)
        out[f"{key}_tokens_per_s"] = round(r["tokens_per_s"], 1)
    if "gpu_s_per_step" not in out:
        out["gpu_s_per_step"] = None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
