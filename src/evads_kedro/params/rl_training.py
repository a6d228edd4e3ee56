"""``rl_training`` and the five ``grpo_*`` variant blocks (conf/*/parameters_rl_training.yml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.evaluation import Evaluation, ModelUnderTest
from evads_kedro.params.judge import Judge

Precision = Literal["auto", "bf16", "fp16", "fp32"]


class Tiny(Block):
    """``rl_training.model.tiny``: the random model of smoke runs and tests."""

    architecture: Literal["qwen2", "llama"] | None = None
    hidden_size: PositiveInt | None = None
    intermediate_size: PositiveInt | None = None
    num_layers: PositiveInt | None = None
    num_heads: PositiveInt | None = None
    num_kv_heads: PositiveInt | None = None
    tokenizer: str | None = None
    vocab_size: PositiveInt | None = None
    tokenizer_texts: PositiveInt | None = None
    tie_embeddings: bool | None = None
    max_position_embeddings: PositiveInt | None = None
    initializer_range: PositiveFloat | None = None


class Model(Block):
    """``rl_training.model``: the base policy."""

    source: Literal["pretrained", "tiny", "smollm2"] | None = None
    name_or_path: str | None = None
    vision: bool | Literal["auto"] | None = None
    tiny: Tiny | None = None


class Frames(Block):
    """``rl_training.data.frames``: images for a vision-language base."""

    enabled: bool | None = None
    num_frames: PositiveInt | None = None
    max_side: PositiveInt | None = None
    pixels_per_token: PositiveInt | None = None


class Data(Block):
    """``rl_training.data``: splits, filters and held-out videos."""

    sft_split: str | None = None
    rl_split: str | None = None
    sft_candidates: PositiveInt | None = None
    rl_candidates: PositiveInt | None = None
    max_prompt_tokens: PositiveInt | None = None
    max_sft_examples: PositiveInt | None = None
    max_rl_examples: PositiveInt | None = None
    heldout_videos: NonNegativeInt | None = None
    max_heldout_examples: NonNegativeInt | None = None
    target_template: str | None = None
    frames: Frames | None = None


class Lora(Block):
    """``rl_training.lora``."""

    r: PositiveInt | None = None
    alpha: PositiveFloat | None = None
    dropout: float | None = Field(default=None, ge=0, lt=1)
    target_modules: str | list[str] | None = None
    modules_to_save: list[str] | None = None


class Trainer(Block):
    """Keys both SFT and GRPO pass to their TRL config (rl_training/config.py)."""

    max_steps: int | None = None
    learning_rate: PositiveFloat | None = None
    per_device_train_batch_size: PositiveInt | None = None
    gradient_accumulation_steps: PositiveInt | None = None
    lr_scheduler_type: str | None = None
    logging_steps: PositiveInt | None = None
    gradient_checkpointing: bool | None = None
    trl_args: dict[str, Any] | None = None
    warmup_steps: NonNegativeFloat | None = None
    weight_decay: NonNegativeFloat | None = None
    max_grad_norm: PositiveFloat | None = None
    save_strategy: str | None = None
    report_to: list[str] | None = None
    dataloader_num_workers: NonNegativeInt | None = None
    disable_tqdm: bool | None = None


class Sft(Trainer):
    """``rl_training.sft``: stage 1."""

    num_train_epochs: PositiveFloat | None = None
    max_length: PositiveInt | None = None
    packing: bool | None = None


class RewardWeights(Block):
    """``rl_training.grpo.reward_weights``: R = answer·G + trace·G + format·R_fmt."""

    answer: NonNegativeFloat | None = None
    trace: NonNegativeFloat | None = None
    format: NonNegativeFloat | None = None


class PartialWeights(Block):
    """A variant's ``weights``: overrides of some reward weights."""

    answer: NonNegativeFloat | None = None
    trace: NonNegativeFloat | None = None
    format: NonNegativeFloat | None = None


class Grpo(Trainer):
    """``rl_training.grpo``: stage 2 (MG-GRPO)."""

    reward_weights: RewardWeights | None = None
    trace_reference: Literal["clues", "answer"] | None = None
    num_generations: int | None = Field(default=None, ge=2)
    beta: NonNegativeFloat | None = None
    temperature: PositiveFloat | None = None
    max_completion_length: PositiveInt | None = None
    loss_type: str | None = None
    scale_rewards: str | None = None
    use_vllm: bool | None = None
    vllm_mode: Literal["colocate", "server"] | None = None
    vllm_max_model_length: PositiveInt | None = None
    vllm_gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    log_completions: bool | None = None
    top_p: float | None = Field(default=None, gt=0, le=1)
    num_iterations: PositiveInt | None = None
    epsilon: PositiveFloat | None = None
    generation_batch_size: PositiveInt | None = None


class Checkpoints(Block):
    """``rl_training.checkpoints``: every N optimizer steps, resume from the last complete."""

    every_steps: NonNegativeInt | None = None
    keep: PositiveInt | None = None
    root: str | None = None


class Mlflow(Block):
    """``rl_training.mlflow``: nested runs per stage / variant."""

    enabled: bool | None = None
    experiment: str | None = None


class RlTraining(Block):
    """``rl_training``."""

    device: str | None = None
    precision: Precision | None = None
    seed: int | None = None
    cpu_threads: PositiveInt | None = None
    attn_implementation: str | None = None
    model: Model | None = None
    data: Data | None = None
    lora: Lora | None = None
    sft: Sft | None = None
    grpo: Grpo | None = None
    judge_prompt_path: str | None = None
    judge: Judge | None = None
    checkpoints: Checkpoints | None = None
    mlflow: Mlflow | None = None


class Variant(Block):
    """``grpo_<v>.variant``: one reward variant (kind = the score used for answer and trace)."""

    name: str | None = None
    kind: Literal["s", "r3", "r5", "mg"] | None = None
    weights: PartialWeights | None = None


class VariantBlock(Block):
    """A ``grpo_<v>`` namespace block."""

    variant: Variant | None = None


class CompareModel(ModelUnderTest):
    """``rl_compare.model``: a model under test whose backend lacks its folders (model_dir and
    adapter_dir come per variant from the catalog; the completed block is checked then)."""

    backend: dict[str, Any] | None = None


class RlCompare(Block):
    """``rl_compare``: base, SFT and every GRPO variant scored by the evaluation pipeline."""

    variants: list[str] | None = None
    baseline: str | None = None
    table_metric: Literal["r5", "r3", "s", "mg"] | None = None
    model: CompareModel | None = None
    evaluation: Evaluation | None = None  # replaces evaluation's keys of the same name
