"""Code fallbacks for keys conf/base always provides agree with conf/base (issue 15): a block
restated partially in conf/<env> or a test's dict must not silently change a default."""

from pathlib import Path

import yaml

from evads_kedro.pipelines.rl_training import config as rl_cfg

BASE = Path(__file__).resolve().parents[1] / "conf" / "base"


def _block(name: str) -> dict:
    return yaml.safe_load((BASE / f"parameters_{name}.yml").read_text())[name]


def test_rl_lora_fallbacks_are_conf_base():
    lora = _block("rl_training")["lora"]
    kw = rl_cfg.lora_kwargs({})
    assert (kw["r"], kw["lora_alpha"], kw["lora_dropout"], kw["target_modules"]) == (
        lora["r"], lora["alpha"], lora["dropout"], lora["target_modules"])


def test_evaluation_run_option_fallbacks_are_conf_base():
    from evads_kedro.pipelines.evaluation.nodes import _run_options

    ev = _block("evaluation")
    assert _run_options({}) == {"progress": ev["progress"], "cache_failures": ev["cache_failures"]}
    assert _run_options({"progress": False, "cache_failures": True}) == {
        "progress": False, "cache_failures": True}


def test_qa_generation_prompt_dir_and_cache_fallbacks_are_conf_base():
    from evads_kedro.pipelines.qa_generation import agents, nodes

    qa = _block("qa_generation")
    assert agents.PROMPT_DIR == qa["prompt_dir"]
    from evads_kedro.pipelines.qa_generation.export import DATA_SOURCE

    assert DATA_SOURCE == qa["export"]["data_source"]
    assert agents.prompt_folder({}) == agents.prompt_folder({"prompt_dir": qa["prompt_dir"]})
    cache = object()
    assert (nodes._cache_for({}, cache) is cache) is qa["use_cache"]
    assert nodes._cache_for({"use_cache": False}, cache) is None


def test_qa_generation_blind_check_is_on_when_a_block_leaves_it_out(monkeypatch):
    import pandas as pd

    from evads_kedro.pipelines.qa_generation import blind, nodes

    calls = []
    monkeypatch.setattr(blind, "blind_verdicts", lambda items, *a, **k: calls.append(items) or [])
    verified = pd.DataFrame({"status": ["rejected"], "stage": ["verify"], "reason": ["x"],
                             "video_id": ["v"], "question": ["q"], "answer": ["a"],
                             "clues": ["c"]})
    contexts = pd.DataFrame({"video_id": ["v"], "timeline_full": ["t"]})
    nodes.blind_check(verified, contexts, {})
    assert bool(calls) is _block("qa_generation")["blind_check"]["enabled"]
    nodes.blind_check(verified, contexts, {"blind_check": {"enabled": False}})
    assert len(calls) == int(_block("qa_generation")["blind_check"]["enabled"])
