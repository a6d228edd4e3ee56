"""The vision-language path of rl_training (the GPU recipe's code path) with a tiny random
Qwen2-VL on CPU: frames as ``images`` through SFT and GRPO, a GRPO batch holding two image
prompts of different lengths (left padding of the Qwen VL processor, trl#5785)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from evads_kedro.calls.cache import JsonlCache
from evads_kedro.pipelines.rl_training import nodes
from evads_kedro.pipelines.rl_training.smoke_judge import SmokeJudgeServer
from test_rl_data import _write_video, qa_table


@pytest.mark.slow
def test_tiny_vl_model_trains_sft_and_grpo_on_frames(tmp_path, monkeypatch):
    from evads_kedro.backends.llm import clear_chat_cache

    monkeypatch.chdir(tmp_path)
    clear_chat_cache()
    video = tmp_path / "v0.mp4"
    _write_video(video, n=6, size=(112, 84))
    video2 = tmp_path / "v2.mp4"
    _write_video(video2, n=6, size=(112, 84))
    videos = pd.DataFrame({"video_id": ["v0", "v1", "v2"], "video_exists": [True, False, True],
                           "video_path": [str(video), str(tmp_path / "v1.mp4"), str(video2)]})
    qa = qa_table(3)
    with SmokeJudgeServer() as judge:
        params = {
            "device": "cpu", "seed": 0, "cpu_threads": 1,
            "model": {"source": "tiny", "tiny": {"vision": True, "vocab_size": 400,
                                                 "image_side": 56}},
            "data": {"max_prompt_tokens": 100_000, "heldout_videos": 0,
                     "frames": {"enabled": True, "num_frames": 2, "max_side": 112}},
            "lora": {"r": 4, "alpha": 8,
                     "target_modules": r"^(?!.*visual).*\.(q_proj|v_proj)$"},
            "sft": {"max_steps": 1, "per_device_train_batch_size": 2, "max_length": None,
                    "gradient_checkpointing": False, "disable_tqdm": True},
            # 4 completions per step = 2 prompts x 2 generations in one batch
            "grpo": {"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 4,
                     "max_completion_length": 6, "gradient_checkpointing": False,
                     "disable_tqdm": True},
            "judge_prompt_path": "conf/base/prompts/evaluation/judge.txt",
            "judge": {"backend": {"backend": "openai", "base_url": judge.base_url,
                                  "model": "smoke", "api_key_env": None, "max_retries": 0},
                      "invalid_retries": 0, "concurrency": 4},
            "mlflow": {"enabled": False},
            "checkpoints": {"root": str(tmp_path / "checkpoints")},
        }
        base, info = nodes.prepare_base_model(qa, params["model"], params["seed"])
        assert info["vision"] is True
        sft, rl, held, report = nodes.build_datasets(qa, videos, base, params["data"],
                                                         params["seed"])
        assert report["input_mode"] == "frames+timeline"
        assert report["sft"]["with_frames"] == 4 and report["sft"]["text_only"] == 2
        _, adapter, sft_summary = nodes.train_sft(sft, base, params)
        assert sft_summary["steps"] == 1
        assert report["image_tokens_per_video"] == 2 * (4 * 4 + 2)  # 112 px / 28, 2 frames
        from evads_kedro.pipelines.rl_training import models

        assert models.load_processing_class(models.base_info(base)).tokenizer.padding_side == "left"
        # two image prompts of different lengths in the one GRPO batch
        rl = rl[rl["video_path"].notna()].drop_duplicates("video_id").head(2)
        assert len(rl) == 2 and rl["n_prompt_tokens"].nunique() == 2
        _, out, summary = nodes.train_grpo(rl, base, adapter, JsonlCache(tmp_path / "c.jsonl"),
                                        params, {"name": "mg", "kind": "mg"})
        assert judge.requests > 0
    assert summary["steps"] == 1
    assert json.loads(json.dumps(summary))["variant"] == "mg"  # the catalog saves it as JSON
    for folder in (base, adapter, out):
        shutil.rmtree(folder, ignore_errors=True)
