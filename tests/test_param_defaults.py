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
