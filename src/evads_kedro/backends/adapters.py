"""LoRA adapters on a local base model: a model under test = base weights + adapters merged in order.

The local chat backend (:class:`evads_kedro.backends.llm.LocalTransformersChat`) takes
``adapter_dir`` on top of ``model_dir``: one PEFT LoRA folder (``adapter_config.json``), or a
list merged in order. E-VAds-R1 stacks two: a GRPO adapter was trained on the SFT policy
(base + SFT LoRA merged), so a GRPO variant is ``[sft_adapter, grpo_<variant>/adapter]``.

``model_dir`` may also be ``rl_training``'s base-model folder, which for a pretrained base
holds only a pointer file (``evads_base_model.json`` naming a local folder or a hub id already
in the local cache): :func:`resolve_base_dir` follows it. The answer cache must not mix
weights, so :func:`adapter_fingerprint` (a hash of each adapter's config and weights) goes
into the default ``model_id``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evads_kedro.backends import hf_load

POINTER = "evads_base_model.json"  # written by rl_training.models.prepare_base
ADAPTER_CONFIG = "adapter_config.json"
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_dirs(value: str | Path | Sequence[str | Path] | None,
                 root: Path | None = None) -> list[Path]:
    """``adapter_dir`` as a list of folders (None/"" -> []); relative paths join ``root``
    (default: the project root). Each must hold ``adapter_config.json`` (FileNotFoundError
    naming the folder and the fix otherwise)."""
    if value is None or value == "":
        return []
    if root is None:
        from evads_kedro.paths import project_root

        root = project_root()
    items = [value] if isinstance(value, (str, Path)) else list(value)
    out: list[Path] = []
    for item in items:
        p = Path(str(item)).expanduser()
        if not p.is_absolute() and root is not None:
            p = root / p
        if not (p / ADAPTER_CONFIG).is_file():
            raise FileNotFoundError(
                f"adapter_dir {p} has no {ADAPTER_CONFIG}: not a PEFT LoRA folder. Train it "
                "first (kedro run --pipelines rl_training) or fix the path")
        out.append(p)
    return out


def resolve_base_dir(model_dir: Path) -> Path:
    """The folder ``from_pretrained`` should read: ``model_dir`` itself when it holds a
    ``config.json``, else the folder its ``evads_base_model.json`` pointer names (a local
    folder, or a hub id found in the local Hugging Face cache; nothing is downloaded)."""
    model_dir = Path(model_dir)
    if (model_dir / "config.json").is_file() or not (model_dir / POINTER).is_file():
        return model_dir
    info = json.loads((model_dir / POINTER).read_text(encoding="utf-8"))
    name = info.get("name_or_path")
    if not name:
        return model_dir
    if Path(str(name)).expanduser().is_dir():
        return Path(str(name)).expanduser()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - the message below names the fix
        raise FileNotFoundError(
            f"{model_dir / POINTER} names {name!r}, which is neither a folder nor in the local "
            "Hugging Face cache. Download it first (docs/rl_training.md, 'Download the "
            "weights') and set rl_training.model.name_or_path to that folder") from exc


def adapter_fingerprint(dirs: Sequence[Path]) -> str:
    """12 hex characters identifying the adapters' configs and weights, in order ('' if none)."""
    if not dirs:
        return ""
    h = hashlib.sha256()
    for d in dirs:
        for name in (ADAPTER_CONFIG, *_WEIGHTS):
            f = d / name
            if f.is_file():
                h.update(name.encode())
                with f.open("rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(chunk)
    return h.hexdigest()[:12]


def merge_adapters(model: Any, dirs: Sequence[Path]) -> Any:
    """``model`` with each LoRA merged into its weights, in order (plain module returned)."""
    if not dirs:
        return model
    from peft import PeftModel

    with hf_load.LOAD_LOCK:
        for d in dirs:
            model = PeftModel.from_pretrained(model, str(d)).merge_and_unload()
    return model


def merge_to_folder(model_dir: str | Path, adapter_dir: Any, out_dir: str | Path) -> Path:
    """Write base + adapters merged as a plain Hugging Face folder (weights, config, tokenizer
    or processor) that ``vllm serve`` / ``trl vllm-serve --model`` can load. Written to a
    sibling temp folder and renamed into place, so a half-written model is never served."""
    import shutil
    import uuid

    from transformers import AutoConfig

    base = resolve_base_dir(Path(model_dir))
    dirs = adapter_dirs(adapter_dir, root=Path.cwd())
    cfg = AutoConfig.from_pretrained(str(base), local_files_only=True)
    vision = getattr(cfg, "vision_config", None) is not None
    if vision:
        from transformers import AutoModelForImageTextToText as Model
        from transformers import AutoProcessor as Proc
    else:
        from transformers import AutoModelForCausalLM as Model
        from transformers import AutoTokenizer as Proc
    model = merge_adapters(hf_load.load_model(Model, str(base), local_files_only=True,
                                              dtype="auto"), dirs)
    proc = Proc.from_pretrained(str(base), local_files_only=True)
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    model.save_pretrained(tmp)
    proc.save_pretrained(tmp)
    (tmp / "evads_merged_from.json").write_text(json.dumps(
        {"model_dir": str(base), "adapter_dir": [str(d) for d in dirs],
         "adapter_fingerprint": adapter_fingerprint(dirs)}, indent=2), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m evads_kedro.backends.adapters --model-dir BASE --adapter A [--adapter B]
    --out DIR``: merge LoRA adapters (in order) into a servable model folder."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model-dir", required=True, help="base model folder (or rl_training's "
                    "data/06_models/rl_training/base_model pointer folder)")
    ap.add_argument("--adapter", action="append", default=[], help="LoRA folder; repeat to "
                    "stack (GRPO variant: the SFT adapter, then grpo_<v>/adapter)")
    ap.add_argument("--out", required=True, help="output folder (replaced atomically)")
    args = ap.parse_args(argv)
    out = merge_to_folder(args.model_dir, args.adapter, args.out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
