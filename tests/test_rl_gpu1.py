"""The single-80-GB-GPU environment (conf/gpu1) validated without a GPU: every trainer key is
one GRPOConfig / SFTConfig accepts, the device plan resolves to one CUDA device in bf16, vLLM
is colocated with a bounded context, and a multi-GPU box without a launcher is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from unittest import mock

import pytest
from kedro.config import OmegaConfigLoader

from evads_kedro.pipelines.rl_training import config as cfg
from evads_kedro.pipelines.rl_training.pipeline import VARIANTS

ROOT = Path(__file__).resolve().parents[1]


def _params(env: str) -> dict:
    from evads_kedro.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    return loader["parameters"]


@pytest.fixture()
def one_gpu(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("EVADS_JUDGE_BASE_URL", "https://judge.example/v1")
    monkeypatch.setenv("EVADS_JUDGE_MODEL", "judge")
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.device_count", return_value=1):
        yield


def test_gpu1_environment_validates_without_running(one_gpu, tmp_path):
    from trl import GRPOConfig, SFTConfig

    params = _params("gpu1")
    rl = params["rl_training"]
    plan = cfg.plan_device(rl["device"], rl["precision"])
    assert (plan.device, plan.bf16, plan.use_cpu, plan.dtype) == ("cuda", True, False, "bfloat16")
    sft = cfg.sft_config_kwargs(rl["sft"], plan, str(tmp_path), rl["seed"], run_name="sft")
    grpo_fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert set(sft) <= {f.name for f in dataclasses.fields(SFTConfig)}, \
        set(sft) - {f.name for f in dataclasses.fields(SFTConfig)}
    for v in VARIANTS:
        variant = cfg.make_variant(params[f"grpo_{v}"]["variant"], rl["grpo"]["reward_weights"])
        kw = cfg.grpo_config_kwargs(rl["grpo"], plan, str(tmp_path), variant, rl["seed"],
                                    max_prompt_tokens=rl["data"]["max_prompt_tokens"])
        assert set(kw) <= grpo_fields, set(kw) - grpo_fields
    assert kw["use_vllm"] is True and kw["vllm_mode"] == "colocate"
    assert kw["vllm_max_model_length"] >= (rl["data"]["max_prompt_tokens"]
                                           + rl["grpo"]["max_completion_length"])
    assert kw["activation_checkpointing"] is True and kw["bf16"] is True
    assert rl["judge"]["backend"]["base_url"] == "https://judge.example/v1"
    assert rl["model"]["name_or_path"].startswith("models/")  # the download step's folder
    assert params["rl_compare"]["evaluation"]["judge"] == rl["judge"]


def test_multi_gpu_box_without_a_launcher_is_refused(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.device_count", return_value=4):
        with pytest.raises(RuntimeError, match="CUDA_VISIBLE_DEVICES=0"):
            cfg.plan_device("cuda", "bf16")
        monkeypatch.setenv("WORLD_SIZE", "4")  # accelerate / torchrun: one device per rank
        assert cfg.plan_device("cuda", "bf16").bf16


def test_vllm_mode_without_use_vllm_is_an_error_and_colocate_gets_a_bounded_context():
    with pytest.raises(ValueError, match="use_vllm=true"):
        cfg.vllm_kwargs({"use_vllm": False, "vllm_mode": "server"})
    with pytest.raises(ValueError, match="use_vllm=true"):
        cfg.vllm_kwargs({"trl_args": {"vllm_mode": "colocate"}})
    assert cfg.vllm_kwargs({"use_vllm": False, "vllm_mode": None}) == {}
    assert cfg.vllm_kwargs({"use_vllm": True, "max_completion_length": 512}, 6144)[
        "vllm_max_model_length"] == 6656
    with pytest.raises(ValueError, match="vllm_max_model_length"):
        cfg.vllm_kwargs({"use_vllm": True})
    assert cfg.vllm_kwargs({"use_vllm": True, "vllm_mode": "server"}) == {"vllm_mode": "server"}


@pytest.mark.parametrize("rank, tracked", [("0", True), ("3", False)])
def test_only_rank_0_opens_the_kedro_mlflow_run(rank, tracked):
    import os
    import subprocess
    import sys

    # the hooks Kedro registers from plugin entry points, as a session does
    code = ("from kedro.framework.hooks.manager import _create_hook_manager, "
            "_register_hooks_entry_points\n"
            "from evads_kedro import settings\n"
            "hm = _create_hook_manager()\n"
            "_register_hooks_entry_points(hm, settings.DISABLE_HOOKS_FOR_PLUGINS)\n"
            "print(any(hm.is_registered(p) and d.project_name == 'kedro_mlflow'\n"
            "          for p, d in hm.list_plugin_distinfo()))")
    env = {**os.environ, "RANK": rank, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip().splitlines()[-1]
    assert out == str(tracked)
