"""Base model of the RL recipe: a pretrained checkpoint, or a tiny one built from a config.

The ``rl_base_model`` catalog folder holds either

* a pointer file :data:`POINTER` (``{"name_or_path": ..., "vision": ...}``) for a pretrained
  model (Qwen2.5-VL-7B, Qwen3-VL-8B, any local folder): no weights are copied; or
* a whole tiny model (``source: tiny``: a Qwen2/Llama config, e.g. hidden 64 × 2 layers, with
  random weights) plus its tokenizer, for smoke runs, tests and benchmarks. Its tokenizer is
  the packaged SmolLM2 one, or (``tokenizer: bpe``, the default) a byte-level BPE trained in a
  few seconds on the split texts, with ``<think>``/``<answer>`` tags as single tokens: a small
  vocabulary keeps CPU steps fast and lets a tiny model learn the output format.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evads_kedro.backends import adapters, hf_load
from evads_kedro.pipelines.rl_training.config import DevicePlan

logger = logging.getLogger(__name__)

POINTER = "evads_base_model.json"
FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ---------------------------------------------------------------------------------- tokenizer
def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """Byte-level BPE (``tokenizers``) with ChatML specials and the format tags as plain tokens
    (not "special": GRPO decodes completions with ``skip_special_tokens=True``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    # CJK text cut into pieces of <= 4 characters: ByteLevel alone makes a whole unspaced Chinese sentence
    # one "word", and BPE on long words is quadratic (minutes for the split texts)
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]{1,4}"),
                             behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size), show_progress=False,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(list(texts), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", bos_token=None, unk_token=None)
    tok.add_tokens(list(FORMAT_TAGS))
    tok.chat_template = CHATML_TEMPLATE
    tok.model_max_length = 32768
    return tok


def _tiny_tokenizer(spec: Mapping[str, Any], texts: Iterable[str]):
    source = str(spec.get("tokenizer", "bpe"))
    if source == "bpe":
        return train_bpe_tokenizer(texts, int(spec.get("vocab_size", 4096)))
    from transformers import AutoTokenizer

    path = source
    if source == "smollm2":
        from evads_kedro.assets import smollm2_hf_dir

        path = str(smollm2_hf_dir())
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def build_tiny_model(tokenizer, spec: Mapping[str, Any], seed: int = 0):
    """A randomly initialised causal LM from a small config sized to ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    arch = str(spec.get("architecture", "qwen2")).lower()
    classes = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    if arch not in classes:
        raise ValueError(f"tiny architecture {arch!r}: use qwen2 or llama")
    config_cls, model_cls = classes[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=int(spec.get("hidden_size", 64)),
        intermediate_size=int(spec.get("intermediate_size", 128)),
        num_hidden_layers=int(spec.get("num_layers", 2)),
        num_attention_heads=int(spec.get("num_heads", 4)),
        num_key_value_heads=int(spec.get("num_kv_heads", 2)),
        max_position_embeddings=int(spec.get("max_position_embeddings", 8192)),
        tie_word_embeddings=bool(spec.get("tie_embeddings", False)),
        initializer_range=float(spec.get("initializer_range", 0.02)),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(int(seed))
    return model_cls(config)


VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
QWEN_VL_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_vl(tokenizer, spec: Mapping[str, Any], seed: int = 0):
    """A random tiny Qwen2-VL (1 vision block) + its processor: the vision-language code path
    (frames as ``images``) on CPU in seconds. Returns (model, processor)."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    tokenizer.chat_template = QWEN_VL_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    hidden, heads = int(spec.get("hidden_size", 64)), int(spec.get("num_heads", 4))
    half = hidden // heads // 2  # rotary half-dim, split over (time, height, width)
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": hidden,
            "intermediate_size": int(spec.get("intermediate_size", 128)),
            "num_hidden_layers": int(spec.get("num_layers", 2)), "num_attention_heads": heads,
            "num_key_value_heads": int(spec.get("num_kv_heads", 2)),
            "max_position_embeddings": int(spec.get("max_position_embeddings", 8192)),
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": mrope},
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": None},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2,
                       "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2,
                       "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=bool(spec.get("tie_embeddings", False)))
    torch.manual_seed(int(seed))
    model = Qwen2VLForConditionalGeneration(config)
    side = int(spec.get("image_side", 56))  # at most (side/28)^2 merged image tokens per frame
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=side * side)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(),
                                 chat_template=QWEN_VL_TEMPLATE)
    return model, processor


