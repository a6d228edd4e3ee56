"""Packaged offline weights: derive once, sha256-verify, tamper detection, real-model sanity."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from evads_kedro import assets
from evads_kedro.assets import AssetIntegrityError, AssetMissingError, store, whisper_pt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ENGLISH_AD = "Buy one get one free today only"


def require(*keys: str) -> None:
    """Skip unless the weight packages behind `keys` (see assets.PACKAGES) are installed."""
    missing = [
        assets.PACKAGES[k].spec
        for k in keys
        if importlib.util.find_spec(assets.PACKAGES[k].module) is None
    ]
    if missing:
        pytest.skip(
            f"weight package(s) not installed: {', '.join(missing)}; "
            "run `make assets` (scripts/install_assets.sh)"
        )


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", "", text.lower()).split())


def _assert_near(text: str) -> None:
    got, want = _norm(text), _norm(ENGLISH_AD)
    ratio = difflib.SequenceMatcher(None, got, want).ratio()
    assert "get one free today only" in got and ratio >= 0.85, (text, ratio)


@pytest.fixture(scope="module")
def english_clip(tmp_path_factory) -> np.ndarray:
    """espeak-ng English ad line as 16 kHz mono float32 (no ffmpeg needed)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = tmp_path_factory.mktemp("speech") / "ad.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", ENGLISH_AD, "-w", str(wav)], check=True)
    with wave.open(str(wav)) as fh:
        rate = fh.getframerate()
        pcm = np.frombuffer(fh.readframes(fh.getnframes()), np.int16)
    x = pcm.astype(np.float32) / 32768.0
    t_out = np.arange(int(len(x) * 16000 / rate)) / 16000.0
    return np.interp(t_out, np.arange(len(x)) / rate, x).astype(np.float32)


