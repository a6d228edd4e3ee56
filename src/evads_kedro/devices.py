"""Device selection shared by every backend: ``auto`` → CUDA when present, else CPU."""

from __future__ import annotations


def resolve_device(device: str = "auto") -> str:
    """Return a torch device string for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` picks ``cuda`` when torch sees a GPU. Asking for CUDA on a machine without one is
    an error with the fix, not a silent fallback: a user who asked for a GPU wants to know.
    """
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch sees no CUDA GPU; "
                           "set device: auto or cpu")
    if device != "cpu" and not device.startswith("cuda") and device != "mps":
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    return device


def torch_dtype_for(device: str, precision: str = "auto"):
    """bf16 on CUDA with ``auto`` precision, fp32 on CPU; explicit ``fp32|fp16|bf16`` honoured."""
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return table[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16") from None
