"""build_chat checks its mapping: an unknown key is an error naming the key's path and the
closest valid key; every chat block the shipped environments hand it is accepted."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from evads_kedro.backends import llm
from evads_kedro.backends.captions import CAPTION_KEYS, build_captioner
from evads_kedro.params import ParameterError
from evads_kedro.pipelines.rl_training.compare import trained_models

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir())
OPENAI = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


@pytest.fixture()
def built(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """build_chat with recording stand-ins for both backends (no model load, no socket)."""
    seen: list[tuple[str, dict[str, Any]]] = []

    class Fake:
        model_id = "fake"
        supports_images = True

    def fake(kind):
        return lambda *args, **kw: seen.append((kind, kw)) or Fake()

    monkeypatch.setattr(llm, "OpenAICompatibleChat", fake("openai"))
    monkeypatch.setattr(llm, "LocalTransformersChat", fake("local"))
    monkeypatch.setattr(llm, "_resolve_model_dir", lambda p: Path("/models/x"))
    monkeypatch.setenv("EVADS_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("EVADS_LLM_MODEL", "m")
    llm.clear_chat_cache()
    yield seen
    llm.clear_chat_cache()


def test_a_typo_names_its_path_and_the_closest_key(built) -> None:
    with pytest.raises(ParameterError, match=r"evaluation\.judge\.backend\.concurency: unknown "
                                             r"key; did you mean 'concurrency'\?"):
        llm.build_chat({**OPENAI, "concurency": 32}, "evaluation.judge.backend")
    with pytest.raises(ParameterError, match=r"backend\.temprature: unknown key"):
        llm.build_chat({**OPENAI, "temprature": 0})  # decoding keys go to chat(), not here
    assert built == []  # rejected before any backend was built
    llm.build_chat({**OPENAI, "concurrency": 32})
    assert built[0][1]["concurrency"] == 32


def test_a_wrong_type_and_an_unknown_kind_are_rejected(built) -> None:
    with pytest.raises(ParameterError, match=r"backend\.concurrency: .*greater than 0"):
        llm.build_chat({**OPENAI, "concurrency": 0})
    with pytest.raises(ParameterError, match=r"backend\.backend: .*'openai' or 'local'"):
        llm.build_chat({"backend": "nope"})
    assert built == []


def test_the_accepted_keys_are_the_params_schema() -> None:
    from evads_kedro.params.chat import ChatBackend

    assert llm.CHAT_KEYS == set(ChatBackend.model_fields)
    assert {"concurrency", "base_url", "asset", "adapter_dir", "failover_after"} <= llm.CHAT_KEYS
    assert not CAPTION_KEYS & llm.CHAT_KEYS


def _params(env: str) -> dict:
    from kedro.config import OmegaConfigLoader

    from evads_kedro.settings import CONFIG_LOADER_ARGS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(OmegaConfigLoader(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
                    ["parameters"])


def _chat_blocks(node: Any, path: str = "") -> list[tuple[str, dict]]:
    """Every mapping under a ``backend`` or ``llm`` key (what the callers hand build_chat)."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if k in ("backend", "llm") and isinstance(v, dict):
                found.append((p, dict(v)))
            found += _chat_blocks(v, p)
    return found


@pytest.mark.parametrize("env", ENVS)
def test_every_shipped_chat_block_is_accepted(env: str, built) -> None:
    params = _params(env)
    blocks = dict(_chat_blocks(params))
    assert {"evaluation.judge.backend", "qa_generation.llm",
            "evaluation.task_classifier.backend"} <= set(blocks)
    compare_backend = blocks.pop("rl_compare.model.backend", None)
    for path, block in blocks.items():
        llm.build_chat(block, path)
    # rl_compare's block gets its folders per variant (trained_models), then reaches build_chat
    if compare_backend is not None:
        compare = params["rl_compare"]
        grpo = {str(v): f"/g/{v}" for v in compare.get("variants") or ["g"]
                if v not in ("base", "sft")}
        models = trained_models(compare, "/b", "/s", grpo)
        assert any(m["backend"].get("adapter_dir") for m in models.values())
        for name, spec in models.items():
            llm.build_chat(spec["backend"], f"rl_compare.model.backend ({name})")
    # the captions block minus its own keys (when it names a chat backend)
    cap = params["qa_generation"]["captions"]
    n = len(built)
    captioner = build_captioner(cap)
    if cap.get("backend") in (None, "none"):
        assert captioner is None
    else:
        assert len(built) == n + 1


def test_captions_strip_their_own_keys_but_not_a_typo(built) -> None:
    block = {**OPENAI, "max_keyframes": 4, "scene_threshold": 0.3, "prompt_file": "p.txt",
             "max_tokens": 16, "temperature": 0.0, "seed": 1}
    assert build_captioner(block) is not None
    assert "max_keyframes" not in built[0][1]
    with pytest.raises(ParameterError, match=r"qa_generation\.captions\.max_keyframe: unknown "
                                             r"key; did you mean 'max_keyframes'\?"):
        build_captioner({**block, "max_keyframe": 4})
