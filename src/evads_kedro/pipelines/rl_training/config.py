"""Trainer configuration from parameters: device plan, LoRA, SFT and GRPO configs.

Pure functions (no model, no data) so tests can check every branch without a GPU:
``plan_device("auto")`` picks CUDA + bf16 when torch sees a GPU, CPU + fp32 (``use_cpu=True``)
otherwise; ``sft_config_kwargs`` / ``grpo_config_kwargs`` turn parameters plus that plan into
the keyword arguments of TRL's ``SFTConfig`` / ``GRPOConfig``; ``build_*_config`` instantiate
them (TRL imported lazily: ``from trl import ...`` costs ~9 s).

Any TRL/transformers argument without a named parameter can be given under ``trl_args`` of the
``sft`` / ``grpo`` parameter blocks (e.g. ``use_vllm: true``, ``vllm_mode: server``); named
parameters win over nothing, ``trl_args`` wins over everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from evads_kedro.devices import resolve_device
from evads_kedro.scoring import SCORE_KINDS, RewardWeights


@dataclass(frozen=True)
class DevicePlan:
    """Where and in which precision training runs."""

    device: str  # "cpu" | "cuda" | "cuda:N"
    use_cpu: bool
    bf16: bool
    fp16: bool
    dtype: str  # torch dtype name for from_pretrained: "bfloat16" | "float16" | "float32"

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def plan_device(device: str = "auto", precision: str = "auto") -> DevicePlan:
    """``auto`` → CUDA with bf16 when a GPU is visible, else CPU with fp32 and ``use_cpu``.

    ``precision`` is ``auto|bf16|fp16|fp32``; asking for bf16/fp16 on CPU is refused (TRL would
    fail later with a less helpful message).
    """
    dev = resolve_device(device)
    on_cuda = dev.startswith("cuda")
    if on_cuda:
        check_single_process_gpus()
    precision = (precision or "auto").lower()
    if precision == "auto":
        precision = "bf16" if on_cuda else "fp32"
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}; use auto, bf16, fp16 or fp32")
    if precision != "fp32" and not on_cuda:
        raise ValueError(f"precision {precision} needs a CUDA GPU; use precision: auto or fp32 on CPU")
    dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[precision]
    return DevicePlan(device=dev, use_cpu=not on_cuda, bf16=precision == "bf16",
                      fp16=precision == "fp16", dtype=dtype)


def check_single_process_gpus() -> None:
    """A plain ``kedro run`` (no accelerate/torchrun: ``WORLD_SIZE`` unset) with several
    visible GPUs makes both trainers wrap the model in DataParallel, which fails: refuse with
    the fix (one visible device, or a launcher for data parallelism)."""
    import os

    import torch

    if os.environ.get("WORLD_SIZE") is None and torch.cuda.device_count() > 1:
        raise RuntimeError(
            f"{torch.cuda.device_count()} GPUs are visible to a single-process kedro run; "
            "select one (CUDA_VISIBLE_DEVICES=0 kedro run --env gpu1 ...) or launch data-"
            "parallel training with accelerate (docs/rl_training.md)")


# ------------------------------------------------------------------------------------ variants
@dataclass(frozen=True)
class Variant:
    """One GRPO reward variant: the score kind used for answer and trace, and the weights."""

    name: str
    kind: str  # s | r3 | r5 | mg
    weights: RewardWeights

    @property
    def uses_trace(self) -> bool:
        return self.weights.trace != 0.0


def make_variant(variant: Mapping[str, Any], default_weights: Mapping[str, float]) -> Variant:
    """A :class:`Variant` from ``{name, kind, weights?}``; missing weights come from the defaults
    (``rl_training.grpo.reward_weights``: answer 0.8, trace 0.2, format 1.0)."""
    kind = str(variant["kind"]).lower()
    if kind not in SCORE_KINDS:
        raise ValueError(f"variant kind {kind!r} is not one of {SCORE_KINDS}")
    merged = {**dict(default_weights), **dict(variant.get("weights") or {})}
    unknown = set(merged) - {"answer", "trace", "format"}
    if unknown:
        raise ValueError(f"unknown reward weight(s) {sorted(unknown)}; use answer, trace, format")
    return Variant(name=str(variant.get("name") or kind), kind=kind,
                   weights=RewardWeights(**{k: float(v) for k, v in merged.items()}))


# --------------------------------------------------------------------------------------- LoRA
# conf/base's rl_training.lora.target_modules: the language model's linear layers, not the
# vision tower's
LORA_TARGETS = r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


def lora_kwargs(lora: Mapping[str, Any]) -> dict[str, Any]:
    """``peft.LoraConfig`` keyword arguments from the ``lora`` parameter block."""
    targets = lora.get("target_modules", LORA_TARGETS)
    extra = lora.get("modules_to_save")
    return {
        "modules_to_save": list(extra) if extra else None,
        "r": int(lora.get("r", 64)),
        "lora_alpha": int(lora.get("alpha", 128)),
        "lora_dropout": float(lora.get("dropout", 0.05)),
        "target_modules": list(targets) if isinstance(targets, (list, tuple)) else targets,
        "bias": "none",
        "task_type": "CAUSAL_LM",
    }


def build_lora_config(lora: Mapping[str, Any]):
    from peft import LoraConfig

    return LoraConfig(**lora_kwargs(lora))


# ---------------------------------------------------------------------------------- SFT / GRPO
def _common(block: Mapping[str, Any], plan: DevicePlan, output_dir: str, seed: int) -> dict[str, Any]:
    return {
        "output_dir": output_dir,
        "use_cpu": plan.use_cpu,
        "bf16": plan.bf16,
        "fp16": plan.fp16,
        "seed": int(seed),
        "learning_rate": float(block.get("learning_rate", 1e-5)),
        "num_train_epochs": float(block.get("num_train_epochs", 1)),
        "max_steps": int(block.get("max_steps", -1)),
        "per_device_train_batch_size": int(block.get("per_device_train_batch_size", 1)),
        "gradient_accumulation_steps": int(block.get("gradient_accumulation_steps", 1)),
        # transformers 5 name of gradient checkpointing (the old name warns)
        "activation_checkpointing": bool(block.get("gradient_checkpointing", not plan.use_cpu)),
        "lr_scheduler_type": str(block.get("lr_scheduler_type", "cosine")),
        "warmup_steps": float(block.get("warmup_steps", 0)),
        "weight_decay": float(block.get("weight_decay", 0.0)),
        "max_grad_norm": float(block.get("max_grad_norm", 1.0)),
        "logging_steps": int(block.get("logging_steps", 1)),
        "save_strategy": str(block.get("save_strategy", "no")),
        "report_to": list(block.get("report_to", ["mlflow"])),
        "dataloader_num_workers": int(block.get("dataloader_num_workers", 0)),
        "disable_tqdm": bool(block.get("disable_tqdm", False)),
    }


def sft_config_kwargs(sft: Mapping[str, Any], plan: DevicePlan, output_dir: str,
                      seed: int = 42, run_name: str | None = None) -> dict[str, Any]:
    """``trl.SFTConfig`` keyword arguments (prompt-completion data, loss on the completion)."""
    kw = _common(sft, plan, output_dir, seed)
    kw.update({
        # null = no truncation (TRL's advice for VL models: truncation can cut image tokens)
        "max_length": None if sft.get("max_length", 8192) is None
        else int(sft.get("max_length", 8192)),
        "completion_only_loss": True,
        "packing": bool(sft.get("packing", False)),
        "run_name": run_name,
    })
    kw.update(dict(sft.get("trl_args") or {}))
    return kw


def grpo_config_kwargs(grpo: Mapping[str, Any], plan: DevicePlan, output_dir: str,
                       variant: Variant, seed: int = 42, run_name: str | None = None,
                       reward_weights: list[float] | None = None,
                       max_prompt_tokens: int | None = None) -> dict[str, Any]:
    """``trl.GRPOConfig`` keyword arguments for one variant.

    ``reward_weights`` follows the order of :func:`rewards.build_reward_funcs` (format, answer,
    trace when the variant uses it); by default taken from the variant's weights.
    """
    kw = _common(grpo, plan, output_dir, seed)
    if reward_weights is None:
        w = variant.weights
        reward_weights = [w.format, w.answer] + ([w.trace] if variant.uses_trace else [])
    kw.update({
        "num_generations": int(grpo.get("num_generations", 8)),
        "max_completion_length": int(grpo.get("max_completion_length", 512)),
        "temperature": float(grpo.get("temperature", 1.0)),
        "top_p": float(grpo.get("top_p", 1.0)),
        "beta": float(grpo.get("beta", 0.04)),
        "num_iterations": int(grpo.get("num_iterations", 1)),
        "epsilon": float(grpo.get("epsilon", 0.2)),
        "loss_type": str(grpo.get("loss_type", "dapo")),
        "scale_rewards": str(grpo.get("scale_rewards", "group")),
        "reward_weights": [float(x) for x in reward_weights],
        "log_completions": bool(grpo.get("log_completions", False)),
        "use_vllm": bool(grpo.get("use_vllm", False)),
        "run_name": run_name,
    })
    if grpo.get("generation_batch_size"):
        kw["generation_batch_size"] = int(grpo["generation_batch_size"])
    kw.update(vllm_kwargs(grpo, max_prompt_tokens))
    kw.update(dict(grpo.get("trl_args") or {}))
    return kw


def vllm_kwargs(grpo: Mapping[str, Any], max_prompt_tokens: int | None = None) -> dict[str, Any]:
    """vLLM arguments of ``GRPOConfig``. TRL ignores ``vllm_*`` without ``use_vllm``, so a
    ``vllm_mode`` (named or in ``trl_args``) without ``use_vllm: true`` is refused. Colocated
    vLLM gets a bounded context (``vllm_max_model_length``; default prompt + completion budget),
    since Qwen2.5-VL's 128k / Qwen3-VL's 256k default KV cache does not fit next to training."""
    trl_args = dict(grpo.get("trl_args") or {})
    use = bool(trl_args.get("use_vllm", grpo.get("use_vllm", False)))
    mode = trl_args.get("vllm_mode", grpo.get("vllm_mode"))
    if not use:
        if mode:
            raise ValueError(f"rl_training.grpo.vllm_mode={mode!r} needs "
                             "rl_training.grpo.use_vllm=true (TRL ignores it otherwise); set "
                             "use_vllm: true or vllm_mode: null")
        return {}
    mode = str(mode or "colocate")
    if mode not in ("colocate", "server"):
        raise ValueError(f"rl_training.grpo.vllm_mode={mode!r}: use colocate or server")
    kw: dict[str, Any] = {"vllm_mode": mode}
    if mode == "colocate":
        length = grpo.get("vllm_max_model_length")
        if length is None and max_prompt_tokens:
            length = int(max_prompt_tokens) + int(grpo.get("max_completion_length", 512))
        if length is None:
            raise ValueError("colocated vLLM needs rl_training.grpo.vllm_max_model_length (prompt "
                             "+ completion tokens): the model's default context does not fit "
                             "next to training")
        kw["vllm_max_model_length"] = int(length)
        kw["vllm_gpu_memory_utilization"] = float(grpo.get("vllm_gpu_memory_utilization", 0.3))
    return kw


def build_sft_config(**kwargs):
    from trl import SFTConfig

    return SFTConfig(**kwargs)


def build_grpo_config(**kwargs):
    from trl import GRPOConfig

    return GRPOConfig(**kwargs)


def describe(plan: DevicePlan) -> dict[str, Any]:
    return asdict(plan)
