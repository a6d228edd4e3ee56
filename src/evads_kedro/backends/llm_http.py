"""OpenAI-compatible HTTP chat client: transport, endpoint balancing and fail-over, retries.

:class:`OpenAICompatibleChat` — ``POST {base_url}/chat/completions`` through
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
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evads_kedro.backends.llm_base import ChatBackend, ChatError, ChatReply, Message, encode_image

logger = logging.getLogger(__name__)


# Structured-output request shapes, tried in this order until the server honours one.
CHOICE_MODES = ("structured_outputs", "guided_choice", "response_format")
JSON_MODES = ("response_format", "structured_outputs", "guided_json")


def _choice_fields(mode: str, options: Sequence[str]) -> dict[str, Any]:
    """Request fields constraining the reply to one of ``options`` (vLLM >= 0.10
    ``structured_outputs``, older vLLM/SGLang ``guided_choice``, or an OpenAI json_schema
    enum, whose reply is ``{"choice": ...}``)."""
    if mode == "structured_outputs":
        return {"structured_outputs": {"choice": list(options)}}
    if mode == "guided_choice":
        return {"guided_choice": list(options)}
    schema = {"type": "object", "properties": {"choice": {"type": "string",
                                                          "enum": list(options)}},
              "required": ["choice"], "additionalProperties": False}
    return {"response_format": {"type": "json_schema",
                                "json_schema": {"name": "choice", "strict": True,
                                                "schema": schema}}}


def _json_fields(mode: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Request fields constraining the reply to JSON of ``schema``."""
    if mode == "response_format":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "reply", "schema": dict(schema)}}}
    if mode == "structured_outputs":
        return {"structured_outputs": {"json": dict(schema)}}
    return {"guided_json": dict(schema)}

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
    supports_choice = True  # through structured outputs, free text when the server has none
    choose_by_default = False  # ``constrained: auto`` keeps endpoints on free replies
    supports_json_schema = True
    json_schema_by_default = False  # QA agents' ``structured: auto`` stays on free replies

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
        # per kind (choice / json): the request shape the server honours (None: not detected
        # yet, "none": it honours none), calls answered under it and free-text fallbacks
        self.structured_stats = {k: {"mode": None, "structured": 0, "fallback": 0}
                                 for k in ("choice", "json")}
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

    async def chat(self, messages, *, temperature=1.0, seed=None, max_tokens=512, images=None,
                   json_schema=None):
        """One completion; with ``json_schema`` the server is asked for JSON of that schema
        (``response_format: json_schema``, vLLM ``structured_outputs`` / ``guided_json``,
        whichever it honours: detected once, then cached), else free text (counted in
        :attr:`structured_stats`)."""
        if json_schema is None:
            return await self._complete(messages, temperature, seed, max_tokens, images, {})

        def accept(mode: str, text: str) -> str | None:
            try:
                json.loads(text)
            except (TypeError, ValueError):
                return None
            return text

        return await self._structured(
            "json", JSON_MODES, lambda m: _json_fields(m, json_schema), accept,
            lambda f: self._complete(messages, temperature, seed, max_tokens, images, f))

    async def choose(self, messages, options):
        """The server's pick among ``options`` under a structured-output constraint (vLLM
        ``structured_outputs.choice`` / ``guided_choice``, or a ``json_schema`` enum: whichever
        it honours, detected once and cached); greedy. A server that honours none answers
        freely (``raw["structured"]`` None, counted in :attr:`structured_stats`): the caller
        parses that text like any free reply."""
        opts = [str(o) for o in options]
        if not opts:
            raise ValueError("choose() needs at least one option")

        def accept(mode: str, text: str) -> str | None:
            t = (text or "").strip()
            if mode == "response_format":
                try:
                    t = json.loads(t)["choice"]
                except (TypeError, ValueError, KeyError):
                    return None
            return t if t in opts else None

        longest = max(len(o) for o in opts)
        return await self._structured(
            "choice", CHOICE_MODES, lambda m: _choice_fields(m, opts), accept,
            lambda f: self._complete(messages, 0.0, None, max(16, longest + 24), None, f))

    async def _structured(self, kind, modes, fields_for, accept, call) -> ChatReply:
        """Try the structured-output request shapes ``modes`` (the detected one only, once
        known); a shape the server rejects (HTTP 400/404/422) or ignores (a reply ``accept``
        refuses) is skipped. None honoured: one free call, counted as a fallback."""
        stats = self.structured_stats[kind]
        known = stats["mode"]
        for mode in ([known] if known and known != "none" else [] if known else list(modes)):
            try:
                reply = await call(fields_for(mode))
            except ChatError as exc:
                if known is None and exc.status in (400, 404, 415, 422):
                    logger.debug("%s: %s not accepted (%s)", self.model_id, mode, exc.reason)
                    continue
                raise
            value = accept(mode, reply.text)
            if value is not None:
                if stats["mode"] != mode:
                    logger.info("%s honours structured %s outputs as %s", self.model_id, kind,
                                mode)
                stats["mode"] = mode
                stats["structured"] += 1
                reply.text = value
                reply.raw = {**(reply.raw if isinstance(reply.raw, dict) else {}),
                             "structured": mode}
                return reply
            if known:
                break  # the known shape, ignored this once: answer freely
        if stats["mode"] is None:
            stats["mode"] = "none"
            logger.warning("%s honours no structured-output field for %s; free-text replies "
                           "(counted in structured_stats)", self.model_id, kind)
        stats["fallback"] += 1
        reply = await call({})
        reply.raw = {**(reply.raw if isinstance(reply.raw, dict) else {}), "structured": None}
        return reply

    async def _complete(self, messages, temperature, seed, max_tokens, images,
                        fields: Mapping[str, Any]) -> ChatReply:
        msgs = list(messages)
        if images:
            msgs = _attach_images(msgs, [encode_image(im, max_side=self.image_max_side)
                                         for im in images])
        body: dict[str, Any] = {"model": self.model, "messages": msgs,
                                "temperature": float(temperature), "max_tokens": int(max_tokens)}
        if seed is not None and self.send_seed:
            body["seed"] = int(seed)
        body.update(self.extra_body)
        body.update(fields)
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
