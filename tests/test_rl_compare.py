"""Trained RL variants as models under test: LoRA adapters on the local backend, the rewired
evaluation pipeline, and the paper-layout comparison table."""

from __future__ import annotations

import asyncio
import json
import math

import pandas as pd
import pytest
from kedro.pipeline import Node, Pipeline

from evads_kedro.backends import adapters
from evads_kedro.backends.llm import LocalTransformersChat, build_chat, clear_chat_cache
from evads_kedro.pipelines.rl_training import compare


# ------------------------------------------------------------------------------ adapters
def _tiny(tmp_path):
    """A tiny random Qwen2 + tokenizer, and two LoRA adapters with non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model

    from evads_kedro.pipelines.rl_training.models import build_tiny_model, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["the price is low", "buy two get one free"] * 20, 300)
    model = build_tiny_model(tok, {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1,
                                   "num_heads": 2, "num_kv_heads": 1})
    base = tmp_path / "base_model"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    dirs = []
    for i in range(2):
        peft = get_peft_model(build_tiny_model(tok, {"hidden_size": 32, "intermediate_size": 64,
                                                     "num_layers": 1, "num_heads": 2,
                                                     "num_kv_heads": 1}),
                              LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        torch.manual_seed(i)
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 1.0)
        d = tmp_path / f"adapter{i}"
        peft.save_pretrained(d)
        dirs.append(d)
    return base, dirs, tok


def _logits(backend: LocalTransformersChat, tok):
    import torch

    model, _, _ = backend._load()
    ids = torch.tensor([tok("the price is low")["input_ids"]])
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_local_backend_merges_adapters_in_order_and_keys_the_cache_by_them(tmp_path):
    base, (a, b), tok = _tiny(tmp_path)
    plain = LocalTransformersChat(base, device="cpu")
    one = LocalTransformersChat(base, device="cpu", adapter_dir=str(a))
    two = LocalTransformersChat(base, device="cpu", adapter_dir=[str(a), str(b)])
    assert plain.model_id == "local:base_model"
    assert one.model_id.startswith("local:base_model+lora:") and one.model_id != two.model_id
    l0, l1, l2 = _logits(plain, tok), _logits(one, tok), _logits(two, tok)
    assert (l0 - l1).abs().max() > 1e-3 and (l1 - l2).abs().max() > 1e-3
    reply = asyncio.run(two.chat([{"role": "user", "content": "the price"}], temperature=0,
                                 max_tokens=3))
    assert reply.usage["completion_tokens"] >= 1
    assert two.describe()["adapter_dir"] == [str(a), str(b)]
    # the same weights saved again are the same model id (the cache is reused) ...
    (tmp_path / "copy").mkdir()
    for f in a.iterdir():
        (tmp_path / "copy" / f.name).write_bytes(f.read_bytes())
    assert LocalTransformersChat(base, adapter_dir=tmp_path / "copy").model_id == one.model_id


def test_adapter_dir_errors_name_the_folder_and_pointer_folders_resolve(tmp_path):
    base, (a, _), _ = _tiny(tmp_path)
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        LocalTransformersChat(base, adapter_dir=tmp_path)
    pointer = tmp_path / "pointer"
    pointer.mkdir()
    (pointer / adapters.POINTER).write_text(json.dumps({"name_or_path": str(base)}))
    assert adapters.resolve_base_dir(pointer) == base
    (pointer / adapters.POINTER).write_text(json.dumps({"name_or_path": "nobody/none-7B"}))
    with pytest.raises(FileNotFoundError, match="Download it first"):
        adapters.resolve_base_dir(pointer)
    clear_chat_cache()
    chat = build_chat({"backend": "local", "model_dir": str(base), "adapter_dir": [str(a)]})
    assert "+lora:" in chat.model_id


# ------------------------------------------------------------------------------ comparison
def test_trained_models_stack_sft_and_variant_adapters_in_the_asked_order():
    models = compare.trained_models(
        {"variants": ["mg", "base", "sft"],
         "model": {"max_tokens": 8, "backend": {"backend": "local", "device": "cpu"}}},
        "/m/base", "/m/sft", {"s": "/m/s", "mg": "/m/mg"})
    assert list(models) == ["mg", "base", "sft"]
    assert "adapter_dir" not in models["base"]["backend"]
    assert models["sft"]["backend"]["adapter_dir"] == ["/m/sft"]
    assert models["mg"]["backend"] == {"backend": "local", "device": "cpu",
                                       "model_dir": "/m/base", "adapter_dir": ["/m/sft", "/m/mg"]}
    assert models["mg"]["max_tokens"] == 8 and models["mg"]["enabled"] is True
    with pytest.raises(ValueError, match="unknown variant 'r9'"):
        compare.trained_models({"variants": ["r9"]}, "b", "s", {"mg": "g"})


def _f(x):
    return x


def test_evaluation_is_rewired_to_heldout_questions_and_comparison_settings():
    evaluation = Pipeline([
        Node(_f, "released_qa", "evaluation_questions", name="select"),
        Node(lambda q, c, p, j: q, ["evaluation_questions", "evaluation_answer_cache",
                                    "params:evaluation", "params:evaluation.judge"],
             "evaluation_breakdown", name="score"),
    ])
    pipe = compare.comparison_pipeline(evaluation, ("mg",))
    assert pipe.inputs() == {"rl_heldout_qa", "evaluation_answer_cache", "params:evaluation",
                             "params:rl_compare", "rl_base_model", "rl_sft_adapter",
                             "grpo_mg.grpo_adapter"}
    assert pipe.outputs() >= {"rl_compare.evaluation_breakdown"}
    assert {n.name for n in pipe.nodes} >= {"rl_compare.select", "rl_compare.score",
                                            "rl_compare.settings_judge"}
    settings = compare._Settings(("mg",))(
        {"judge": {"smoke_test": True}, "subset": {"splits": ["rl"]}, "video_roots": ["v"],
         "models_under_test": {"asr_only": {}}},
        {"evaluation": {"judge": {"smoke_test": False}}, "variants": ["base", "mg"]},
        "/b", "/s", "/g")
    assert settings["judge"] == {"smoke_test": False}  # replaced, not merged
    assert settings["subset"] == {"splits": ["rl"]} and settings["video_roots"] == ["v"]
    assert list(settings["models_under_test"]) == ["base", "mg"]
    assert compare._Picker("judge")(settings) == {"smoke_test": False}


def _breakdown():
    rows = []
    for model, scale in (("base", 0.2), ("sft", 0.3), ("mg", 0.5)):
        for g, grp in [("overall", "all"), ("dimension", "perception"),
                       ("dimension", "cognition"), *[("task", t) for t in
                                                    ("BP", "CM", "ML", "CI", "RC")]]:
            v = scale * (2 if grp == "cognition" else 1)
            rows.append({"model": model, "grouping": g, "group": grp, "n_judged": 10,
                         "r5": v, "r3": v, "s": v, "mg": v, "r5_ci_low": v - 0.1,
                         "r5_ci_high": v + 0.1})
    return pd.DataFrame(rows)


def test_variant_scores_long_form_and_paper_table_with_gain_over_base():
    scores = compare.variant_scores(_breakdown(), {"variants_order": ["mg", "base", "sft"]})
    assert list(scores.columns) == compare.SCORE_COLUMNS
    assert scores["variant"].drop_duplicates().tolist() == ["mg", "base", "sft"]
    assert math.isnan(scores["r3_ci_low"].iloc[0]) and scores["r5_ci_low"].iloc[0] == pytest.approx(0.4)
    md = compare.paper_table(scores, "r5", "base", smoke=True)
    header = next(line for line in md.splitlines() if line.startswith("| variant"))
    assert header.split(" | ")[1:8] == ["Basic Perception", "Cross-Modal Detection",
                                        "Marketing Logic", "Consumer Insight",
                                        "Regulatory Compliance", "Perception",
                                        "Cognition & Reasoning"]
    row = {line.split(" | ")[0].strip("| "): line for line in md.splitlines()
           if line.startswith("| mg") or line.startswith("| base") or line.startswith("| sft")}
    assert "+150.0 %" in row["mg"] and "+50.0 %" in row["sft"] and "| 40.0 |" in row["base"]
    assert "SMOKE" in md


def test_merged_folder_is_written_and_equals_base_plus_adapters(tmp_path):
    base, (a, b), tok = _tiny(tmp_path)
    out = tmp_path / "merged"
    assert adapters.main(["--model-dir", str(base), "--adapter", str(a), "--adapter", str(b),
                          "--out", str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "evads_merged_from.json").is_file()
    assert not list(tmp_path.glob(".merged.*"))  # no temp folder left behind
    merged = _logits(LocalTransformersChat(out, device="cpu"), tok)
    stacked = _logits(LocalTransformersChat(base, device="cpu", adapter_dir=[a, b]), tok)
    plain = _logits(LocalTransformersChat(base, device="cpu"), tok)
    assert (merged - stacked).abs().max() < 1e-4 and (merged - plain).abs().max() > 1e-3
