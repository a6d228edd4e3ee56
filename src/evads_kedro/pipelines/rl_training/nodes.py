"""Nodes of ``rl_training``: base model → examples → SFT (LoRA) → GRPO per reward variant → compare.

Heavy imports (torch, transformers, trl, peft) happen inside the nodes. ``train_sft`` and
``train_grpo`` share one stage skeleton (:func:`run_stage`): checkpoints every
``checkpoints.every_steps`` steps under ``<checkpoints.root>/<stage>/checkpoints/``, resume from
the last complete checkpoint of a killed run, save the adapter, and return, in this order

* a stage-run record for :class:`evads_kedro.datasets.mlflow_stage_run.MlflowStageRunDataset`,
  which logs it as one nested MLflow run per stage (parameters, tags, the per-step history
  TRL reports — ``reward``, ``rewards/<component>/mean``, ``kl``, ``frac_reward_zero_std`` …, the
  final metrics, the adapter as an artifact; first, so the adapter's scratch folder still
  exists when it is logged),
* the adapter folder (``FolderDataset``), and
* a summary (JSON: steps, losses, rewards, wall times, the step the run resumed from, the
  per-step metric history).

The variants are scored afterwards by the evaluation pipeline (``compare.py``).

Nodes never import MLflow (docs/dev/CONTRACTS.md): TRL's own MLflow callback is off
(``report_to: []``) and the history it would have logged goes out through that dataset.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evads_kedro.pipelines.rl_training import checkpoints, models
from evads_kedro.pipelines.rl_training import config as cfg
from evads_kedro.pipelines.rl_training import data as rl_data
from evads_kedro.pipelines.rl_training.folder_dataset import scratch_dir

logger = logging.getLogger(__name__)

# log_history keys of the trainer's closing entry (not a training step)
_END_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos")


def is_main_process() -> bool:
    """Rank 0 (or no launcher): under ``accelerate launch`` / ``torchrun`` only rank 0 logs to
    MLflow, saves folders and runs the held-out evaluation."""
    return os.environ.get("RANK", "0") == "0"


def _setup(params: Mapping[str, Any]) -> cfg.DevicePlan:
    """Seed, device plan and, on CPU, the torch thread count (``cpu_threads``: on a small
    shared machine 1 thread is several times faster than 2 for tiny models)."""
    import torch
    from transformers import set_seed

    set_seed(int(params.get("seed", 42)))
    plan = cfg.plan_device(params.get("device", "auto"), params.get("precision", "auto"))
    if plan.use_cpu and params.get("cpu_threads"):
        torch.set_num_threads(int(params["cpu_threads"]))
    return plan


def _no_report(block: Mapping[str, Any]) -> dict[str, Any]:
    """The stage block without TRL's MLflow callback (its history goes out through the
    catalog); other reporters named in ``report_to`` (e.g. tensorboard) are kept."""
    keep = [r for r in block.get("report_to") or [] if str(r).lower() not in ("mlflow", "all")]
    return {**dict(block), "report_to": keep}


# ----------------------------------------------------------------------------- stage skeleton
@dataclass
class StageResult:
    """What :func:`run_stage` hands back to the stage node."""

    adapter: str
    steps: int
    train_loss: float | None
    resumed_from_step: int
    history: list[dict[str, float]]
    train_s: float


def checkpoint_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """``save_strategy`` / ``save_steps`` / ``save_total_limit`` from ``rl_training.checkpoints``
    (``every_steps: 0`` turns checkpoints off)."""
    ck = params.get("checkpoints") or {}
    every = int(ck.get("every_steps", 25) or 0)
    if every <= 0:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": every,
            "save_total_limit": int(ck.get("keep", 2)), "save_only_model": False}


def step_history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One ``{"step": n, metric: value}`` per logged training step (finite numbers only)."""
    out = []
    for h in log_history:
        if "step" not in h or any(k in h for k in _END_KEYS):
            continue
        row = {k: float(v) for k, v in h.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        row["step"] = int(h["step"])
        out.append(row)
    return out


def file_digest(folder: str | Path) -> str:
    """sha256 over the weight files of a folder (an adapter): identity for checkpoint reuse."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin")):
        h.update(p.name.encode())
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def run_stage(stage: str, params: Mapping[str, Any], fingerprint: Mapping[str, Any],
              make_trainer: Callable[[dict[str, Any]], Any], processing_class) -> StageResult:
    """The training skeleton shared by SFT and GRPO.

    ``make_trainer(extra_args)`` builds the trainer with ``extra_args`` (``output_dir`` = the
    stage's checkpoint folder and the checkpoint arguments) merged into its config. Resumes
    from the last complete checkpoint when one of the same run (``fingerprint``) exists; on
    success saves the adapter (+ processor) into a scratch folder and only then removes the
    checkpoints.
    """
    root = (params.get("checkpoints") or {}).get("root") or checkpoints.DEFAULT_ROOT
    folder = checkpoints.stage_dir(root, stage)
    ck = checkpoint_args(params)
    resume, resumed_step = (checkpoints.prepare(folder, dict(fingerprint))
                            if ck["save_strategy"] != "no" else (None, 0))
    trainer = make_trainer({"output_dir": str(folder), **ck})
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    train_s = time.perf_counter() - t0
    out = scratch_dir(f"{stage}-adapter")
    trainer.save_model(str(out))
    processing_class.save_pretrained(str(out))
    if is_main_process():
        checkpoints.clear(folder)
    loss = getattr(result, "training_loss", None)
    return StageResult(adapter=str(out), steps=int(result.global_step),
                       train_loss=float(loss) if loss is not None else None,
                       resumed_from_step=resumed_step,
                       history=step_history(trainer.state.log_history), train_s=train_s)


def stage_run(params: Mapping[str, Any], stage: str, *, tags: Mapping[str, str],
              run_params: Mapping[str, Any], metrics: Mapping[str, Any],
              history: list[dict[str, float]], adapter: str | None) -> dict[str, Any]:
    """The record :class:`~evads_kedro.datasets.mlflow_stage_run.MlflowStageRunDataset` logs."""
    ml = params.get("mlflow") or {}
    return {
        "enabled": bool(ml.get("enabled", True)) and is_main_process(),
        "experiment": str(ml.get("experiment", "evads-grpo")),
        "run_name": stage, "tags": {"evads.stage_run": stage, **dict(tags)},
        "params": {"evads": dict(run_params)},
        "metrics": {k: float(v) for k, v in metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(float(v))},
        "history": history,
        "artifacts": {"adapter": adapter} if adapter else {},
    }


# ----------------------------------------------------------------------------------- nodes
def prepare_base_model(released_qa: pd.DataFrame, model: Mapping[str, Any] | None,
                       seed: int) -> tuple[str, dict]:
    """Record the base model (pretrained pointer) or build the tiny smoke model + tokenizer
    (``rl_training.model``; ``rl_training.seed`` draws its tokenizer texts and weights)."""
    t0 = time.perf_counter()
    texts: list[str] = []
    model = model or {}
    if model.get("source") == "tiny":
        n = int((model.get("tiny") or {}).get("tokenizer_texts", 2000))
        sample = released_qa.sample(n=min(n, len(released_qa)), random_state=int(seed))
        for col in ("prompt", "answer", "think", "clues"):
            texts += [t for t in sample[col].dropna().astype(str)]
        from evads_kedro.prompts import OFFICIAL_INSTRUCTION

        texts.append(OFFICIAL_INSTRUCTION)
    out = scratch_dir("base")
    info = models.prepare_base(model, texts, out, seed=int(seed))
    info["wall_s"] = round(time.perf_counter() - t0, 2)
    logger.info("base model: %s", info)
    return str(out), info


def build_datasets(released_qa: pd.DataFrame, released_videos: pd.DataFrame, base_model: str,
                   data: Mapping[str, Any] | None, seed: int):
    """SFT / RL / held-out example tables and a report (frames or text-only, counts, drops),
    from ``rl_training.data``; ``rl_training.seed`` draws the splits."""
    info = models.base_info(base_model)
    tok = models.tokenizer_of(models.load_processing_class(info))

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    sft, rl, held, report = rl_data.build_examples(
        released_qa, released_videos, count, data or {}, bool(info.get("vision")),
        seed=int(seed))
    report["base_model"] = {k: v for k, v in info.items() if k != "path"}
    logger.info("rl_training examples: sft %d, rl %d, held-out %d (%s)", len(sft), len(rl),
                len(held), report["input_mode"])
    return sft, rl, held, report


def _base_identity(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k not in ("path", "wall_s")}


def train_sft(sft_examples: pd.DataFrame, base_model: str, params: dict[str, Any]):
    """Stage 1: SFT with a LoRA adapter (``SFTTrainer`` + PEFT).

    Returns (stage-run record, adapter folder, summary)."""
    from trl import SFTTrainer

    t0 = time.perf_counter()
    seed = int(params.get("seed", 42))
    plan = _setup(params)
    info = models.base_info(base_model)
    proc = models.load_processing_class(info)
    model = models.load_model(info, plan, params.get("attn_implementation"))
    frames = (params.get("data") or {}).get("frames") or {}
    dataset = rl_data.sft_dataset(sft_examples, frames)
    sft_params = _no_report(params.get("sft") or {})
    lora = params.get("lora") or {}

    def make_trainer(extra: dict[str, Any]):
        kw = cfg.sft_config_kwargs(sft_params, plan, extra["output_dir"], seed, run_name="sft")
        kw.update({k: v for k, v in extra.items() if k not in (sft_params.get("trl_args") or {})})
        return SFTTrainer(model=model, args=cfg.build_sft_config(**kw), train_dataset=dataset,
                          processing_class=proc, peft_config=cfg.build_lora_config(lora))

    fingerprint = {"stage": "sft", "seed": seed, "base": _base_identity(info), "lora": lora,
                   "sft": {k: v for k, v in sft_params.items() if k != "disable_tqdm"},
                   "examples": sorted(map(str, sft_examples["question_id"]))
                   if "question_id" in sft_examples else len(sft_examples)}
    res = run_stage("sft", params, fingerprint, make_trainer, proc)
    summary = {
        "stage": "sft", "examples": len(dataset), "steps": res.steps,
        "train_loss": res.train_loss, "resumed_from_step": res.resumed_from_step,
        "device": cfg.describe(plan), "wall_s": round(time.perf_counter() - t0, 2),
        "train_s": round(res.train_s, 2), "history": res.history,
    }
    run = stage_run(params, "sft", tags={"evads.stage": "sft"},
                    run_params={"device": cfg.describe(plan), "lora": lora,
                                "base": _base_identity(info), "examples": len(dataset),
                                "sft": sft_params},
                    metrics={"evads.train_wall_s": res.train_s,
                             "evads.resumed_from_step": res.resumed_from_step},
                    history=res.history, adapter=res.adapter)
    logger.info("SFT done: %s", {k: v for k, v in summary.items() if k != "history"})
    return run, res.adapter, summary


def train_grpo(rl_examples: pd.DataFrame, base_model: str, sft_adapter: str, judgement_cache,
               params: dict[str, Any], variant_params: dict[str, Any]):
    """Stage 2: GRPO from the SFT policy (merged SFT LoRA + a fresh LoRA) for one variant.
    The variants are scored afterwards by the evaluation pipeline (``compare.py``).

    Returns (stage-run record, adapter folder, summary)."""
    from trl import GRPOTrainer

    from evads_kedro.pipelines.rl_training.judge import BatchJudge
    from evads_kedro.pipelines.rl_training.rewards import build_reward_funcs

    t0 = time.perf_counter()
    seed = int(params.get("seed", 42))
    plan = _setup(params)
    grpo = _no_report(params.get("grpo") or {})
    variant = cfg.make_variant(variant_params, grpo.get("reward_weights") or {})
    info = models.base_info(base_model)
    proc = models.load_processing_class(info)
    policy = models.load_sft_policy(info, sft_adapter, plan, params.get("attn_implementation"))
    judge = BatchJudge.from_params(params, judgement_cache)
    funcs, weights = build_reward_funcs(judge, variant.kind, variant.weights,
                                        str(grpo.get("trace_reference", "clues")))
    frames = (params.get("data") or {}).get("frames") or {}
    dataset = rl_data.rl_dataset(rl_examples, frames)
    lora = params.get("lora") or {}
    stage = f"grpo_{variant.name}"

    def make_trainer(extra: dict[str, Any]):
        kw = cfg.grpo_config_kwargs(grpo, plan, extra["output_dir"], variant, seed,
                                    run_name=stage, reward_weights=weights,
                                    max_prompt_tokens=(params.get("data") or {}).get(
                                        "max_prompt_tokens"))
        kw.update({k: v for k, v in extra.items() if k not in (grpo.get("trl_args") or {})})
        return GRPOTrainer(model=policy, reward_funcs=funcs, args=cfg.build_grpo_config(**kw),
                           train_dataset=dataset, processing_class=proc,
                           peft_config=cfg.build_lora_config(lora))

    fingerprint = {"stage": stage, "seed": seed, "base": _base_identity(info), "lora": lora,
                   "grpo": {k: v for k, v in grpo.items() if k != "disable_tqdm"},
                   "variant": [variant.kind, weights], "sft_adapter": file_digest(sft_adapter),
                   "judge": [judge.model_id, judge.template_hash],
                   "examples": sorted(map(str, rl_examples["question_id"]))
                   if "question_id" in rl_examples else len(rl_examples)}
    res = run_stage(stage, params, fingerprint, make_trainer, proc)
    rewarded = [h for h in res.history if "reward" in h]
    summary = {
        "stage": "grpo", "variant": variant.name, "kind": variant.kind,
        "weights": {"answer": variant.weights.answer, "trace": variant.weights.trace,
                    "format": variant.weights.format},
        "reward_funcs": [f.__name__ for f in funcs], "reward_weights": weights,
        "steps": res.steps, "examples": len(dataset), "resumed_from_step": res.resumed_from_step,
        "final_reward": rewarded[-1]["reward"] if rewarded else None,
        "reward_curve": [h["reward"] for h in rewarded],
        "judge": {"model_id": judge.model_id, **dict(judge.stats)},
        "device": cfg.describe(plan),
        "wall_s": round(time.perf_counter() - t0, 2), "train_s": round(res.train_s, 2),
        "history": res.history,
    }
    tags = {"evads.stage": "grpo", "evads.variant": variant.name, "evads.kind": variant.kind}
    run = stage_run(
        params, stage, tags=tags,
        run_params={"variant": {"name": variant.name, "kind": variant.kind,
                                "w_answer": variant.weights.answer,
                                "w_trace": variant.weights.trace,
                                "w_format": variant.weights.format},
                    "reward_funcs": ",".join(f.__name__ for f in funcs),
                    "judge": judge.model_id, "judge_template_hash": judge.template_hash[:16],
                    "device": cfg.describe(plan), "lora": lora, "examples": len(dataset),
                    "grpo": grpo},
        metrics={"evads.train_wall_s": res.train_s,
                 "evads.resumed_from_step": res.resumed_from_step,
                 **{f"judge.{k}": v for k, v in judge.stats.items()}},
        history=res.history, adapter=res.adapter)
    logger.info("GRPO %s done in %.1fs: final reward %s", variant.name, summary["wall_s"],
                summary["final_reward"])
    return run, res.adapter, summary
