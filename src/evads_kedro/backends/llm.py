"""One async chat interface over OpenAI-compatible endpoints and local transformers models.

Used by the evaluation pipeline (models under test and the judge), and meant to be reused by
qa_generation and the GRPO judge reward, so it knows nothing about E-VAds.

* :class:`ChatBackend` — ``await backend.chat(messages, temperature=, seed=, max_tokens=,
  images=None) -> ChatReply(text, raw, usage, latency)``; a failure raises :class:`ChatError`
  with a short ``reason`` (``timeout``, ``http_429``, ``http_500``, ``bad_json``, ...).
* :class:`OpenAICompatibleChat` — ``POST {base_url}/chat/completions`` through
  an ``aiohttp`` session per endpoint and event loop; images go as base64 JPEG data URLs in
  the OpenAI vision format; retries with exponential backoff + full jitter on timeouts,
  transport errors, 429 (honouring ``Retry-After``), 5xx and truncated/invalid JSON; bounded
  concurrency (a semaphore) and a token-bucket rate limit per endpoint. Several endpoints (e.g.
  one vLLM server per GPU) share the load: each call goes to the healthy endpoint with the
  fewest calls in flight (ties in turn), and fails over: a call that fails on one endpoint
  (connection refused, timeout, 5xx, bad JSON) is retried at once on one it has not tried, and
  an endpoint failing ``failover_after`` times in a row (a refused connection: at once) is left
  alone for ``cooldown_s`` seconds. The API key comes from ``api_key`` / the ``api_key_env``
  variable and is never logged or shown in ``repr``.
* :class:`LocalTransformersChat` — a local Hugging Face folder (causal LM, or image-text-to-text
  model + processor when ``vision`` is requested/detected), device ``auto``, seeded sampling;
  generation runs in a worker thread so the async interface holds.

:func:`build_chat` builds a backend from a parameter dict and caches it per process.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import email.utils
import hashlib
import io
import json
import logging
import os
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evads_kedro.backends import adapters

logger = logging.getLogger(__name__)

Message = dict[str, Any]

__all__ = [
    "ChatBackend",
    "ChatError",
    "ChatReply",
    "LocalTransformersChat",
    "OpenAICompatibleChat",
    "TokenBucket",
    "build_chat",
    "encode_image",
    "clear_chat_cache",
]


# ------------------------------------------------------------------------------------ types
@dataclass
class ChatReply:
    """One finished chat call: the reply text, the raw response, token usage, wall time (s)."""

    text: str
    raw: Any = None
    usage: dict[str, Any] = field(default_factory=dict)
    latency: float = 0.0
    attempts: int = 1


class ChatError(RuntimeError):
    """A chat call that failed for good (after retries when the failure was retryable)."""

    def __init__(self, reason: str, message: str = "", *, retryable: bool = False,
                 status: int | None = None, retry_after: float | None = None,
                 attempts: int = 1):
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts
        super().__init__(f"{reason}: {message}" if message else reason)


class ChatBackend(ABC):
    """Async chat interface. ``model_id`` names the model in cache keys and reports."""

    model_id: str = "unknown"
    supports_images: bool = False

    @abstractmethod
    async def chat(self, messages: Sequence[Message], *, temperature: float = 1.0,
                   seed: int | None = None, max_tokens: int = 512,
                   images: Sequence[Any] | None = None) -> ChatReply:
        """Answer ``messages`` (OpenAI format). ``images`` are attached to the last user turn."""

    async def aclose(self) -> None:  # pragma: no cover - trivial default
        return None

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "class": type(self).__name__}

    supports_choice: bool = False

    async def choose(self, messages: Sequence[Message], options: Sequence[str]) -> ChatReply:
        """Constrained decoding: the reply is the option the model finds most likely
        (``raw["choice_logprobs"]`` has each option's log-probability). Backends without it
        raise :class:`ChatError` ``no_choice``."""
        raise ChatError("no_choice", f"{type(self).__name__} cannot score fixed options")


def resolve_constrained(backend: ChatBackend, setting: Any, name: str) -> tuple[bool, str]:
    """(use constrained decoding?, model id for cache keys) for a ``constrained`` parameter
    ``auto`` (when ``backend`` can score fixed options) / true / false. A constrained model is
    another model: its id gets ``+choice`` so its cached replies never mix with free ones."""
    on = backend.supports_choice if setting == "auto" else bool(setting)
    if on and not backend.supports_choice:
        raise ValueError(f"{name} is true but {backend!r} cannot score fixed options; use "
                         f"{name}: auto/false (or a local text model)")
    return on, backend.model_id + ("+choice" if on else "")


# ------------------------------------------------------------------------------- rate limit
class TokenBucket:
    """Async token bucket: at most ``rate`` acquisitions per second, bursts up to ``burst``.

    Must be used from one event loop at a time (the client keeps one bucket per loop)."""

    def __init__(self, rate: float, burst: float | None = None):
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


# ----------------------------------------------------------------------------------- images
def encode_image(image: Any, *, max_side: int | None = None, quality: int = 85) -> bytes:
    """JPEG bytes of an image given as RGB ndarray, PIL image, JPEG/PNG bytes or a file path.

    ``max_side`` downsizes (aspect kept) so the longer side is at most that many pixels."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray)) and max_side is None and bytes(image[:2]) == b"\xff\xd8":
        return bytes(image)
    if isinstance(image, (bytes, bytearray)):
        img = Image.open(io.BytesIO(image))
    elif isinstance(image, (str, Path)):
        img = Image.open(image)
    elif hasattr(image, "shape"):  # numpy array
        img = Image.fromarray(image)
    else:
        img = image
    img = img.convert("RGB")
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _attach_images(messages: Sequence[Message], images: Sequence[Any]) -> list[Message]:
    """Copy of ``messages`` with ``images`` appended (as image_url parts) to the last user turn."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "user":
            content = m.get("content")
            parts = ([{"type": "text", "text": content}] if isinstance(content, str)
                     else list(content or []))
            parts += [{"type": "image_url", "image_url": {"url": _data_url(encode_image(im))}}
                      for im in images]
            m["content"] = parts
            return out
    raise ValueError("images given but no user message to attach them to")


# --------------------------------------------------------------------------- openai client
def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_SSL_CONTEXT = None


def _ssl_context():
    """One TLS context for every client (building one per client costs ~10 ms each)."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        import ssl

        try:
            import certifi

            _SSL_CONTEXT = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover - certifi ships with httpx
            _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


@dataclass(frozen=True)
class _Response:
    status: int
    retry_after: str | None
    text: str


@dataclass(eq=False)  # identity semantics: kept in a set
class _LoopState:
    loop: asyncio.AbstractEventLoop
    session: Any  # aiohttp.ClientSession bound to ``loop``
    slots: asyncio.Semaphore  # at most ``concurrency`` requests in flight
    bucket: TokenBucket | None
    keeper: asyncio.Task | None = None


@dataclass
class _Endpoint:
    """One base URL: an aiohttp session with a ``concurrency``-connection pool behind a
    semaphore. aiohttp rather than httpx: at 32 requests in flight on 2 cores, httpx/httpcore
    spends enough CPU per request to reach only 0.6-0.85 of the ideal throughput against a
    200 ms loopback server, aiohttp 0.95 (benchmarks/evaluation.py)."""

    base_url: str
    concurrency: int
    rate: float | None
    burst: float | None
    # per-event-loop state: asyncio primitives and sessions are bound to one loop
    _loops: dict[int, _LoopState] = field(default_factory=dict)
    # health and load, shared by every event loop of the client
    in_flight: int = 0
    consecutive_failures: int = 0
    unhealthy_until: float = 0.0
    ok: int = 0
    failed: int = 0

    def healthy(self, now: float) -> bool:
        return now >= self.unhealthy_until

    def stats(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "healthy": self.healthy(time.monotonic()),
                "in_flight": self.in_flight, "ok": self.ok, "failed": self.failed}

    def state(self, timeout: float) -> _LoopState:
        import aiohttp

        loop = asyncio.get_running_loop()
        st = self._loops.get(id(loop))
        if st is None or st.loop is not loop:
            for k, old in list(self._loops.items()):  # drop state of closed loops
                if old.loop.is_closed():
                    _release(self._loops.pop(k))
            connector = aiohttp.TCPConnector(limit=self.concurrency, ssl=_ssl_context(),
                                             enable_cleanup_closed=True)
            session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                trust_env=True)
            bucket = TokenBucket(self.rate, self.burst) if self.rate else None
            st = _LoopState(loop, session, asyncio.Semaphore(self.concurrency), bucket)
            self._loops[id(loop)] = st
            st.keeper = loop.create_task(_close_when_cancelled(st))
            _LIVE_STATES.add(st)
        return st


