"""GRPO actually trains (a short run on the tiny smoke model): the saved LoRA moved away from its
initial values, at least one group of completions had a non-zero reward spread (else GRPO's
advantages are all zero and nothing is learned), and a rerun resumes from the last complete
checkpoint with the finished steps' history intact and ends on the very same weights.
benchmarks/grpo_learning.py measures the long run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evads_kedro.calls.cache import JsonlCache
from evads_kedro.pipelines.rl_training import checkpoints, nodes
from evads_kedro.pipelines.rl_training.smoke_judge import SmokeJudgeServer
from test_rl_pipeline import released_tables

ROOT = Path(__file__).resolve().parents[1]


def _params(tmp_path: Path, judge_url: str) -> dict:
    p = yaml.safe_load((ROOT / "conf/smoke/parameters_rl_training.yml").read_text())["rl_training"]
    p["judge"]["backend"]["base_url"] = judge_url
    p["judge_prompt_path"] = str(ROOT / p["judge_prompt_path"])
    p["mlflow"]["enabled"] = False
    p["model"]["tiny"].update({"tokenizer_texts": 64, "vocab_size": 512})
    p["data"].update({"sft_candidates": None, "rl_candidates": None, "max_prompt_tokens": 4096,
                      "max_sft_examples": 8, "max_rl_examples": 8, "heldout_videos": 0,
                      "max_heldout_examples": 0})
    p["sft"].update({"max_steps": 2, "max_length": 512})
    p["grpo"].update({"max_steps": 3, "num_generations": 4, "per_device_train_batch_size": 4,
                      "max_completion_length": 16})
    p["checkpoints"] = {"every_steps": 1, "keep": 2, "root": str(tmp_path / "ck")}
    return p


@pytest.mark.timeout(600)
def test_grpo_moves_the_adapter_sees_reward_spread_and_resumes(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    qa, videos = released_tables(6)
    with SmokeJudgeServer() as judge:
        params = _params(tmp_path, judge.base_url)
        base, _ = nodes.prepare_base_model(qa, params["model"], params["seed"])
        sft_rows, rl, _, _ = nodes.build_datasets(qa, videos, base, params["data"],
                                                          params["seed"])
        _, sft, _ = nodes.train_sft(sft_rows, base, params)
        cache = JsonlCache(tmp_path / "judgements.jsonl")
        monkeypatch.setattr(checkpoints, "clear", lambda folder: None)  # keep them to resume
        run, adapter, summary = nodes.train_grpo(rl, base, sft, cache, params,
                                                 {"name": "mg", "kind": "mg"})
        # as if killed during step 3: checkpoint-3 never completed, checkpoint-2 did
        folder = checkpoints.stage_dir(tmp_path / "ck", "grpo_mg")
        (folder / "checkpoint-3" / "trainer_state.json").unlink()
        _, adapter2, again = nodes.train_grpo(rl, base, sft, cache, params,
                                              {"name": "mg", "kind": "mg"})

    assert summary["steps"] == 3 and summary["resumed_from_step"] == 0
    lora_b = [t for k, t in load_file(f"{adapter}/adapter_model.safetensors").items()
              if "lora_B" in k]
    assert lora_b and max(float(t.abs().max()) for t in lora_b) > 0  # PEFT starts B at 0
    spread = [h["frac_reward_zero_std"] for h in summary["history"]]
    assert len(spread) == 3 and min(spread) < 1.0
    assert any(h["reward_std"] > 0 for h in summary["history"])
    assert [h["step"] for h in run["history"]] == [1, 2, 3]

    assert again["resumed_from_step"] == 2 and again["steps"] == 3
    assert [h["step"] for h in again["history"]] == [1, 2, 3]  # the finished steps are kept
    # steps 1-2 come from the checkpoint's log, wall-clock step_time included: had they been
    # trained again, their timings would differ
    assert again["history"][:2] == summary["history"][:2]
    first = load_file(f"{adapter}/adapter_model.safetensors")
    second = load_file(f"{adapter2}/adapter_model.safetensors")
    # weights, optimizer and RNG came back from checkpoint-2: step 3 is redone exactly (CPU,
    # one thread), so a resume that lost any of them would end on other weights
    assert again["history"][2] == summary["history"][2] | {"step_time": again["history"][2]["step_time"]}
    assert first.keys() == second.keys()
    assert all(bool((first[k] == second[k]).all()) for k in first)
