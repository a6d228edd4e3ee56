"""Thread-safe model loading (backends/hf_load.py): transformers' class-level tie_weights swap."""

from __future__ import annotations

import logging
import threading

import pytest

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel  # noqa: E402

from evads_kedro.backends import hf_load  # noqa: E402

ORIGINAL_TIE = PreTrainedModel.tie_weights


@pytest.fixture(scope="module")
def tied_dir(tmp_path_factory):
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    path = tmp_path_factory.mktemp("tied")
    LlamaForCausalLM(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(autouse=True)
def restore_tie_weights():
    yield
    PreTrainedModel.tie_weights = ORIGINAL_TIE


def _is_tied(model) -> bool:
    lm, emb = model.lm_head.weight, model.model.embed_tokens.weight
    return lm.device.type != "meta" and lm.data_ptr() == emb.data_ptr()


def _load_in_threads(load, n_threads: int = 4) -> list:
    models: list = []
    threads = [threading.Thread(target=lambda: models.append(load())) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return models


def test_unlocked_concurrent_loads_can_disable_tying_for_the_whole_process(tied_dir):
    """The failure the lock exists for (seen in CI: SmolLM2's lm_head left on meta)."""
    for _ in range(10):
        _load_in_threads(lambda: LlamaForCausalLM.from_pretrained(tied_dir))
        if PreTrainedModel.tie_weights is not ORIGINAL_TIE:
            break
    else:
        pytest.skip("10 rounds of 4 concurrent unlocked loads left tie_weights intact: this "
                    "transformers may no longer swap it on the class")
    later = LlamaForCausalLM.from_pretrained(tied_dir)
    assert not _is_tied(later)


def test_locked_concurrent_loads_keep_tying(tied_dir):
    for _ in range(10):
        models = _load_in_threads(lambda: hf_load.load_model(LlamaForCausalLM, tied_dir))
        assert PreTrainedModel.tie_weights is ORIGINAL_TIE
        assert len(models) == 4 and all(_is_tied(m) for m in models)


def test_a_process_broken_by_an_outside_load_is_repaired_with_a_warning(tied_dir, caplog):
    hf_load.load_model(LlamaForCausalLM, tied_dir)  # remembers the real tie_weights
    PreTrainedModel.tie_weights = lambda *a, **k: None
    with caplog.at_level(logging.WARNING, logger="evads_kedro.backends.hf_load"):
        model = hf_load.load_model(LlamaForCausalLM, tied_dir)
    assert _is_tied(model) and PreTrainedModel.tie_weights is ORIGINAL_TIE
    assert "left disabled by a concurrent model load" in caplog.text
    assert not hf_load.repair_tie_weights()


def test_broken_before_the_first_load_is_a_clear_error(tied_dir, monkeypatch):
    monkeypatch.setattr(hf_load, "_TIE_WEIGHTS", None)
    PreTrainedModel.tie_weights = lambda *a, **k: None
    with pytest.raises(RuntimeError, match="left weight tying disabled"):
        hf_load.load_model(LlamaForCausalLM, tied_dir)
