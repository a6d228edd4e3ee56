"""Frame encoders: the packaged default, the transformers path (tiny random DINOv2 / CLIP saved
locally, no hub), timm by name + local checkpoint, ids and errors."""

from __future__ import annotations

import numpy as np
import pytest

from evads_kedro.backends.encoders import (
    build_encoder,
    clear_encoder_cache,
    encoder_id,
    encoder_params,
)


def _frames(n: int, h: int = 48, w: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h + 3 * i, w, 3), dtype=np.uint8) for i in range(n)]


def _check_embeddings(emb: np.ndarray, n: int) -> None:
    assert emb.dtype == np.float32 and emb.shape[0] == n
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    d = tmp_path_factory.mktemp("tiny-dinov2")
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8)
    Dinov2Model(cfg).save_pretrained(d)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                      do_convert_rgb=True).save_pretrained(d)
    return d


def test_transformers_dinov2_from_local_folder(tiny_dinov2):
    enc = build_encoder({"name": str(tiny_dinov2), "batch_size": 2})
    assert enc is build_encoder({"name": str(tiny_dinov2), "batch_size": 2})  # built once
    assert enc.pooling == "pooler" and enc.encoder_id.startswith("hf-tiny-dinov2")
    frames = _frames(5)
    emb = enc.encode(frames)
    _check_embeddings(emb, 5)
    assert emb.shape[1] == 32 and enc.dim == 32
    again = enc.encode([frames[3], frames[0]], batch_size=1)  # batching does not change results
    assert np.allclose(again, emb[[3, 0]], atol=1e-5)
    # same folder, other pooling -> other cache id
    cls = build_encoder({"name": f"hf:{tiny_dinov2}", "pooling": "mean"})
    assert cls.encoder_id != enc.encoder_id == encoder_id({"name": str(tiny_dinov2)})


def test_transformers_clip_uses_image_features(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    cfg = CLIPConfig(
        text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 32, "vocab_size": 64, "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "intermediate_size": 32, "image_size": 32, "patch_size": 8},
        projection_dim=12,
    )
    CLIPModel(cfg).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32},
                       crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    enc = build_encoder(str(tmp_path))
    assert enc.pooling == "image_features"
    emb = enc.encode(_frames(3))
    _check_embeddings(emb, 3)
    assert emb.shape[1] == 12  # the projection, not the 16-d vision hidden state


def test_timm_by_name_with_local_checkpoint(tmp_path):
    import timm
    import torch

    ckpt = tmp_path / "test_vit.pth"
    torch.save(timm.create_model("test_vit", pretrained=False).state_dict(), ckpt)
    params = {"name": "timm:test_vit", "checkpoint": str(ckpt), "batch_size": 4}
    enc = build_encoder(params)
    assert enc.encoder_id == encoder_id(params) and enc.encoder_id.startswith("timm-test_vit-")
    _check_embeddings(enc.encode(_frames(6)), 6)
    with pytest.raises(ValueError, match="checkpoint"):
        build_encoder({"name": "timm:test_vit"})


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        build_encoder({"name": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="no config.json"):
        build_encoder({"name": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown encoder parameters"):
        encoder_params({"nme": "x"})
    with pytest.raises(ValueError, match="only one"):
        build_encoder("packaged:dinov3")
    assert encoder_id(None) == "packaged-efficientnet_lite0"


def test_bad_frames_are_rejected(tiny_dinov2):
    enc = build_encoder(str(tiny_dinov2))
    with pytest.raises(ValueError, match="uint8 RGB"):
        enc.encode([np.zeros((8, 8), np.uint8)])
    assert enc.encode([]).shape == (0, 32)
    clear_encoder_cache()


@pytest.mark.slow
def test_packaged_efficientnet_default():
    enc = build_encoder(None)
    assert enc.encoder_id == "packaged-efficientnet_lite0" and enc.device in ("cpu", "cuda")
    frames = _frames(4, 360, 200)
    emb = enc.encode(frames + [frames[0]])
    _check_embeddings(emb, 5)
    assert emb.shape[1] == 1280
    assert float(emb[0] @ emb[4]) == pytest.approx(1.0, abs=1e-5)  # same frame, same embedding
    assert np.allclose(enc.encode(frames, batch_size=1), emb[:4], atol=1e-4)
