"""The asset inventory: prepare (derive once + verify), verify (full re-hash), where (paths).

Each returns one row per asset (name, status, path, seconds, detail) and never raises on a
missing package or a bad hash: the status says it (the CLI exits non-zero).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# the public lookups by module (``store.minilm_dir``): the package's __init__ lists them once
from evads_kedro.assets import store
from evads_kedro.assets.store import (
    _RAPIDOCR_RUNTIME_MODULES,
    _SMOLLM2_FORMAT,
    INSTALL_HINT,
    PREPARE_CMD,
    SMOLLM2_DIRNAME,
    WHISPER_CT2_DIRNAME,
    WHISPER_PT_NAME,
    AssetIntegrityError,
    AssetMissingError,
    _ct2_ok,
    _derived_state,
    _ensure_smollm2,
    _ensure_whisper_ct2,
    _package_dir,
    _read_manifest,
)
from evads_kedro.assets.whisper_pt import _WHISPER_PT_FORMAT, _ensure_whisper_pt
from evads_kedro.hashing import forget_hashes


def _ensure_plain(fn: Callable[[], Any]) -> Callable[[], tuple[Any, bool]]:
    return lambda: (fn(), False)


def _rapidocr_row() -> tuple[Path | str, bool]:
    if not store.rapidocr_available():
        raise AssetMissingError(
            f"rapidocr-onnxruntime or one of {', '.join(_RAPIDOCR_RUNTIME_MODULES)} is not "
            f"installed: {INSTALL_HINT}"
        )
    return _package_dir("rapidocr") / "models", False


_ASSETS: dict[str, tuple[Callable[[], tuple[Any, bool]], str]] = {
    # name: (ensure -> (path, derived_now), what)
    "whisper-ct2": (_ensure_whisper_ct2, "faster-whisper base (CTranslate2, joined)"),
    "whisper-pt": (_ensure_whisper_pt, "openai-whisper base checkpoint (converted)"),
    "easyocr-en": (_ensure_plain(store.easyocr_en_dir), "EasyOCR CRAFT + english_g2"),
    "rapidocr": (_rapidocr_row, "RapidOCR PP-OCRv4 zh/en ONNX"),
    "efficientnet-lite0": (_ensure_plain(store.efficientnet_lite0_state_path), "frame encoder"),
    "smollm2": (_ensure_smollm2, "SmolLM2-135M-Instruct HF export"),
    "minilm": (_ensure_plain(store.minilm_dir), "all-MiniLM-L6-v2 sentence embeddings"),
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
    forget_hashes()
    rows = []
    mdir = store.models_dir()
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
                store.smollm2_gguf_path()  # and the package source it is derived from
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
    mdir = store.models_dir()
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