# --------------------------------------------------------------------------------- base model
def prepare_base(model: Mapping[str, Any], texts: Iterable[str], out_dir: Path,
                 seed: int = 0) -> dict[str, Any]:
    """Fill ``out_dir`` (the future ``rl_base_model`` folder); returns what was recorded."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = str(model.get("source", "pretrained"))
    if source == "tiny":
        spec = dict(model.get("tiny") or {})
        tok = _tiny_tokenizer(spec, texts)
        vision = bool(spec.get("vision", False))
        if vision:
            net, proc = build_tiny_vl(tok, spec, seed)
        else:
            net, proc = build_tiny_model(tok, spec, seed), tok
        net.save_pretrained(out_dir)
        proc.save_pretrained(out_dir)
        info = {"source": "tiny", "name_or_path": None, "vision": vision,
                "n_params": int(sum(p.numel() for p in net.parameters())),
                "vocab_size": len(tok), "tokenizer": str(spec.get("tokenizer", "bpe")), **spec}
    elif source == "smollm2":
        from evads_kedro.assets import smollm2_hf_dir

        info = {"source": "smollm2", "name_or_path": str(smollm2_hf_dir()), "vision": False}
    elif source == "pretrained":
        name = model.get("name_or_path")
        if not name:
            raise ValueError("rl_training.model.name_or_path is required for source: pretrained")
        vision = model.get("vision", "auto")
        if vision == "auto":
            vision = detect_vision(str(name))
        info = {"source": "pretrained", "name_or_path": str(name), "vision": bool(vision)}
    else:
        raise ValueError(f"model.source {source!r}: use pretrained, tiny or smollm2")
    (out_dir / POINTER).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return info


def detect_vision(name_or_path: str) -> bool:
    """True when the checkpoint's config has a vision tower (Qwen2.5-VL, Qwen3-VL, ...)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
    return getattr(cfg, "vision_config", None) is not None


def base_info(folder: str | Path) -> dict[str, Any]:
    """The recorded base-model info, with ``path`` = what ``from_pretrained`` should load."""
    folder = Path(folder)
    info = json.loads((folder / POINTER).read_text(encoding="utf-8"))
    info["path"] = info.get("name_or_path") or str(folder)
    return info


def load_processing_class(info: Mapping[str, Any]):
    """Processor for a vision-language base, tokenizer else; both pad on the left. GRPO
    left-pads prompt ids and joins the processor's ``mm_token_type_ids`` to them: a right-
    padding Qwen VL processor misaligns them once a batch holds prompts of different lengths
    (trl#5785)."""
    if info.get("vision"):
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(info["path"], padding_side="left")
        proc.tokenizer.padding_side = "left"
        return proc
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(info["path"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_of(processing_class):
    return getattr(processing_class, "tokenizer", processing_class)


def load_model(info: Mapping[str, Any], plan: DevicePlan, attn_implementation: str | None = None):
    """Base weights in the plan's dtype (bf16 on CUDA, fp32 on CPU); the trainer places them."""
    kwargs: dict[str, Any] = {"dtype": plan.torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if info.get("vision"):
        from transformers import AutoModelForImageTextToText

        return hf_load.load_model(AutoModelForImageTextToText, info["path"], **kwargs)
    from transformers import AutoModelForCausalLM

    return hf_load.load_model(AutoModelForCausalLM, info["path"], **kwargs)


def load_sft_policy(info: Mapping[str, Any], adapter_dir: str | Path, plan: DevicePlan,
                    attn_implementation: str | None = None):
    """Base + SFT LoRA merged into plain weights: the GRPO policy's starting point and, with a
    fresh LoRA on top, its KL reference (TRL uses the adapter-disabled model as reference)."""
    base = load_model(info, plan, attn_implementation)
    return adapters.merge_adapters(base, [Path(adapter_dir)])