# ------------------------------------------------------------------ cheap, no packages needed
def test_integrity_error_names_file_hashes_and_fix(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    with pytest.raises(AssetIntegrityError) as ei:
        store._check_file(f, "0" * 64)
    msg = str(ei.value)
    assert str(f) in msg and "0" * 64 in msg and ei.value.actual in msg
    assert "delete" in msg and "prepare" in msg


def test_missing_package_says_run_make_assets(monkeypatch):
    fake = dataclasses.replace(assets.PACKAGES["minilm"], module="evads_no_such_weights_pkg")
    monkeypatch.setitem(assets.PACKAGES, "minilm", fake)
    with pytest.raises(AssetMissingError, match=r"make assets.*install_assets\.sh"):
        assets.minilm_dir()
    (row,) = assets.prepare(["minilm"])
    assert row["status"] == "missing"


def _ct2_bytes(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> bytes:
    """Serialise like ctranslate2.specs.model_spec.ModelSpec._serialize (binary version 6)."""

    def s(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}
    out = struct.pack("<I", 6) + s("TinySpec") + struct.pack("<II", 1, len(variables))
    for name, arr in variables.items():
        out += s(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<BI", ids[arr.dtype.name], arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += s(alias) + s(target)
    return out


def test_ct2_reader_dequantizes_int8_and_resolves_aliases(tmp_path):
    w = np.array([[0.5, -1.0, 0.25], [2.0, 0.0, -0.5]], np.float32)
    scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
    q = np.round(w * scale[:, None]).astype(np.int8)
    path = tmp_path / "model.bin"
    path.write_bytes(
        _ct2_bytes(
            {
                "emb/weight": q,
                "emb/weight_scale": scale,
                "ln/gamma": np.ones(3, np.float16),
                "num_heads": np.array(4, np.int16),
            },
            {"proj/weight": "emb/weight"},
        )
    )
    variables, aliases, name, revision = assets.read_ct2_variables(path)
    assert (name, revision, aliases) == ("TinySpec", 1, {"proj/weight": "emb/weight"})
    out = whisper_pt._ct2_float32(variables, aliases)
    assert "emb/weight_scale" not in out
    np.testing.assert_allclose(out["emb/weight"], w, atol=1 / 127)
    assert out["proj/weight"] is out["emb/weight"]
    assert out["ln/gamma"].dtype == np.float32 and int(out["num_heads"]) == 4


# --------------------------------------------------------------------- real packaged weights
@pytest.mark.slow
def test_prepare_is_idempotent_and_verify_passes(tmp_path, monkeypatch):
    require(*assets.PACKAGES)
    # its own models dir: a (re)derivation must never swap files under the other test worker,
    # which loads the shared models/ at the same time
    monkeypatch.setenv("EVADS_MODELS_DIR", str(tmp_path))
    first = assets.prepare()
    assert all(r["status"] in ("ok", "derived") for r in first), first
    t0 = time.perf_counter()
    second = assets.prepare()
    elapsed = time.perf_counter() - t0
    assert [r["status"] for r in second] == ["ok"] * len(second), second
    assert elapsed < 15, f"second prepare took {elapsed:.1f} s"
    rows = assets.verify()
    assert all(r["status"] == "ok" for r in rows), rows
    manifest = json.loads((assets.models_dir() / assets.MANIFEST_NAME).read_text())
    pt_sha = manifest["assets"]["whisper-base.pt"]["files"]["whisper-base.pt"]
    assert pt_sha == assets.sha256_file(assets.whisper_pt_path(), memo=False)


def test_tampered_derived_file_is_rejected(tmp_path, monkeypatch):
    require("whisper_part1", "whisper_part2")
    real_pt = assets.whisper_pt_path()
    real_manifest = real_pt.parent / assets.MANIFEST_NAME
    monkeypatch.setenv("EVADS_MODELS_DIR", str(tmp_path))
    pt = tmp_path / real_pt.name
    shutil.copyfile(real_pt, pt)
    shutil.copyfile(real_manifest, tmp_path / assets.MANIFEST_NAME)
    assert assets.whisper_pt_path() == pt  # intact copy verifies

    with open(pt, "r+b") as fh:
        fh.seek(pt.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    recorded = json.loads(real_manifest.read_text())["assets"]["whisper-base.pt"]["files"]
    with pytest.raises(AssetIntegrityError) as ei:
        assets.whisper_pt_path()
    err = ei.value
    assert err.path == pt and err.expected == recorded["whisper-base.pt"]
    assert err.actual != err.expected and err.actual in str(err)
    assert "delete" in str(err) and "prepare" in str(err)
    (row,) = assets.verify(["whisper-pt"])
    assert row["status"] == "INTEGRITY"

    # a derived file with no recorded hash is not trusted either
    (tmp_path / assets.MANIFEST_NAME).unlink()
    with pytest.raises(AssetIntegrityError, match="no hash recorded"):
        assets.whisper_pt_path()


@pytest.mark.slow
def test_whisper_pt_transcribes_english(english_clip):
    require("whisper_part1", "whisper_part2")
    model = assets.load_openai_whisper("cpu")
    result = model.transcribe(english_clip, language="en", temperature=0.0, fp16=False)
    _assert_near(result["text"])


@pytest.mark.slow
def test_faster_whisper_loads_ct2_dir(english_clip):
    require("whisper_part1", "whisper_part2")
    from faster_whisper import WhisperModel

    model = WhisperModel(str(assets.whisper_ct2_dir()), device="cpu", compute_type="int8")
    segments, info = model.transcribe(english_clip, language="en", temperature=0.0)
    _assert_near("".join(s.text for s in segments))


def test_efficientnet_lite0_weights_and_cosine():
    require("efficientnet")
    skdata = pytest.importorskip("skimage.data")
    import torch
    from PIL import Image

    model = assets.build_efficientnet_lite0()
    assert not model.training

    def batch(images):
        size = (assets.EFFICIENTNET_INPUT_SIZE,) * 2
        arrs = [np.asarray(im.convert("RGB").resize(size, Image.BILINEAR)) for im in images]
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(assets.EFFICIENTNET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(assets.EFFICIENTNET_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    cat = Image.fromarray(skdata.chelsea())
    w, h = cat.size
    frames = [cat.crop((dx, 0, dx + w - 16, h)) for dx in (0, 4, 8)]  # a slow pan
    coffee = Image.fromarray(skdata.coffee())
    with torch.no_grad():
        x = batch([*frames, coffee])
        emb = model.forward_head(model.forward_features(x), pre_logits=True)
        top1 = model(x).argmax(1).tolist()
    assert emb.shape == (4, 1280)
    emb = torch.nn.functional.normalize(emb, dim=1)
    sim = (emb @ emb.T).numpy()
    consecutive = [sim[0, 1], sim[1, 2]]
    assert min(consecutive) >= 0.95, sim
    assert sim[0, 3] < min(consecutive) and sim[0, 3] < 0.8, sim
    # ImageNet sanity: 281-285 are the domestic cat classes, 967 is espresso
    assert 281 <= top1[0] <= 285 and top1[3] == 967, top1


@pytest.mark.slow
def test_smollm2_hf_folder_generates():
    require("smollm2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = assets.smollm2_hf_dir()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 0 < len(new) <= 6
    assert tokenizer.decode(new, skip_special_tokens=True).strip()


def test_ocr_and_minilm_dirs():
    require("easyocr_en", "rapidocr", "minilm")
    ocr = assets.easyocr_en_dir()
    assert (ocr / "craft_mlt_25k.pth").is_file() and (ocr / "english_g2.pth").is_file()
    assert assets.rapidocr_available() is True
    mini = assets.minilm_dir()
    assert (mini / "modules.json").is_file() and (mini / "model.safetensors").is_file()


def test_cli_where_prints_table():
    proc = subprocess.run(
        [sys.executable, "-m", "evads_kedro.assets", "where"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    for name in assets.ASSET_NAMES:
        assert name in proc.stdout
