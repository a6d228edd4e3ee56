"""Device dispatch of the trainers: CPU + fp32 without a GPU, CUDA + bf16 with one (no GPU
needed to check the CUDA config), LoRA and TRL arguments from parameters."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import yaml

from evads_kedro.pipelines.rl_training import config as cfg

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "conf/base/parameters_rl_training.yml").read_text())["rl_training"]
MG = cfg.make_variant({"name": "mg", "kind": "mg"}, PARAMS["grpo"]["reward_weights"])


def test_without_cuda_the_trainer_selects_cpu_fp32(tmp_path):
    with mock.patch("torch.cuda.is_available", return_value=False):
        plan = cfg.plan_device("auto", "auto")
        assert (plan.device, plan.use_cpu, plan.bf16, plan.fp16, plan.dtype) == \
            ("cpu", True, False, False, "float32")
        grpo = cfg.build_grpo_config(**cfg.grpo_config_kwargs(
            {**PARAMS["grpo"], "report_to": []}, plan, str(tmp_path), MG))
        sft = cfg.build_sft_config(**cfg.sft_config_kwargs(
            {**PARAMS["sft"], "report_to": []}, plan, str(tmp_path)))
    for c in (grpo, sft):
        assert c.use_cpu is True and c.bf16 is False and c.fp16 is False
    assert grpo.reward_weights == [1.0, 0.8, 0.2]
    assert grpo.num_generations == PARAMS["grpo"]["num_generations"]
    assert grpo.beta == PARAMS["grpo"]["beta"]
    import torch

    assert plan.torch_dtype is torch.float32


def test_with_cuda_the_config_is_bf16_on_gpu(tmp_path):
    with mock.patch("torch.cuda.is_available", return_value=True):
        plan = cfg.plan_device("auto", "auto")
        grpo = cfg.grpo_config_kwargs(PARAMS["grpo"], plan, str(tmp_path), MG, seed=7,
                                      run_name="grpo_mg")
        sft = cfg.sft_config_kwargs(PARAMS["sft"], plan, str(tmp_path))
    assert (plan.device, plan.use_cpu, plan.bf16, plan.dtype) == ("cuda", False, True, "bfloat16")
    for kw in (grpo, sft):
        assert kw["bf16"] is True and kw["use_cpu"] is False and kw["fp16"] is False
        assert kw["activation_checkpointing"] is True
    assert grpo["seed"] == 7 and grpo["run_name"] == "grpo_mg"
    assert grpo["reward_weights"] == [1.0, 0.8, 0.2] and grpo["report_to"] == ["mlflow"]
    assert sft["completion_only_loss"] is True
    # the kwargs are exactly what GRPOConfig accepts (construction itself needs a GPU)
    import dataclasses

    from trl import GRPOConfig, SFTConfig

    assert set(grpo) <= {f.name for f in dataclasses.fields(GRPOConfig)}
    assert set(sft) <= {f.name for f in dataclasses.fields(SFTConfig)}


def test_explicit_devices_and_precisions():
    with mock.patch("torch.cuda.is_available", return_value=True):
        assert cfg.plan_device("cuda:1", "fp16").device == "cuda:1"
        assert cfg.plan_device("cuda", "fp16").fp16 is True
        assert cfg.plan_device("cuda", "fp32").dtype == "float32"
        assert cfg.plan_device("cpu").use_cpu is True
    with mock.patch("torch.cuda.is_available", return_value=False):
        with pytest.raises(RuntimeError, match="no CUDA"):
            cfg.plan_device("cuda")
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            cfg.plan_device("cpu", "bf16")


def test_trl_args_pass_through_and_vllm():
    plan = cfg.DevicePlan("cuda", False, True, False, "bfloat16")
    kw = cfg.grpo_config_kwargs({**PARAMS["grpo"], "use_vllm": True, "vllm_mode": "server",
                                 "trl_args": {"vllm_server_base_url": "http://h:8000"}},
                                plan, "/tmp/x", MG)
    assert kw["use_vllm"] and kw["vllm_mode"] == "server"
    assert kw["vllm_server_base_url"] == "http://h:8000"


def test_lora_from_parameters():
    kw = cfg.lora_kwargs(PARAMS["lora"])
    assert (kw["r"], kw["lora_alpha"], kw["task_type"]) == (64, 128, "CAUSAL_LM")
    import re

    pattern = kw["target_modules"]
    assert re.fullmatch(pattern, "model.language_model.layers.3.self_attn.q_proj")
    assert re.fullmatch(pattern, "model.layers.0.mlp.down_proj")
    assert not re.fullmatch(pattern, "model.visual.blocks.0.mlp.gate_proj")
    lora = cfg.build_lora_config({"r": 4, "alpha": 8, "target_modules": ["q_proj"],
                                  "modules_to_save": ["lm_head"]})
    assert lora.r == 4 and lora.lora_alpha == 8 and set(lora.target_modules) == {"q_proj"}
