"""Nodes of ``rl_training``: base model → examples → SFT (LoRA) → GRPO per reward variant → compare.

Heavy imports (torch, transformers, trl, peft) happen inside the nodes. Each training stage
opens its own MLflow run in the ``evads-grpo`` experiment (nested under the Kedro run when one
is active; tracking URI from ``conf/base/mlflow.yml`` through kedro-mlflow): TRL's MLflow
callback logs every step there (``reward``, ``rewards/<component>/mean``, ``kl``,
``completions/mean_length``, ``learning_rate``, ``loss``, plus our ``judge/*`` metrics), and the
node adds the parameters and the adapter as an artifact. The variants are scored afterwards
by the evaluation pipeline (``compare.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd

from evads_kedro.pipelines.rl_training import config as cfg
from evads_kedro.pipelines.rl_training import data as rl_data
from evads_kedro.pipelines.rl_training import models
from evads_kedro.pipelines.rl_training.folder_dataset import scratch_dir

logger = logging.getLogger(__name__)

_MLFLOW_ENV = ("MLFLOW_NESTED_RUN", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME")


# ------------------------------------------------------------------------------------ MLflow
def is_main_process() -> bool:
    """Rank 0 (or no launcher): under ``accelerate launch`` / ``torchrun`` only rank 0 logs to
    MLflow, saves folders and runs the held-out evaluation."""
    return os.environ.get("RANK", "0") == "0"


def _mlflow_enabled(params: Mapping[str, Any]) -> bool:
    return bool((params.get("mlflow") or {}).get("enabled", True)) and is_main_process()


def _experiment_id(name: str) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name)
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


@contextlib.contextmanager
def stage_run(params: Mapping[str, Any], run_name: str, tags: Mapping[str, str]) -> Iterator[Any]:
    """An MLflow run of one training stage in the ``evads-grpo`` experiment (``None`` when
    MLflow is disabled). Nested under the active (Kedro) run if any; TRL's callback logs into
    it because it is the active run (``MLFLOW_NESTED_RUN`` is masked while it is open)."""
    if not _mlflow_enabled(params):
        yield None
        return
    import mlflow

    experiment = str((params.get("mlflow") or {}).get("experiment", "evads-grpo"))
    saved = {k: os.environ.pop(k) for k in _MLFLOW_ENV if k in os.environ}
    parent = mlflow.active_run()
    all_tags = dict(tags)
    if parent is not None:
        all_tags["evads.kedro_run_id"] = parent.info.run_id
    run = mlflow.start_run(experiment_id=_experiment_id(experiment), run_name=run_name,
                           nested=parent is not None, tags=all_tags)
    try:
        yield run
    finally:
        with contextlib.suppress(Exception):
            mlflow.flush_async_logging()
        mlflow.end_run()
        os.environ.update(saved)


def _log_params(prefix: str, values: Mapping[str, Any]) -> None:
    import mlflow

    flat: dict[str, Any] = {}

    def walk(p: str, v: Any) -> None:
        if isinstance(v, Mapping):
            for k, x in v.items():
                walk(f"{p}.{k}", x)
        else:
            flat[p] = str(v)[:250]

    for k, v in values.items():
        walk(f"{prefix}.{k}", v)
    mlflow.log_params(flat)


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


def _report_to(params: Mapping[str, Any], block: Mapping[str, Any]) -> list[str]:
    return list(block.get("report_to", ["mlflow"])) if _mlflow_enabled(params) else []


# ----------------------------------------------------------------------------------- nodes
def prepare_base_model(released_qa: pd.DataFrame, params: dict[str, Any]) -> tuple[str, dict]:
    """Record the base model (pretrained pointer) or build the tiny smoke model + tokenizer."""
    t0 = time.perf_counter()
    texts: list[str] = []
    model = params.get("model") or {}
    if model.get("source") == "tiny":
        n = int((model.get("tiny") or {}).get("tokenizer_texts", 2000))
        sample = released_qa.sample(n=min(n, len(released_qa)), random_state=int(params.get("seed", 0)))
        for col in ("prompt", "answer", "think", "clues"):
            texts += [t for t in sample[col].dropna().astype(str)]
        from evads_kedro.prompts import OFFICIAL_INSTRUCTION

        texts.append(OFFICIAL_INSTRUCTION)
    out = scratch_dir("base")
    info = models.prepare_base(model, texts, out, seed=int(params.get("seed", 0)))
    info["wall_s"] = round(time.perf_counter() - t0, 2)
    logger.info("base model: %s", info)
    return str(out), info


def build_datasets(released_qa: pd.DataFrame, released_videos: pd.DataFrame, base_model: str,
                   params: dict[str, Any]):
    """SFT / RL / held-out example tables and a report (frames or text-only, counts, drops)."""
    info = models.base_info(base_model)
    tok = models.tokenizer_of(models.load_processing_class(info))

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    sft, rl, held, report = rl_data.build_examples(
        released_qa, released_videos, count, params.get("data") or {}, bool(info.get("vision")),
        seed=int(params.get("seed", 0)))
    report["base_model"] = {k: v for k, v in info.items() if k != "path"}
    logger.info("rl_training examples: sft %d, rl %d, held-out %d (%s)", len(sft), len(rl),
                len(held), report["input_mode"])
    return sft, rl, held, report


def train_sft(sft_examples: pd.DataFrame, base_model: str, params: dict[str, Any]):
    """Stage 1: SFT with a LoRA adapter (``SFTTrainer`` + PEFT); returns the adapter folder."""
    from trl import SFTTrainer

    t0 = time.perf_counter()
    seed = int(params.get("seed", 42))
    plan = _setup(params)
    info = models.base_info(base_model)
    proc = models.load_processing_class(info)
    model = models.load_model(info, plan, params.get("attn_implementation"))
    frames = (params.get("data") or {}).get("frames") or {}
    dataset = rl_data.sft_dataset(sft_examples, frames)
    sft_params = dict(params.get("sft") or {})
    sft_params["report_to"] = _report_to(params, sft_params)
    work = scratch_dir("sft-work")
    args = cfg.build_sft_config(**cfg.sft_config_kwargs(sft_params, plan, str(work), seed,
                                                        run_name="sft"))
    out = scratch_dir("sft-adapter")
    with stage_run(params, "sft", {"evads.stage": "sft"}) as run:
        if run is not None:
            _log_params("evads", {"device": cfg.describe(plan), "lora": params.get("lora") or {},
                                  "base": {k: v for k, v in info.items() if k != "path"},
                                  "examples": len(dataset)})
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=proc,
                             peft_config=cfg.build_lora_config(params.get("lora") or {}))
        t_train = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - t_train
        trainer.save_model(str(out))
        proc.save_pretrained(str(out))
        if run is not None:
            import mlflow

            mlflow.log_artifacts(str(out), "adapter")
            mlflow.log_metric("evads.train_wall_s", train_s)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    summary = {
        "stage": "sft", "run_id": run.info.run_id if run is not None else None,
        "examples": len(dataset), "steps": int(result.global_step),
        "train_loss": float(result.training_loss), "device": cfg.describe(plan),
        "wall_s": round(time.perf_counter() - t0, 2), "train_s": round(train_s, 2),
    }
    logger.info("SFT done: %s", summary)
    return str(out), summary


def train_grpo(rl_examples: pd.DataFrame, base_model: str, sft_adapter: str, judgement_cache,
               params: dict[str, Any], variant_params: dict[str, Any]):
    """Stage 2: GRPO from the SFT policy (merged SFT LoRA + a fresh LoRA) for one variant.
    Returns (adapter folder, summary). The variants are scored afterwards by the evaluation
    pipeline (``compare.py``)."""
    from trl import GRPOTrainer

    from evads_kedro.pipelines.rl_training.judge import BatchJudge
    from evads_kedro.pipelines.rl_training.rewards import build_reward_funcs

    t0 = time.perf_counter()
    seed = int(params.get("seed", 42))
    plan = _setup(params)
    grpo = dict(params.get("grpo") or {})
    variant = cfg.make_variant(variant_params, grpo.get("reward_weights") or {})
    info = models.base_info(base_model)
    proc = models.load_processing_class(info)
    policy = models.load_sft_policy(info, sft_adapter, plan, params.get("attn_implementation"))
    judge = BatchJudge.from_params(params, judgement_cache)
    funcs, weights = build_reward_funcs(judge, variant.kind, variant.weights,
                                        str(grpo.get("trace_reference", "clues")))
    frames = (params.get("data") or {}).get("frames") or {}
    dataset = rl_data.rl_dataset(rl_examples, frames)
    grpo["report_to"] = _report_to(params, grpo)
    work = scratch_dir(f"grpo-{variant.name}-work")
    args = cfg.build_grpo_config(**cfg.grpo_config_kwargs(
        grpo, plan, str(work), variant, seed, run_name=f"grpo_{variant.name}",
        reward_weights=weights,
        max_prompt_tokens=(params.get("data") or {}).get("max_prompt_tokens")))
    out = scratch_dir(f"grpo-{variant.name}-adapter")
    tags = {"evads.stage": "grpo", "evads.variant": variant.name, "evads.kind": variant.kind}
    with stage_run(params, f"grpo_{variant.name}", tags) as run:
        if run is not None:
            _log_params("evads", {
                "variant": {"name": variant.name, "kind": variant.kind,
                            "w_answer": variant.weights.answer, "w_trace": variant.weights.trace,
                            "w_format": variant.weights.format},
                "reward_funcs": ",".join(f.__name__ for f in funcs),
                "judge": judge.model_id, "judge_template_hash": judge.template_hash[:16],
                "device": cfg.describe(plan), "lora": params.get("lora") or {},
                "examples": len(dataset)})
        trainer = GRPOTrainer(model=policy, reward_funcs=funcs, args=args, train_dataset=dataset,
                              processing_class=proc,
                              peft_config=cfg.build_lora_config(params.get("lora") or {}))
        t_train = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - t_train
        trainer.save_model(str(out))
        proc.save_pretrained(str(out))
        if run is not None:
            import mlflow

            mlflow.log_artifacts(str(out), "adapter")
            mlflow.log_metrics({"evads.train_wall_s": train_s,
                                **{f"judge.{k}": float(v) for k, v in judge.stats.items()}})
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    history = [h for h in trainer.state.log_history if "reward" in h]
    summary = {
        "stage": "grpo", "variant": variant.name, "kind": variant.kind,
        "weights": {"answer": variant.weights.answer, "trace": variant.weights.trace,
                    "format": variant.weights.format},
        "reward_funcs": [f.__name__ for f in funcs], "reward_weights": weights,
        "run_id": run.info.run_id if run is not None else None,
        "steps": int(result.global_step), "examples": len(dataset),
        "final_reward": float(history[-1]["reward"]) if history else None,
        "reward_curve": [float(h["reward"]) for h in history],
        "judge": {"model_id": judge.model_id, **dict(judge.stats)},
        "device": cfg.describe(plan),
        "wall_s": round(time.perf_counter() - t0, 2), "train_s": round(train_s, 2),
    }
    logger.info("GRPO %s done in %.1fs: final reward %s", variant.name, summary["wall_s"],
                summary["final_reward"])
    return str(out), summary
