"""Local Hugging Face transformers chat: generation and fixed-option scoring in-process.

:class:`LocalTransformersChat` — a local Hugging Face folder (causal LM, or image-text-to-text
model + processor when ``vision`` is requested/detected), device ``auto``, seeded sampling;
generation runs in a worker thread so the async interface holds. ``choose`` scores fixed
options as complete replies (see :meth:`LocalTransformersChat.choose`).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from evads_kedro.backends import adapters, hf_load
from evads_kedro.backends.llm_base import ChatBackend, ChatError, ChatReply, encode_image

logger = logging.getLogger(__name__)


_SENTINEL = "\u00a7\u00a7EVADS\u00a7\u00a7"
TIE_TOLERANCE = 1e-6


def end_of_turn_ids(tok) -> list[int]:
    """Token ids the chat template puts after an assistant reply, up to and including its
    first special token (``<|im_end|>`` for ChatML); the EOS token when the template ends a
    turn with plain text only, and nothing when there is neither."""
    cached = getattr(tok, "_evads_eot", None)
    if cached is not None:
        return list(cached)
    eot: list[int] = []
    try:
        text = tok.apply_chat_template([{"role": "user", "content": "x"},
                                        {"role": "assistant", "content": _SENTINEL}],
                                       tokenize=False)
        suffix = text.split(_SENTINEL, 1)[1] if _SENTINEL in text else ""
    except Exception:  # noqa: BLE001 - templates that refuse this shape: use EOS
        suffix = ""
    special = set(tok.all_special_ids or ())
    for t in tok(suffix, add_special_tokens=False)["input_ids"] if suffix else []:
        eot.append(int(t))
        if t in special:
            break
    else:
        eot = [int(tok.eos_token_id)] if tok.eos_token_id is not None else []
    try:
        tok._evads_eot = tuple(eot)
    except AttributeError:  # pragma: no cover - slotted tokenizer
        pass
    return eot


def pick_best(options, scores) -> tuple[str, list[str]]:
    """(highest-scoring option, every option within :data:`TIE_TOLERANCE` of it when more than
    one). The first listed wins a tie, so the same scores always give the same choice."""
    top = max(scores[o] for o in options)
    tied = [o for o in options if top - scores[o] <= TIE_TOLERANCE]
    return tied[0], (tied if len(tied) > 1 else [])

# ----------------------------------------------------------------------------- local model
class LocalTransformersChat(ChatBackend):
    """A local Hugging Face model folder behind the async chat interface.

    ``vision: auto`` uses ``AutoModelForImageTextToText`` + ``AutoProcessor`` when the folder
    ships an image processor config, else a causal LM + tokenizer (images are then refused
    with :class:`ChatError` ``no_vision``). Calls are serialised (one generation at a time,
    in a worker thread); ``seed`` seeds torch before each sampled generation, so the same
    (prompt, seed) gives the same text on the same machine; ``temperature <= 0`` is greedy.
    """

    def __init__(self, model_dir: str | Path, *, device: str = "auto", precision: str = "auto",
                 vision: str | bool = "auto", model_id: str | None = None,
                 num_threads: int | None = None, image_max_side: int | None = 448,
                 adapter_dir: Any = None):
        self.model_dir = adapters.resolve_base_dir(Path(model_dir))
        self.adapter_dirs = adapters.adapter_dirs(adapter_dir)  # LoRA folders merged in order
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} has no config.json: not a Hugging Face "
                                    "model folder (save_pretrained output expected)")
        self.device_request = device
        self.precision = precision
        self.num_threads = num_threads
        self.image_max_side = image_max_side
        if vision == "auto":
            vision = any((self.model_dir / n).is_file()
                         for n in ("preprocessor_config.json", "processor_config.json"))
        self.supports_images = bool(vision)
        fp = adapters.adapter_fingerprint(self.adapter_dirs)
        self.model_id = model_id or f"local:{self.model_dir.name}" + (f"+lora:{fp}" if fp else "")
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, str] | None = None
        self._grammar: tuple[Any, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"LocalTransformersChat({str(self.model_dir)!r}, vision={self.supports_images})"

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "class": type(self).__name__,
                "model_dir": str(self.model_dir), "vision": self.supports_images,
                "adapter_dir": [str(d) for d in self.adapter_dirs]}

    def _load(self):
        if self._loaded is not None:
            return self._loaded
        import torch

        from evads_kedro.devices import resolve_device, torch_dtype_for

        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        device = resolve_device(self.device_request)
        dtype = torch_dtype_for(device, self.precision)
        kw = {"local_files_only": True, "dtype": dtype}
        if self.supports_images:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            model = hf_load.load_model(AutoModelForImageTextToText, str(self.model_dir), **kw)
            proc = AutoProcessor.from_pretrained(str(self.model_dir), local_files_only=True)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = hf_load.load_model(AutoModelForCausalLM, str(self.model_dir), **kw)
            proc = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        model = adapters.merge_adapters(model, self.adapter_dirs)
        model.to(device).eval()
        self._loaded = (model, proc, device)
        logger.info("loaded %s on %s (%s)", self.model_dir, device, dtype)
        return self._loaded

    def _json_processor(self, model, tok, schema):
        """An xgrammar logits processor for ``schema`` (the compiler and each compiled schema
        are kept: compiling costs ~0.1-1 s, a processor serves one generation)."""
        import xgrammar as xgr
        from xgrammar.contrib.hf import LogitsProcessor

        if self._grammar is None:
            info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size)
            self._grammar = (xgr.GrammarCompiler(info), {})
        compiler, compiled = self._grammar
        key = json.dumps(schema, ensure_ascii=False)  # key order = the reply's key order
        if key not in compiled:
            # compact JSON: free whitespace costs a small model tokens and invites loops
            compiled[key] = compiler.compile_json_schema(key, strict_mode=True,
                                                         any_whitespace=False)
        return LogitsProcessor(compiled[key])

    def _generate(self, messages, temperature, seed, max_tokens, images,
                  json_schema=None) -> ChatReply:
        import torch

        with self._lock:
            t0 = time.perf_counter()
            if self.num_threads:  # per calling thread with OpenMP: set it where we generate
                torch.set_num_threads(int(self.num_threads))
            model, proc, device = self._load()
            if images and not self.supports_images:
                raise ChatError("no_vision", f"{self.model_dir.name} is a text-only model")
            if self.supports_images:
                inputs = self._vision_inputs(proc, messages, images or [])
                tok = proc.tokenizer
            else:
                tok = proc
                # a trailing assistant turn is a prefill: the reply continues it
                prefill = bool(messages) and messages[-1].get("role") == "assistant"
                inputs = tok.apply_chat_template(list(messages), add_generation_prompt=not prefill,
                                                 continue_final_message=prefill,
                                                 return_tensors="pt", return_dict=True)
            inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
            n_in = int(inputs["input_ids"].shape[1])
            gen: dict[str, Any] = {"max_new_tokens": int(max_tokens)}
            if temperature and temperature > 0:
                gen.update(do_sample=True, temperature=float(temperature), top_p=1.0, top_k=0)
            else:
                gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if json_schema is not None:
                # grammar-constrained decoding: every token keeps the reply a valid prefix of
                # JSON of the schema, and generation stops as soon as the value closes
                from transformers import LogitsProcessorList

                gen["logits_processor"] = LogitsProcessorList(
                    [self._json_processor(model, tok, json_schema)])
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            if seed is not None:
                torch.manual_seed(int(seed))
            with torch.inference_mode():
                out = model.generate(**inputs, pad_token_id=pad, **gen)
            new = out[0, n_in:]
            text = tok.decode(new, skip_special_tokens=True)
            usage = {"prompt_tokens": n_in, "completion_tokens": int(new.shape[0])}
            return ChatReply(text=text, raw={"model_dir": str(self.model_dir)}, usage=usage,
                             latency=time.perf_counter() - t0)

    def _vision_inputs(self, proc, messages, images):
        from PIL import Image

        pil = [Image.open(io.BytesIO(encode_image(im, max_side=self.image_max_side)))
               for im in images]
        msgs = [dict(m) for m in messages]
        for m in reversed(msgs):
            if m.get("role") == "user":
                text = m["content"] if isinstance(m["content"], str) else ""
                m["content"] = [{"type": "image"} for _ in pil] + [{"type": "text", "text": text}]
                break
        prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return proc(text=[prompt], images=pil or None, return_tensors="pt")

    @property
    def supports_choice(self) -> bool:  # text models only
        return not self.supports_images

    @property
    def supports_json_schema(self) -> bool:  # text models, through an xgrammar processor
        return not self.supports_images

    def _choice_logprobs(self, messages, options) -> ChatReply:
        import copy

        import torch

        with self._lock:
            t0 = time.perf_counter()
            if self.num_threads:
                torch.set_num_threads(int(self.num_threads))
            model, tok, device = self._load()
            enc = tok.apply_chat_template(list(messages), add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            ids = enc["input_ids"].to(device)
            eot = end_of_turn_ids(tok)
            scores: dict[str, float] = {}
            with torch.inference_mode():
                # the prompt runs once; each option continues a copy of its KV cache
                # (logits of the last position only: the vocabulary projection of every
                # prompt position would cost more than the whole transformer)
                head = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                for opt in options:
                    # the complete reply: without the end of turn, "Answer: 0" would be a
                    # prefix of "Answer: 0.25" and always at least as likely
                    full = tok(opt, add_special_tokens=False)["input_ids"] + eot
                    full_ids = torch.tensor([full], device=device)
                    logits = head.logits[:, -1:]
                    if len(full) > 1:
                        tail = model(input_ids=full_ids[:, :-1], use_cache=True,
                                     cache=copy.deepcopy(head.cache))
                        logits = torch.cat([logits, tail.logits], dim=1)
                    lp = torch.log_softmax(logits[0].float(), -1)
                    scores[opt] = float(lp.gather(1, full_ids[0][:, None]).sum())
            best, tied = pick_best(options, scores)
            return ChatReply(text=best, raw={"model_dir": str(self.model_dir),
                                             "choice_logprobs": scores,
                                             "end_of_turn_ids": eot,
                                             "tied": tied},
                             usage={"prompt_tokens": int(ids.shape[1]), "completion_tokens": 0},
                             latency=time.perf_counter() - t0)

    async def choose(self, messages, options):
        """The option the model finds most likely as its whole reply: each option's tokens
        plus the chat template's end-of-turn token(s) are scored (``raw["choice_logprobs"]``).
        Ties (within 1e-6) go to the option listed first; ``raw["tied"]`` lists them."""
        if not self.supports_choice:
            raise ChatError("no_choice", f"{self.model_dir.name}: choices are scored for text "
                            "models only")
        if not options:
            raise ValueError("choose() needs at least one option")
        try:
            return await asyncio.to_thread(self._choice_logprobs, list(messages), list(options))
        except ChatError:
            raise
        except Exception as exc:  # a model error is one failed item, not a dead batch
            raise ChatError("local_error", f"{type(exc).__name__}: {exc}") from exc

    async def chat(self, messages, *, temperature=1.0, seed=None, max_tokens=512, images=None,
                   json_schema=None):
        try:
            if json_schema is not None and (images or self.supports_images):
                raise ChatError("no_json_schema", "JSON-schema decoding is for text models only")
            return await asyncio.to_thread(self._generate, list(messages), temperature, seed,
                                           max_tokens, list(images or []), json_schema)
        except ChatError:
            raise
        except Exception as exc:  # a model error is one failed item, not a dead batch
            raise ChatError("local_error", f"{type(exc).__name__}: {exc}") from exc
