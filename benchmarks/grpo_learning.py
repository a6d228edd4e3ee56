"""Does GRPO learn on this CPU? MG-GRPO of a tiny policy against a reward with a known optimum.

The policy is the smoke recipe's tiny Qwen2 (BPE tokenizer trained on the texts) after a short
SFT, trained with the pipeline's own nodes (``rl_training.nodes.train_sft`` / ``train_grpo``:
same config builders, reward functions, judge client, judgement cache, checkpoints). The reward
is the MG variant's: R = 1.0·R_fmt + 0.8·G(answer) + 0.2·G(trace), judged by the loopback smoke
judge (token-overlap F1 with the reference, bucketed onto the five R5 values), so the optimum is
known: R = 2.0 for a well-formed completion whose answer and trace repeat the reference words.

The data are synthetic ad QA rows (short Chinese timelines with selling points; the answer
names two of them), made here so the run is self-contained and its length fixed.

The GRPO stage is killed with SIGKILL (in a child process) once a complete checkpoint at or
after ``--kill-after`` exists, then rerun: the rerun resumes from the last complete checkpoint
(``resumed_step``) and the per-step history it returns covers every step.

    python benchmarks/grpo_learning.py [--steps 150] [--lr 2e-3] [--generations 8] ...

Prints the settings, a per-step table (reward, its std, ``frac_reward_zero_std``, R_fmt,
G(answer) on the MG scale, KL) and, as its last line, JSON with ``steps``, ``reward_start`` /
``reward_end`` (mean reward over the first / last fifth of the steps), ``reward_start_ci`` /
``reward_end_ci`` (95 % bootstrap over those steps, ``[low, high]``), ``adapter_changed`` (the
saved LoRA differs from its initial values: PEFT starts every ``lora_B`` at zero and the fully
trained ``lm_head`` at the SFT policy's) and ``resumed_step``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")

ROOT = Path(__file__).resolve().parents[1]
INSTR = ("You are permitted to gather any relevant clues, think step by step, to answer this "
         "question. Output your thought process and the final answer in the following format\n"
         "<think>your_thinking</think> <answer>your_answer_within_50_words</answer>")
POINTS = ["限时特价", "买二送一", "百搭显瘦", "轻薄保暖", "面料舒适", "立即下单", "包邮到家",
          "七天退换", "新品上市", "半高领打底衫", "微胖姐妹", "没有衣服穿"]
QUESTIONS = ["这则广告的主要卖点是什么？", "广告强调了哪些优惠？", "视频里提到了什么？",
             "这个商品有什么特点？"]


def synthetic_tables(n_videos: int, seed: int = 0):
    """Released-shaped QA and video tables: per video 2 SFT and 2 RL questions."""
    import pandas as pd

    rnd = random.Random(seed)
    qa, videos = [], []
    for v in range(n_videos):
        w = rnd.sample(POINTS, 4)
        full = (f"Category: 服饰鞋包\nDuration: 6s\n\n[Time-aligned Events]:\n"
                f'Time 0s: OCR Text: [{w[0]}] ; ASR Text: "{w[1]}"\n'
                f'Time 3s: OCR Text: [{w[2]}] ; ASR Text: "{w[3]}"')
        videos.append({"video_id": f"{v}", "video_exists": False,
                       "video_path": f"data/01_raw/released_videos/{v}.mp4"})
        for k, split in enumerate(("sft", "sft", "rl", "rl")):
            q = QUESTIONS[(v + k) % len(QUESTIONS)]
            prompt = "<video>" + full + "\n\n Question: " + q + "\n" + INSTR
            qa.append({"question_id": f"ques_{v:016x}{k:016x}", "video_id": f"{v}",
                       "split": split, "category": "服饰鞋包", "task": None, "question": q,
                       "answer": f"{w[0]}，{w[2]}",
                       "think": f"字幕{w[0]}，字幕{w[2]}" if split == "sft" else None,
                       "clues": None if split == "sft" else f"字幕{w[0]}，字幕{w[2]}",
                       "ground_truth": "", "instruction": INSTR, "prompt": prompt,
                       "prompt_timeline": full, "timeline_full": full, "source_row": k})
    return pd.DataFrame(qa), pd.DataFrame(videos)


def make_params(args, work: Path, judge_url: str) -> dict:
    import yaml

    p = yaml.safe_load((ROOT / "conf/smoke/parameters_rl_training.yml").read_text())["rl_training"]
    p["cpu_threads"] = args.threads
    p["seed"] = args.seed
    p["judge_prompt_path"] = str(ROOT / p["judge_prompt_path"])
    p["judge"]["backend"]["base_url"] = judge_url
    p["mlflow"]["enabled"] = False
    p["model"]["tiny"].update({"tokenizer_texts": 400, "vocab_size": 1024})
    p["data"].update({"sft_candidates": None, "rl_candidates": None, "max_prompt_tokens": 1024,
                      "max_sft_examples": None, "max_rl_examples": None, "heldout_videos": 0,
                      "max_heldout_examples": 0})
    p["lora"].update({"r": args.lora_r, "alpha": 2 * args.lora_r})
    p["sft"].update({"max_steps": args.sft_steps, "learning_rate": args.sft_lr})
    p["grpo"].update({"max_steps": args.steps, "learning_rate": args.lr, "beta": args.beta,
                      "temperature": args.temperature, "num_generations": args.generations,
                      "per_device_train_batch_size": args.generations * args.prompts_per_step,
                      "max_completion_length": args.completion_tokens})
    p["checkpoints"] = {"every_steps": args.checkpoint_every, "keep": 2,
                        "root": str(work / "checkpoints")}
    return p


def run_grpo(work: Path) -> dict:
    """The GRPO stage from the files under ``work`` (also the killed child's entry point)."""
    import pandas as pd

    from evads_kedro.calls.cache import JsonlCache
    from evads_kedro.pipelines.rl_training import nodes

    params = json.loads((work / "params.json").read_text())
    rl = pd.read_parquet(work / "rl.parquet")
    _, adapter, summary = nodes.train_grpo(
        rl, str(work / "base"), str(work / "sft"),
        JsonlCache(work / "judgements.jsonl"), params, {"name": "mg", "kind": "mg"})
    summary["adapter"] = adapter
    return summary


def kill_after_checkpoint(work: Path, step: int, timeout: float) -> int:
    """Run the GRPO stage in a child; SIGKILL it once a complete checkpoint >= ``step`` exists.
    Returns the step of the checkpoint seen."""
    from evads_kedro.pipelines.rl_training import checkpoints

    folder = checkpoints.stage_dir(work / "checkpoints", "grpo_mg")
    with (work / "killed_run.log").open("wb") as log:
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child",
                                  str(work)], stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            found = checkpoints.last_complete(folder)
            if found and found[1] >= step:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                return found[1]
            if child.poll() is not None:
                raise RuntimeError(f"GRPO child ended (rc {child.returncode}) before checkpoint {step}")
            time.sleep(0.2)
        raise TimeoutError(f"no checkpoint >= {step} within {timeout:.0f} s")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def adapter_change(adapter: Path, base: Path, sft: Path) -> dict:
    """How far the saved adapter is from its initial values (lora_B = 0, lm_head = SFT's)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    weights = load_file(str(adapter / "adapter_model.safetensors"))
    b_max = max((float(t.abs().max()) for k, t in weights.items() if "lora_B" in k), default=0.0)
    head = [t for k, t in weights.items() if "lm_head" in k and "lora" not in k]
    head_diff = None
    if head:
        policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)),
                                           str(sft)).merge_and_unload()
        head_diff = float((head[0] - policy.get_output_embeddings().weight).abs().max())
    del torch
    return {"lora_b_max_abs": b_max, "lm_head_max_abs_diff": head_diff,
            "changed": b_max > 0 or bool(head_diff)}


def bootstrap_ci(values: list[float], reps: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile bootstrap interval of the mean."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.asarray(values, dtype=float)
    means = rng.choice(x, size=(reps, len(x)), replace=True).mean(axis=1)
    return [round(float(np.quantile(means, 0.025)), 4), round(float(np.quantile(means, 0.975)), 4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150, help="GRPO steps")
    ap.add_argument("--lr", type=float, default=2e-3, help="GRPO learning rate")
    ap.add_argument("--beta", type=float, default=0.04, help="KL coefficient")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--generations", type=int, default=8, help="group size")
    ap.add_argument("--prompts-per-step", type=int, default=2)
    ap.add_argument("--completion-tokens", type=int, default=48)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--sft-steps", type=int, default=24)
    ap.add_argument("--sft-lr", type=float, default=1e-2)
    ap.add_argument("--videos", type=int, default=48, help="synthetic videos (2 RL rows each)")
    ap.add_argument("--checkpoint-every", type=int, default=10)
    ap.add_argument("--kill-after", type=int, default=None,
                    help="kill the first GRPO run after this checkpoint (default: steps // 3)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", default=None,
                    help="keep the files (models, adapters, logs) here; default: a temp dir, removed")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_grpo(Path(args.child))
        return

    import pandas as pd

    from evads_kedro.pipelines.rl_training import nodes
    from evads_kedro.pipelines.rl_training.smoke_judge import SmokeJudgeServer

    work = Path(args.workdir or tempfile.mkdtemp(prefix="evads-grpo-learning-"))
    work.mkdir(parents=True, exist_ok=True)
    kill_after = args.kill_after or max(args.checkpoint_every, args.steps // 3)
    t0 = time.perf_counter()
    with SmokeJudgeServer() as judge:
        params = make_params(args, work, judge.base_url)
        (work / "params.json").write_text(json.dumps(params))
        qa, videos = synthetic_tables(args.videos, args.seed)
        base, _ = nodes.prepare_base_model(qa, params["model"], params["seed"])
        shutil.move(base, work / "base")
        sft_rows, rl, _, _ = nodes.build_datasets(qa, videos, str(work / "base"),
                                                      params["data"], params["seed"])
        rl.to_parquet(work / "rl.parquet")
        _, sft, sft_summary = nodes.train_sft(sft_rows, str(work / "base"), params)
        shutil.move(sft, work / "sft")
        t_grpo = time.perf_counter()
        killed_at = kill_after_checkpoint(work, kill_after, timeout=3600)
        summary = run_grpo(work)
        grpo_s = time.perf_counter() - t_grpo
    shutil.move(summary["adapter"], work / "grpo_adapter")
    change = adapter_change(work / "grpo_adapter", work / "base", work / "sft")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)

    hist = pd.DataFrame([h for h in summary["history"] if "reward" in h])
    cols = {"step": "step", "reward": "reward", "reward_std": "std",
            "frac_reward_zero_std": "zero_std", "rewards/format/mean": "R_fmt",
            "judge/answer_mg": "G_ans(mg)", "kl": "KL"}
    table = hist[[c for c in cols if c in hist]].rename(columns=cols)
    n = len(table)
    k = max(1, n // 5)
    start, end = table["reward"].head(k).tolist(), table["reward"].tail(k).tolist()
    print(f"\nMG-GRPO on CPU: tiny Qwen2 (hidden 64 x 2 layers, BPE vocab 1024) after {args.sft_steps} "
          f"SFT steps; {len(rl)} RL rows ({args.videos} synthetic videos); smoke judge (token "
          f"overlap); {args.prompts_per_step} prompts x {args.generations} generations per step, "
          f"lr {args.lr:g}, LoRA r{args.lora_r} + full lm_head, beta {args.beta:g}, "
          f"T {args.temperature:g}, {args.completion_tokens} completion tokens, "
          f"{args.threads} thread(s)")
    print(f"GRPO killed (SIGKILL) after checkpoint {killed_at}; resumed from step "
          f"{summary['resumed_from_step']}; GRPO wall {grpo_s:.0f} s "
          f"(both runs), total {time.perf_counter() - t0:.0f} s\n")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    out = {"benchmark": "grpo_learning", "steps": int(n), "window": k,
           "reward_start": round(sum(start) / k, 4), "reward_end": round(sum(end) / k, 4),
           "reward_start_ci": bootstrap_ci(start), "reward_end_ci": bootstrap_ci(end),
           "reward_max": 2.0, "adapter_changed": bool(change["changed"]),
           "lora_b_max_abs": round(change["lora_b_max_abs"], 6),
           "lm_head_max_abs_diff": change["lm_head_max_abs_diff"],
           "resumed_step": int(summary["resumed_from_step"]), "killed_after_checkpoint": killed_at,
           "frac_steps_zero_std_1": round(float((table.get("zero_std", pd.Series([0])) >= 1).mean()), 4),
           "lr": args.lr, "beta": args.beta, "temperature": args.temperature,
           "generations": args.generations, "prompts_per_step": args.prompts_per_step,
           "lora_r": args.lora_r, "sft_steps": args.sft_steps,
           "sft_train_loss": sft_summary["train_loss"], "grpo_wall_s": round(grpo_s, 1),
           "cpu_threads": args.threads, "cpu_cores": os.cpu_count()}
    out["learned"] = out["reward_end_ci"][0] > out["reward_start_ci"][1]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
