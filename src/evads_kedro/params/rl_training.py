"""``rl_training`` and the five ``grpo_*`` variant blocks (conf/*/parameters_rl_training.yml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from evads_kedro.params.base import Block
from evads_kedro.params.judge import Judge

Precision = Literal["auto", "bf16", "fp16", "fp32"]


class Tiny(Block):
    """``rl_training.model.tiny``: the random model of smoke runs and tests."""

    architecture: Literal["qwen2", "llama"]
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    num_layers: PositiveInt
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    tokenizer: str
    vocab_size: PositiveInt
    tokenizer_texts: PositiveInt
    tie_embeddings: bool
    max_position_embeddings: PositiveInt | None = None
    initializer_range: PositiveFloat | None = None


class Model(Block):
    """``rl_training.model``: the base policy."""

    source: Literal["pretrained", "tiny", "smollm2"]
    name_or_path: str | None
    vision: bool | Literal["auto"]
    tiny: Tiny


class Frames(Block):
    """``rl_training.data.frames``: images for a vision-language base."""

    enabled: bool
    num_frames: PositiveInt
    max_side: PositiveInt


class Data(Block):
    """``rl_training.data``: splits, filters and held-out videos."""

    sft_split: str
    rl_split: str
    sft_candidates: PositiveInt | None
    rl_candidates: PositiveInt | None
    max_prompt_tokens: PositiveInt
    max_sft_examples: PositiveInt | None
    max_rl_examples: PositiveInt | None
    heldout_videos: NonNegativeInt
    max_heldout_examples: NonNegativeInt | None
    target_template: str
    frames: Frames


class Lora(Block):
    """``rl_training.lora``."""

    r: PositiveInt
    alpha: PositiveFloat
    dropout: float = Field(ge=0, lt=1)
    target_modules: str | list[str]
    modules_to_save: list[str] | None


class Trainer(Block):
    """Keys both SFT and GRPO pass to their TRL config (rl_training/config.py)."""

    max_steps: int
    learning_rate: PositiveFloat
    per_device_train_batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt
    lr_scheduler_type: str
    logging_steps: PositiveInt
    gradient_checkpointing: bool
    trl_args: dict[str, Any]
    warmup_steps: NonNegativeFloat | None = None
    weight_decay: NonNegativeFloat | None = None
    max_grad_norm: PositiveFloat | None = None
    save_strategy: str | None = None
    report_to: list[str] | None = None
    dataloader_num_workers: NonNegativeInt | None = None
    disable_tqdm: bool | None = None


class Sft(Trainer):
    """``rl_training.sft``: stage 1."""

    num_train_epochs: PositiveFloat
    max_length: PositiveInt | None
    packing: bool | None = None


class RewardWeights(Block):
    """``rl_training.grpo.reward_weights``: R = answer·G + trace·G + format·R_fmt."""

    answer: NonNegativeFloat
    trace: NonNegativeFloat
    format: NonNegativeFloat


class PartialWeights(Block):
    """A variant's ``weights``: overrides of some reward weights."""

    answer: NonNegativeFloat | None = None
    trace: NonNegativeFloat | None = None
    format: NonNegativeFloat | None = None


class Grpo(Trainer):
    """``rl_training.grpo``: stage 2 (MG-GRPO)."""

    reward_weights: RewardWeights
    trace_reference: Literal["clues", "answer"]
    num_generations: int = Field(ge=2)
    beta: NonNegativeFloat
    temperature: PositiveFloat
    max_completion_length: PositiveInt
    loss_type: str
    scale_rewards: str
    use_vllm: bool
    vllm_mode: Literal["colocate", "server"]
    log_completions: bool
    top_p: float | None = Field(default=None, gt=0, le=1)
    num_iterations: PositiveInt | None = None
    epsilon: PositiveFloat | None = None
    generation_batch_size: PositiveInt | None = None


class Heldout(Block):
    """``rl_training.heldout``: the policy answers the held-out questions."""

    max_new_tokens: PositiveInt
    temperature: NonNegativeFloat
    seed: int
    batch_size: PositiveInt


class Checkpoints(Block):
    """``rl_training.checkpoints``: every N optimizer steps, resume from the last complete."""

    every_steps: NonNegativeInt
    keep: PositiveInt | None
    root: str


class Mlflow(Block):
    """``rl_training.mlflow``: nested runs per stage / variant."""

    enabled: bool
    experiment: str


class RlTraining(Block):
    """``rl_training``."""

    device: str
    precision: Precision
    seed: int
    cpu_threads: PositiveInt | None
    attn_implementation: str | None
    model: Model
    data: Data
    lora: Lora
    sft: Sft
    grpo: Grpo
    judge_prompt_path: str
    judge: Judge
    heldout: Heldout
    checkpoints: Checkpoints
    mlflow: Mlflow


class Variant(Block):
    """``grpo_<v>.variant``: one reward variant (kind = the score used for answer and trace)."""

    name: str
    kind: Literal["s", "r3", "r5", "mg"]
    weights: PartialWeights | None = None


class VariantBlock(Block):
    """A ``grpo_<v>`` namespace block."""

    variant: Variant