# Every per-loop state whose session is not closed yet. Held strongly: a loop nobody closes
# properly (a library's background loop thread, e.g. TRL's for async rewards) would otherwise be
# garbage-collected with its session open and warn; such states are released at exit.
_LIVE_STATES: set = set()


def _release(st: _LoopState) -> None:
    """Release the session of a loop that can no longer run it, without awaiting anything."""
    _LIVE_STATES.discard(st)
    if st.keeper is not None:
        st.keeper._log_destroy_pending = False  # it can never run again: not an error
    if not st.session.closed:
        connector = st.session.connector
        st.session.detach()
        if connector is not None:
            connector._close()


@atexit.register
def _release_all() -> None:
    for st in list(_LIVE_STATES):
        if st.loop.is_running() and not st.loop.is_closed():  # a loop in another thread
            try:
                asyncio.run_coroutine_threadsafe(st.session.close(), st.loop).result(2)
                continue
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        _release(st)


async def _close_when_cancelled(st: _LoopState) -> None:
    """Keep ``session`` open for the life of its event loop: ``asyncio.run`` cancels leftover
    tasks before closing the loop, and the session is closed then, inside the loop (a session
    left to the garbage collector warns about unclosed connections)."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await st.session.close()
        _LIVE_STATES.discard(st)
        raise


class OpenAICompatibleChat(ChatBackend):
    """Chat over ``/v1/chat/completions`` of any OpenAI-compatible server (vLLM, SGLang,
    Ollama, LM Studio, hosted providers).

    ``base_url`` is the API root including ``/v1``; a list of roots (or one string of roots
    separated by spaces or commas) spreads calls by fewest
    in flight, with fail-over (module docstring). ``concurrency`` and ``rate_limit_per_s``
    apply per endpoint; ``failover_after`` failures in a row give an endpoint a ``cooldown_s``
    pause; ``max_retries`` bounds the retries of one call over all endpoints.
    """

    supports_images = True

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_max: float = 300.0,
        concurrency: int = 8,
        rate_limit_per_s: float | None = None,
        rate_burst: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
        model_id: str | None = None,
        image_max_side: int | None = None,
        send_seed: bool = True,
        failover_after: int = 2,
        cooldown_s: float = 30.0,
    ):
        # one string may hold several URLs separated by spaces or commas, so an environment
        # variable or a --params value can list endpoints: "http://a:8000/v1 http://b:8000/v1"
        urls = base_url.replace(",", " ").split() if isinstance(base_url, str) \
            else list(base_url)
        if not urls or not all(isinstance(u, str) and u.strip() for u in urls):
            raise ValueError("base_url must be a non-empty URL (or list of URLs), e.g. "
                             "http://127.0.0.1:8000/v1")
        if not model:
            raise ValueError("model must name the served model, e.g. Qwen/Qwen2.5-VL-7B-Instruct")
        self.model = model
        self.model_id = model_id or f"openai:{model}"
        self._api_key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.retry_after_max = float(retry_after_max)
        self.extra_body = dict(extra_body or {})
        self.image_max_side = image_max_side
        self.send_seed = send_seed
        self._endpoints = [
            _Endpoint(u.rstrip("/") + "/", int(concurrency), rate_limit_per_s, rate_burst)
            for u in urls
        ]
        self._rr = 0
        self._rng = random.Random()
        self.failover_after = max(1, int(failover_after))
        self.cooldown_s = float(cooldown_s)

    def __repr__(self) -> str:  # never the key
        urls = [e.base_url for e in self._endpoints]
        return (f"OpenAICompatibleChat(model={self.model!r}, base_url={urls!r}, "
                f"api_key={'***' if self._api_key else None})")

    def describe(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "class": type(self).__name__,
                "base_url": [e.base_url for e in self._endpoints]}

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per endpoint: ``base_url``, ``healthy``, ``in_flight``, ``ok`` / ``failed`` attempts."""
        return [e.stats() for e in self._endpoints]

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        return h

    def _pick(self, tried: set[int]) -> tuple[int, bool]:
        """Index of the endpoint for the next attempt of a call that already tried ``tried``,
        and whether it is a fail-over (a healthy endpoint the call has not tried: no backoff).

        Healthy untried endpoints first, then any healthy one, then the one whose cool-down
        ends first; among those the fewest calls in flight, ties in turn."""
        now = time.monotonic()
        n = len(self._endpoints)
        order = [(self._rr + k) % n for k in range(n)]
        self._rr += 1
        healthy = [i for i in order if self._endpoints[i].healthy(now)]
        fresh = [i for i in healthy if i not in tried]
        pool = fresh or healthy
        if pool:
            return min(pool, key=lambda j: self._endpoints[j].in_flight), bool(fresh and tried)
        return min(order, key=lambda j: self._endpoints[j].unhealthy_until), False

    def _mark(self, ep: _Endpoint, exc: ChatError | None) -> None:
        """Record an attempt's outcome on ``ep``. Only the endpoint being down (refused or
        broken connections, timeouts, 5xx, bad JSON) counts towards its cool-down; client
        errors and rate limiting do not."""
        if exc is None:
            ep.ok += 1
            ep.consecutive_failures = 0
            return
        ep.failed += 1
        if not exc.retryable or exc.reason == "http_429":
            return
        ep.consecutive_failures += 1
        refused = exc.reason == "transport" and "Connector" in str(exc)
        if refused or ep.consecutive_failures >= self.failover_after:
            if ep.healthy(time.monotonic()):
                logger.warning("LLM endpoint %s unhealthy (%s): not used for %.0f s",
                               ep.base_url, exc.reason, self.cooldown_s)
            ep.unhealthy_until = time.monotonic() + self.cooldown_s

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # the server said how long: honour it (capped by retry_after_max), plus jitter
            return min(self.retry_after_max, retry_after) + self._rng.uniform(0, 0.05)
        cap = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return self._rng.uniform(0.5 * cap, cap)  # "equal jitter": never a zero wait

    async def chat(self, messages, *, temperature=1.0, seed=None, max_tokens=512, images=None):
        msgs = list(messages)
        if images:
            msgs = _attach_images(msgs, [encode_image(im, max_side=self.image_max_side)
                                         for im in images])
        body: dict[str, Any] = {"model": self.model, "messages": msgs,
                                "temperature": float(temperature), "max_tokens": int(max_tokens)}
        if seed is not None and self.send_seed:
            body["seed"] = int(seed)
        body.update(self.extra_body)
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        last: ChatError | None = None
        tried: set[int] = set()
        idx, _ = self._pick(tried)
        backoffs = 0
        for attempt in range(self.max_retries + 1):
            ep = self._endpoints[idx]
            ep.in_flight += 1
            try:
                reply = await self._once(ep, payload)
            except ChatError as exc:
                self._mark(ep, exc)
                exc.attempts = attempt + 1
                last = exc
                if not exc.retryable or attempt == self.max_retries:
                    raise
                tried.add(idx)
                idx, failover = self._pick(tried)
                if failover and exc.reason != "http_429":
                    logger.debug("chat %s on %s (attempt %d), failing over to %s", exc.reason,
                                 ep.base_url, attempt + 1, self._endpoints[idx].base_url)
                    continue
                wait = self._backoff(backoffs, exc.retry_after)
                backoffs += 1
                logger.debug("chat %s on %s (attempt %d), retrying in %.2fs",
                             exc.reason, ep.base_url, attempt + 1, wait)
                await asyncio.sleep(wait)
                continue
            finally:
                ep.in_flight -= 1
            self._mark(ep, None)
            reply.attempts = attempt + 1
            return reply
        raise last  # pragma: no cover - loop always returns or raises

    async def _once(self, ep: _Endpoint, payload: bytes) -> ChatReply:
        import aiohttp

        st = ep.state(self.timeout)
        async with st.slots:
            if st.bucket is not None:
                await st.bucket.acquire()
            t0 = time.perf_counter()
            try:
                async with st.session.post(ep.base_url + "chat/completions", data=payload,
                                           headers=self._headers()) as r:
                    resp = _Response(r.status, r.headers.get("retry-after"),
                                     await r.text(errors="replace"))
            except asyncio.TimeoutError as exc:
                raise ChatError("timeout", type(exc).__name__, retryable=True) from None
            except aiohttp.ClientError as exc:
                raise ChatError("transport", f"{type(exc).__name__}: {exc}",
                                retryable=True) from None
            latency = time.perf_counter() - t0
        status = resp.status
        if status == 429 or status == 408 or status >= 500:
            raise ChatError(f"http_{status}", resp.text[:200], retryable=True, status=status,
                            retry_after=_retry_after_seconds(resp.retry_after))
        if status >= 400:
            raise ChatError(f"http_{status}", resp.text[:300], status=status)
        try:
            data = json.loads(resp.text)
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChatError("bad_json", f"{type(exc).__name__}: {resp.text[:200]!r}",
                            retryable=True, status=status) from None
        if text is None:
            text = ""
        if not isinstance(text, str):  # some servers return content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        return ChatReply(text=text, raw=data, usage=dict(data.get("usage") or {}),
                         latency=latency)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        for ep in self._endpoints:
            st = ep._loops.pop(id(loop), None)
            if st is not None:
                if st.keeper is not None:
                    st.keeper.cancel()
                await st.session.close()


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

            model = AutoModelForImageTextToText.from_pretrained(str(self.model_dir), **kw)
            proc = AutoProcessor.from_pretrained(str(self.model_dir), local_files_only=True)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = AutoModelForCausalLM.from_pretrained(str(self.model_dir), **kw)
            proc = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        model = adapters.merge_adapters(model, self.adapter_dirs)
        model.to(device).eval()
        self._loaded = (model, proc, device)
        logger.info("loaded %s on %s (%s)", self.model_dir, device, dtype)
        return self._loaded

    def _generate(self, messages, temperature, seed, max_tokens, images) -> ChatReply:
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
            scores: dict[str, float] = {}
            with torch.inference_mode():
                # the prompt runs once; each option continues a copy of its KV cache
                # (logits of the last position only: the vocabulary projection of every
                # prompt position would cost more than the whole transformer)
                head = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                for opt in options:
                    opt_ids = tok(opt, add_special_tokens=False,
                                  return_tensors="pt")["input_ids"].to(device)
                    logits = head.logits[:, -1:]
                    if opt_ids.shape[1] > 1:
                        tail = model(input_ids=opt_ids[:, :-1], use_cache=True,
                                     cache=copy.deepcopy(head.cache))
                        logits = torch.cat([logits, tail.logits], dim=1)
                    lp = torch.log_softmax(logits[0].float(), -1)
                    scores[opt] = float(lp.gather(1, opt_ids[0][:, None]).sum())
            best = max(options, key=lambda o: scores[o])
            return ChatReply(text=best, raw={"model_dir": str(self.model_dir),
                                             "choice_logprobs": scores},
                             usage={"prompt_tokens": int(ids.shape[1]), "completion_tokens": 0},
                             latency=time.perf_counter() - t0)

    async def choose(self, messages, options):
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

    async def chat(self, messages, *, temperature=1.0, seed=None, max_tokens=512, images=None):
        try:
            return await asyncio.to_thread(self._generate, list(messages), temperature, seed,
                                           max_tokens, list(images or []))
        except ChatError:
            raise
        except Exception as exc:  # a model error is one failed item, not a dead batch
            raise ChatError("local_error", f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------------- factory
_CACHE: dict[str, ChatBackend] = {}
_CACHE_LOCK = threading.Lock()


def _resolve_model_dir(params: Mapping[str, Any]) -> Path:
    """``model_dir`` path, or ``asset: smollm2`` for the packaged SmolLM2 export."""
    if params.get("model_dir"):
        p = Path(str(params["model_dir"])).expanduser()
        if not p.is_absolute():
            from evads_kedro.paths import project_root

            p = project_root() / p
        return p
    asset = params.get("asset")
    if asset == "smollm2":
        from evads_kedro.assets import smollm2_hf_dir

        return smollm2_hf_dir()
    raise ValueError("local backend needs model_dir (a Hugging Face folder) or asset: smollm2")


def build_chat(params: Mapping[str, Any]) -> ChatBackend:
    """Build (once per process per distinct ``params``) the backend described by ``params``.

    ``backend: openai`` → :class:`OpenAICompatibleChat` (``base_url``: one URL or a list,
    ``model``, optional ``api_key_env``/``api_key``, ``concurrency``, ``rate_limit_per_s``,
    ``timeout``, ``max_retries``, ``failover_after``, ``cooldown_s``, ...). ``base_url``/``model`` may be left empty and taken from the
    ``EVADS_LLM_BASE_URL`` / ``EVADS_LLM_MODEL`` environment variables.
    ``backend: local`` → :class:`LocalTransformersChat` (``model_dir`` or ``asset``,
    ``device``, ``precision``, ``vision``, ``adapter_dir``: LoRA folder(s), see
    :mod:`evads_kedro.backends.adapters`). Unknown keys are ignored (callers keep decoding
    parameters in the same mapping).
    """
    params = dict(params)
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        kind = params.get("backend", "openai")
        if kind == "openai":
            base_url = params.get("base_url") or os.environ.get("EVADS_LLM_BASE_URL")
            model = params.get("model") or os.environ.get("EVADS_LLM_MODEL")
            if not base_url or not model:
                raise ValueError("openai backend needs base_url and model (parameters, or "
                                 "EVADS_LLM_BASE_URL / EVADS_LLM_MODEL)")
            backend: ChatBackend = OpenAICompatibleChat(
                base_url, model,
                api_key=params.get("api_key"),
                api_key_env=params.get("api_key_env", "OPENAI_API_KEY"),
                timeout=float(params.get("timeout", 120.0)),
                max_retries=int(params.get("max_retries", 5)),
                backoff_base=float(params.get("backoff_base", 0.5)),
                backoff_max=float(params.get("backoff_max", 30.0)),
                retry_after_max=float(params.get("retry_after_max", 300.0)),
                concurrency=int(params.get("concurrency", 8)),
                rate_limit_per_s=params.get("rate_limit_per_s"),
                rate_burst=params.get("rate_burst"),
                extra_body=params.get("extra_body"),
                model_id=params.get("model_id"),
                image_max_side=params.get("image_max_side"),
                send_seed=bool(params.get("send_seed", True)),
                failover_after=int(params.get("failover_after", 2)),
                cooldown_s=float(params.get("cooldown_s", 30.0)),
            )
        elif kind == "local":
            backend = LocalTransformersChat(
                _resolve_model_dir(params),
                device=params.get("device", "auto"),
                precision=params.get("precision", "auto"),
                vision=params.get("vision", "auto"),
                model_id=params.get("model_id"),
                num_threads=params.get("num_threads"),
                image_max_side=params.get("image_max_side", 448),
                adapter_dir=params.get("adapter_dir"),
            )
        else:
            raise ValueError(f"unknown chat backend {kind!r}; use openai or local")
        _CACHE[key] = backend
        return backend


def clear_chat_cache() -> None:
    """Forget the per-process backends (tests; after changing environment variables)."""
    with _CACHE_LOCK:
        _CACHE.clear()
