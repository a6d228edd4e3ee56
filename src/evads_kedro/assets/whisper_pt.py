"""Whisper converter: the packaged CTranslate2 ``model.bin`` -> an openai-whisper checkpoint.

:func:`read_ct2_variables` parses CTranslate2's binary format; :func:`whisper_pt_path` converts
once into ``models/whisper-base.pt`` (recorded in the manifest, re-derived when the format of
this converter changes) and :func:`load_openai_whisper` loads it with its alignment heads.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evads_kedro.assets.store import (
    WHISPER_CT2_SHA256,
    WHISPER_PT_NAME,
    AssetError,
    _derive,
    whisper_ct2_dir,
)

# Bump when the conversion code changes: derived files of an older format are re-derived.
_WHISPER_PT_FORMAT = 1


# ------------------------------------------------------------------------ CTranslate2 reader
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def read_ct2_variables(path: Path | str) -> tuple[dict[str, Any], dict[str, str], str, int]:
    """Parse a CTranslate2 ``model.bin`` (binary versions 4-6).

    Layout (little endian; see ``ctranslate2/specs/model_spec.py::_serialize``): u32 version,
    str spec name, u32 revision, u32 n; n x (str name, u8 rank, u32 dims[rank], u8 dtype id,
    u32 nbytes, bytes); u32 n_alias; n_alias x (str alias, str target). A str is u16 length
    (including a NUL terminator) then the bytes. Returns (variables as numpy arrays, aliases,
    spec name, spec revision).
    """
    import numpy as np

    buf = Path(path).read_bytes()
    off = 0

    def take(fmt: str) -> int:
        nonlocal off
        (val,) = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return val

    def take_str() -> str:
        nonlocal off
        n = take("H")
        s = buf[off : off + n - 1].decode("utf-8")
        off += n
        return s

    version = take("I")
    if not 4 <= version <= 6:
        raise AssetError(f"{path}: unsupported CTranslate2 binary version {version}")
    spec_name = take_str()
    revision = take("I")
    variables: dict[str, Any] = {}
    for _ in range(take("I")):
        name = take_str()
        shape = [take("I") for _ in range(take("B"))]
        dtype = _CT2_DTYPES[take("B")]
        nbytes = take("I")
        raw = buf[off : off + nbytes]
        off += nbytes
        if dtype == "bfloat16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype)
        variables[name] = arr.reshape(shape)
    aliases = {}
    for _ in range(take("I")):
        alias = take_str()
        aliases[alias] = take_str()
    if off != len(buf):
        raise AssetError(f"{path}: {len(buf) - off} trailing bytes after the CTranslate2 payload")
    return variables, aliases, spec_name, revision


def _ct2_float32(variables: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """float16/bfloat16 -> float32; int8/int16 quantized weights dequantized with their scales."""
    import numpy as np

    out: dict[str, Any] = {}
    for name, arr in variables.items():
        if name.endswith("_scale"):
            continue
        scale = variables.get(name + "_scale")
        if scale is not None and arr.dtype in (np.int8, np.int16):
            # CTranslate2 stores q = round(w * scale) (per output row for int8, scalar for int16)
            s = scale.astype(np.float32)
            if s.ndim == 1:
                s = s[:, None]
            out[name] = arr.astype(np.float32) / s
        elif arr.dtype.kind == "f":
            out[name] = arr.astype(np.float32)
        else:
            out[name] = arr  # scalar flags / head counts
    for alias, target in aliases.items():
        out.setdefault(alias, out[target])
    return out


def _ct2_whisper_to_openai(v: dict[str, Any]) -> tuple[dict[str, int], dict[str, Any]]:
    """Map CTranslate2 WhisperSpec variables to openai-whisper's dims and state dict names."""
    import numpy as np

    def n_layers(prefix: str) -> int:
        parts = (k.split("/") for k in v if k.startswith(prefix + "/layer_"))
        return len({p[1] for p in parts if p[1].removeprefix("layer_").isdigit()})

    if int(np.asarray(v.get("decoder/scale_embeddings", 0))) not in (0, 1):
        raise AssetError("unexpected decoder/scale_embeddings in the Whisper CTranslate2 model")
    enc_layers, dec_layers = n_layers("encoder"), n_layers("decoder")
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(v["encoder/position_encodings/encodings"].shape[1]),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": enc_layers,
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(v["decoder/position_encodings/encodings"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": dec_layers,
    }
    sd: dict[str, Any] = OrderedDict()

    def linear(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = v[f"{src}/weight"]
        sd[f"{dst}.bias"] = v[f"{src}/bias"]

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = v[f"{src}/gamma"]
        sd[f"{dst}.bias"] = v[f"{src}/beta"]

    def fused(dst: str, src: str, names: Sequence[str]) -> None:
        # CTranslate2 fuses q/k/v (self-attention) or k/v (cross-attention) row-wise. Whisper's
        # key projection has no bias (the converter stores zeros; a key bias would only add a
        # per-query constant to the logits, which softmax ignores), so it is dropped.
        weights = np.split(v[f"{src}/weight"], len(names), axis=0)
        biases = np.split(v[f"{src}/bias"], len(names), axis=0)
        for name, w, b in zip(names, weights, biases, strict=True):
            sd[f"{dst}.{name}.weight"] = w
            if name != "key":
                sd[f"{dst}.{name}.bias"] = b

    def self_attention(dst: str, src: str) -> None:
        fused(f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")

    def mlp(dst: str, src: str) -> None:
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(enc_layers):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        self_attention(dst, src)
        mlp(dst, src)
    norm("encoder.ln_post", "encoder/layer_norm")

    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(dec_layers):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attention(dst, src)
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        fused(f"{dst}.cross_attn", f"{src}/attention/linear_1", ("key", "value"))
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        mlp(dst, src)
    norm("decoder.ln", "decoder/layer_norm")
    proj = v.get("decoder/projection/weight")
    if proj is not None and not np.array_equal(proj, v["decoder/embeddings/weight"]):
        raise AssetError("Whisper output projection is not tied to the token embedding")
    return dims, sd


def _alignment_heads_b85(config_path: Path, n_layers: int, n_heads: int) -> bytes | None:
    """openai-whisper's alignment-heads encoding (base85 of gzipped bool mask) from CT2 config."""
    import numpy as np

    heads = json.loads(config_path.read_text()).get("alignment_heads")
    if not heads:
        return None
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def whisper_pt_path() -> Path:
    """openai-whisper checkpoint ``{"dims", "model_state_dict"}`` converted once from CT2."""
    return _ensure_whisper_pt()[0]


def _ensure_whisper_pt() -> tuple[Path, bool]:
    return _derive(WHISPER_PT_NAME, _WHISPER_PT_FORMAT, whisper_ct2_dir, _convert_whisper_pt)


def _convert_whisper_pt(ct2: Path, tmp: Path) -> dict[str, Any]:
    """The CTranslate2 folder ``ct2`` converted to an openai-whisper checkpoint at ``tmp``."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    variables, aliases, spec_name, _ = read_ct2_variables(ct2 / "model.bin")
    if spec_name != "WhisperSpec":
        raise AssetError(f"{ct2 / 'model.bin'} is a {spec_name}, not a WhisperSpec model")
    dims, sd_np = _ct2_whisper_to_openai(_ct2_float32(variables, aliases))
    sd = OrderedDict((k, torch.from_numpy(a.copy())) for k, a in sd_np.items())
    # Strict load catches any missing / unexpected / misshaped tensor at conversion time.
    Whisper(ModelDimensions(**dims)).load_state_dict(sd, strict=True)
    checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": sd}
    heads = _alignment_heads_b85(ct2 / "config.json", dims["n_text_layer"], dims["n_text_head"])
    if heads is not None:
        checkpoint["alignment_heads"] = heads
    torch.save(checkpoint, tmp)
    return {"ct2_model_bin_sha256": WHISPER_CT2_SHA256}


def load_openai_whisper(device: str = "cpu"):
    """``whisper.load_model`` on the converted checkpoint, with the model's alignment heads."""
    import torch
    import whisper

    path = whisper_pt_path()
    model = whisper.load_model(str(path), device=device)
    heads = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get(
        "alignment_heads"
    )
    if heads is not None:
        model.set_alignment_heads(heads)
    return model

