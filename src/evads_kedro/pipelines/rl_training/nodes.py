"""Nodes of ``rl_training``: base model → examples → SFT (LoRA) → GRPO per reward variant → compare.

Heavy imports (torch, transformers, trl, peft) happen inside the nodes. Each training stage
opens its own MLflow run in the ``evads-grpo`` experiment (nested under the Kedro run when one
is active; tracking URI from ``conf/base/mlflow.yml`` through kedro-mlflow): TRL's MLflow
callback logs every step there (``reward``, ``rewards/<component>/mean``, ``kl``,
``completions/mean_length``, ``learning_rate``, ``loss``, plus our ``judge/*`` metrics), and the
node adds the parameters, the adapter as an artifact and the held-out scores.
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


def train_grpo(rl_examples: pd.DataFrame, heldout_examples: pd.DataFrame, base_model: str,
               sft_adapter: str, judgement_cache, params: dict[str, Any],
               variant_params: dict[str, Any]):
    """Stage 2: GRPO from the SFT policy (merged SFT LoRA + a fresh LoRA) for one variant,
    then held-out answers judged by the same judge. Returns (adapter folder, summary)."""
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
        reward_weights=weights))
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
        t_eval = time.perf_counter()
        heldout = evaluate_heldout(trainer.model, proc, heldout_examples, judge, params)
        eval_s = time.perf_counter() - t_eval
        if run is not None:
            import mlflow

            mlflow.log_artifacts(str(out), "adapter")
            mlflow.log_metrics({f"heldout.{k}": float(v) for k, v in heldout.items()
                                if isinstance(v, (int, float)) and v is not None})
            mlflow.log_metrics({"evads.train_wall_s": train_s, "evads.heldout_wall_s": eval_s,
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
        "heldout": heldout, "judge": {"model_id": judge.model_id, **dict(judge.stats)},
        "device": cfg.describe(plan),
        "wall_s": round(time.perf_counter() - t0, 2), "train_s": round(train_s, 2),
        "heldout_s": round(eval_s, 2),
    }
    logger.info("GRPO %s done in %.1fs: final reward %s, held-out %s", variant.name,
                summary["wall_s"], summary["final_reward"], heldout)
    return str(out), summary


# -------------------------------------------------------------------------------- held-out
def generate(model, processing_class, records: list[dict[str, Any]], *, max_new_tokens: int,
             temperature: float, seed: int, batch_size: int = 8) -> list[str]:
    """Completions of the policy for conversational prompts (images used when present)."""
    import torch

    tok = models.tokenizer_of(processing_class)
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    gen: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "pad_token_id": pad,
                           "use_cache": True}
    if temperature and temperature > 0:
        gen.update(do_sample=True, temperature=float(temperature), top_p=1.0, top_k=0)
    else:
        gen.update(do_sample=False)
    texts: list[str] = []
    was_training = model.training
    model.eval()
    torch.manual_seed(int(seed))
    old_side = getattr(tok, "padding_side", "right")
    tok.padding_side = "left"
    try:
        for i in range(0, len(records), batch_size):
            batch = records[i:i + batch_size]
            prompts = [processing_class.apply_chat_template(r["prompt"], tokenize=False,
                                                            add_generation_prompt=True)
                       for r in batch]
            if any(r.get("images") for r in batch):
                enc = processing_class(text=prompts, images=[r["images"] for r in batch],
                                       return_tensors="pt", padding=True)
            else:
                enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.inference_mode():
                ids = model.generate(**enc, **gen)
            n_in = enc["input_ids"].shape[1]
            texts += tok.batch_decode(ids[:, n_in:], skip_special_tokens=True)
    finally:
        tok.padding_side = old_side
        model.train(was_training)
    return texts


def evaluate_heldout(model, processing_class, heldout: pd.DataFrame, judge,
                     params: Mapping[str, Any]) -> dict[str, Any]:
    """Answer the held-out questions and judge the answers (same judge, same cache):
    mean S / R3 / R5 / MG over judged items, format rate, counts of failed judgements."""
    from evads_kedro.calls.runner import run_sync
    from evads_kedro.pipelines.rl_training.judge import JudgeItem
    from evads_kedro.scoring import SCORE_KINDS, format_reward, score, split_completion

    if heldout is None or not len(heldout) or not is_main_process():
        return {"n": 0}
    h = dict(params.get("heldout") or {})
    grpo = params.get("grpo") or {}
    records = rl_data.rl_records(heldout, (params.get("data") or {}).get("frames") or {})
    outputs = generate(model, processing_class, records,
                       max_new_tokens=int(h.get("max_new_tokens",
                                                grpo.get("max_completion_length", 512))),
                       temperature=float(h.get("temperature", 0.0)),
                       seed=int(h.get("seed", 0)), batch_size=int(h.get("batch_size", 8)))
    items = [JudgeItem(question_id=r["question_id"], question=r["question"],
                       metadata=r["timeline_full"], clues=r["clues"],
                       reference=r["reference_answer"], output=split_completion(o).answer)
             for r, o in zip(records, outputs, strict=True)]
    r5s = run_sync(judge.judge_batch("answer", items))
    ok = [r for r in r5s if r is not None]
    res: dict[str, Any] = {"n": len(items), "judged": len(ok), "failed": len(items) - len(ok),
                           "format": sum(format_reward(o) for o in outputs) / len(outputs),
                           "mean_chars": sum(len(o) for o in outputs) / len(outputs)}
    for k in SCORE_KINDS:
        res[k] = sum(score(r, k) for r in ok) / len(ok) if ok else None
    return res


# ------------------------------------------------------------------------------ comparison
def compare_variants(base_info: dict, sft_summary: dict, *summaries_and_params):
    """Reward curves (per variant, from MLflow's metric history) and final held-out scores.

    Reads ``mlflow.search_runs`` in the GRPO experiment (runs tagged ``evads.stage=grpo``):
    the runs of this Kedro run when known (from the summaries), else the latest run per
    variant. Returns (figure, scores table, markdown with the wall time of every stage).
    """
    *summaries, params = summaries_and_params
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, curves = _variant_runs(summaries, params)
    order = {v: i for i, v in enumerate(("s", "r3", "r5", "mg", "mg_no_trace"))}
    curves = dict(sorted(curves.items(), key=lambda kv: order.get(kv[0], 99)))
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    panels = (("reward", "total reward (each variant's own objective)"),
              ("judge/answer_mg", "answer G on the MG scale (comparable)"),
              ("rewards/format/mean", "format reward R_fmt"))
    for ax, (metric, title) in zip(axes.flat[:3], panels, strict=True):
        for name, hist in curves.items():
            pts = hist.get(metric) or []
            if pts:
                ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", ms=3, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    table = pd.DataFrame(rows)
    ax = axes.flat[3]
    if len(table):
        kinds = ["s", "r3", "r5", "mg"]
        width = 0.8 / len(kinds)
        for j, k in enumerate(kinds):
            vals = pd.to_numeric(table[f"heldout_{k}"], errors="coerce").fillna(0.0)
            ax.bar([i + j * width for i in range(len(table))], vals, width=width,
                   label=k.upper())
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(table))])
        ax.set_xticklabels(table["variant"], rotation=15)
        ax.legend(fontsize=8)
    ax.set_title("held-out answers, judged (mean score)", fontsize=10)
    ax.set_ylim(0, 1)
    smoke = bool((params.get("judge") or {}).get("smoke_test"))
    fig.suptitle("E-VAds MG-GRPO reward variants" + (" — SMOKE judge, scores mean nothing"
                                                    if smoke else ""))
    fig.tight_layout()
    md = _markdown(table, base_info, sft_summary, summaries, smoke)
    logger.info("\n%s", md)
    return fig, table, md


def _variant_runs(summaries, params) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    by_variant = {s["variant"]: s for s in summaries if s and s.get("stage") == "grpo"}
    if _mlflow_enabled(params):
        import mlflow

        experiment = str((params.get("mlflow") or {}).get("experiment", "evads-grpo"))
        runs = mlflow.search_runs(experiment_names=[experiment],
                                  filter_string="tags.`evads.stage` = 'grpo'",
                                  order_by=["attributes.start_time DESC"])
        client = mlflow.MlflowClient()
        wanted = {s["run_id"] for s in by_variant.values() if s.get("run_id")}
        seen: set[str] = set()
        for _, r in runs.iterrows():
            name = r.get("tags.evads.variant")
            if name in seen or (wanted and r["run_id"] not in wanted):
                continue
            seen.add(name)
            hist = {m: [(x.step, x.value) for x in client.get_metric_history(r["run_id"], m)]
                    for m in ("reward", "judge/answer_mg", "rewards/format/mean", "kl",
                              "completions/mean_length")}
            curves[name] = hist
            row = {"variant": name, "kind": r.get("tags.evads.kind"), "run_id": r["run_id"],
                   "steps": len(hist["reward"]),
                   "final_reward": hist["reward"][-1][1] if hist["reward"] else None}
            for k in ("s", "r3", "r5", "mg", "format", "n", "failed"):
                row[f"heldout_{k}"] = r.get(f"metrics.heldout.{k}")
            s = by_variant.get(name) or {}
            row["wall_s"] = s.get("wall_s")
            rows.append(row)
    else:
        for name, s in by_variant.items():
            curves[name] = {"reward": list(enumerate(s.get("reward_curve") or [], start=1))}
            row = {"variant": name, "kind": s["kind"], "run_id": None, "steps": s["steps"],
                   "final_reward": s.get("final_reward"), "wall_s": s.get("wall_s")}
            for k in ("s", "r3", "r5", "mg", "format", "n", "failed"):
                row[f"heldout_{k}"] = (s.get("heldout") or {}).get(k)
            rows.append(row)
    order = {v: i for i, v in enumerate(("s", "r3", "r5", "mg", "mg_no_trace"))}
    rows.sort(key=lambda r: order.get(r["variant"], 99))
    return rows, curves


def _markdown(table: pd.DataFrame, base_info, sft_summary, summaries, smoke: bool) -> str:
    def f(x, nd=3):
        return "—" if x is None or (isinstance(x, float) and pd.isna(x)) else f"{x:.{nd}f}"

    lines = ["## rl_training" + (" (smoke judge: scores mean nothing)" if smoke else ""), "",
             "| variant | steps | final reward | held-out S | R3 | R5 | MG | format | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {r['variant']} | {r['steps']} | {f(r['final_reward'])} | "
                     f"{f(r.get('heldout_s'))} | {f(r.get('heldout_r3'))} | "
                     f"{f(r.get('heldout_r5'))} | {f(r.get('heldout_mg'))} | "
                     f"{f(r.get('heldout_format'))} | {f(r.get('wall_s'), 1)} |")
    lines += ["", "| stage | wall s |", "|---|---|"]
    stages = [("base model", (base_info or {}).get("wall_s")),
              ("sft", (sft_summary or {}).get("wall_s"))]
    stages += [(f"grpo_{s['variant']}", s.get("wall_s")) for s in summaries if s]
    for name, w in stages:
        lines.append(f"| {name} | {f(w, 1)} |")
    total = sum(float(w or 0) for _, w in stages)
    lines.append(f"| **total (without data prep / start-up)** | {total:.1f} |")
    return "\n".join(lines) + "\n"
