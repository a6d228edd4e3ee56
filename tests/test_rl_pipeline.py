"""The rl_training pipeline end to end on CPU: tiny model, SFT, five GRPO variants against the
loopback smoke judge, five MLflow runs with per-step reward curves, the comparison outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from evads_kedro.pipeline_registry import register_pipelines
from evads_kedro.pipelines.rl_training.pipeline import VARIANTS
from evads_kedro.pipelines.rl_training.smoke_judge import SmokeJudgeServer

INSTR = ("You are permitted to gather any relevant clues, think step by step, to answer this "
         "question. Output your thought process and the final answer in the following format\n"
         "<think>your_thinking</think> <answer>your_answer_within_50_words</answer>")
WORDS = ["是谁突然降温", "没有衣服穿啊", "半高领打底衫", "限时特价", "买二送一", "百搭显瘦",
         "轻薄保暖", "微胖姐妹", "面料舒适", "立即下单"]


def released_tables(n_videos: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    qa, videos = [], []
    for v in range(n_videos):
        w = [WORDS[(v + i) % len(WORDS)] for i in range(4)]
        full = (f"Category: 服饰鞋包\nDuration: 4s\n\n[Time-aligned Events]:\n"
                f'Time 0s: OCR Text: [{w[0]}] ; ASR Text: "{w[1]}"\nTime 2s: ASR Text: "{w[2]}"')
        asr = (f"Voiceover: Duration: 4s\n\n[Time-aligned Events]:\n"
               f'Time 0s: Audio Speech: "{w[1]}"\nTime 2s: Audio Speech: "{w[2]}"')
        videos.append({"video_id": f"{v}", "video_exists": False,
                       "video_path": f"data/01_raw/released_videos/{v}.mp4"})
        for k, (split, tl) in enumerate([("sft", full), ("sft", full), ("rl", asr), ("rl", asr)]):
            q = f"这则广告的第{k}个卖点是什么？"
            prompt = ("<video>" + tl + "\n" + q + "\n\n" + INSTR if split == "sft"
                      else "<video>" + tl + "\n\n Question: " + q + "\n" + INSTR)
            qa.append({"question_id": f"ques_{v:016x}{k:016x}", "video_id": f"{v}",
                       "split": split, "category": "服饰鞋包", "task": None, "question": q,
                       "answer": f"{w[3]}，{w[0]}", "think": f"字幕{w[0]}，口播{w[1]}"
                       if split == "sft" else None,
                       "clues": None if split == "sft" else f"开头字幕{w[0]}",
                       "ground_truth": "", "instruction": INSTR, "prompt": prompt,
                       "prompt_timeline": tl, "timeline_full": full, "source_row": k})
    return pd.DataFrame(qa), pd.DataFrame(videos)


SHRINK = {"rl_training": {
    "model": {"tiny": {"tokenizer_texts": 64, "vocab_size": 512}},
    "data": {"sft_candidates": None, "rl_candidates": None, "max_prompt_tokens": 4096,
             "max_sft_examples": 8, "max_rl_examples": 8, "heldout_videos": 2,
             "max_heldout_examples": 2},
    "sft": {"max_steps": 2, "max_length": 512},
    "grpo": {"max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 2,
             "max_completion_length": 12},
}, "rl_compare": {"model": {"max_tokens": 8}}}


def test_registry_has_the_five_variant_namespaces():
    pipe = register_pipelines()["rl_training"]
    names = {n.name for n in pipe.nodes}
    assert {f"grpo_{v}.train_grpo" for v in VARIANTS} <= names
    assert {"prepare_base_model", "build_rl_datasets", "train_sft",
            "rl_compare.compare_variants"} <= names
    only_mg = pipe.only_nodes_with_namespaces(["grpo_mg"])
    assert [n.name for n in only_mg.nodes] == ["grpo_mg.train_grpo"]
    assert "params:grpo_mg.variant" in only_mg.inputs()


@pytest.mark.slow
def test_smoke_pipeline_trains_sft_and_five_variants_tracked_in_mlflow(kedro_project, monkeypatch):
    import mlflow
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    qa, videos = released_tables()
    (kedro_project / "data/03_primary").mkdir(parents=True, exist_ok=True)
    (kedro_project / "data/02_intermediate/released").mkdir(parents=True, exist_ok=True)
    qa.to_parquet(kedro_project / "data/03_primary/released_qa.parquet")
    videos.to_parquet(kedro_project / "data/02_intermediate/released/videos.parquet")
    bootstrap_project(kedro_project)
    configure_project("evads_kedro")
    with SmokeJudgeServer() as judge:
        monkeypatch.setenv("EVADS_JUDGE_BASE_URL", judge.base_url)
        with KedroSession.create(project_path=kedro_project, env="smoke",
                                 runtime_params=SHRINK) as session:
            session.run(pipeline_names=["rl_training"])
        assert judge.requests > 0

    rep = kedro_project / "data/08_reporting/rl_training"
    # the comparison: base, SFT and the five adapters answered as models under test of the
    # evaluation pipeline (local backend + adapter_dir) on the 2 held-out questions
    scores = pd.read_csv(rep / "variant_scores.csv")
    overall = scores[scores["group_by"] == "overall"]
    assert overall["variant"].tolist() == ["base", "sft", *VARIANTS]
    assert (overall["n"] == 2).all() and overall["r5"].between(0, 1).all()
    assert {"overall", "dimension", "task"} <= set(scores["group_by"])
    items = pd.read_parquet(rep / "evaluation/item_results.parquet")
    assert items.groupby("model")["question_id"].nunique().to_dict() == {
        m: 2 for m in ["base", "sft", *VARIANTS]}
    ids = items.groupby("model")["model_id"].first()
    # the answer cache is keyed by the weights: base alone, every other row base + LoRA(s)
    # (two variants whose GRPO left the adapter unchanged share an id, and their answers)
    assert ids["base"] == "local:base_model"
    assert all(ids[m].startswith("local:base_model+lora:") for m in ["sft", *VARIANTS])
    md = (rep / "comparison.md").read_text()
    assert "| variant | Basic Perception" in md and "Δ C&R vs base" in md
    assert "| stage | steps | final reward | wall s |" in md
    assert (rep / "reward_curves.png").stat().st_size > 10_000
    report = json.loads((rep / "data_report.json").read_text())
    assert report["input_mode"] == "text-only (timeline)" and report["heldout"]["videos"] == 2
    for v in VARIANTS:
        assert (kedro_project / f"data/06_models/rl_training/grpo_{v}/adapter/adapter_config.json").is_file()
    assert (kedro_project / "data/06_models/rl_training/sft_adapter/adapter_model.safetensors").is_file()

    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["evads-grpo"])
    grpo = runs[runs["tags.evads.stage"] == "grpo"]
    assert sorted(grpo["tags.evads.variant"]) == sorted(VARIANTS)
    kedro_run = mlflow.search_runs(experiment_names=["evads_kedro"])
    assert set(grpo["tags.mlflow.parentRunId"]) == set(kedro_run["run_id"])
    client = mlflow.MlflowClient()
    for _, r in grpo.iterrows():
        assert len(client.get_metric_history(r["run_id"], "reward")) == 2  # one point per step
        for m in ("kl", "completions/mean_length", "learning_rate", "rewards/format/mean",
                  f"rewards/answer_{r['tags.evads.kind']}/mean", "judge/answer_mg"):
            assert client.get_metric_history(r["run_id"], m), m
        has_trace = r["tags.evads.variant"] != "mg_no_trace"
        assert bool(client.get_metric_history(r["run_id"], f"rewards/trace_{r['tags.evads.kind']}/mean")) == has_trace
        assert r["params.evads.variant.w_answer"] == "0.8"
        arts = {a.path for a in client.list_artifacts(r["run_id"], "adapter")}
        assert "adapter/adapter_config.json" in arts

    variant_runs = mlflow.search_runs(experiment_names=["evads-grpo"],
                                      filter_string="tags.`evads.kind` = 'rl_compare'")
    assert sorted(variant_runs["tags.evads.model"]) == sorted(["base", "sft", *VARIANTS])
    assert set(variant_runs["tags.mlflow.parentRunId"]) == set(kedro_run["run_id"])
    assert variant_runs["metrics.overall.all.r5"].between(0, 1).all()
