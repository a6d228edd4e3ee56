"""OpenAI-compatible chat whose transport is the maintained ``openai`` SDK (``AsyncOpenAI``).

:class:`OpenAISdkChat` keeps everything :class:`~evads_kedro.backends.llm.OpenAICompatibleChat`
does above the wire (endpoint balancing and fail-over, backoff honouring ``Retry-After``, the
``ChatError`` reasons ``timeout`` / ``transport`` / ``http_<status>`` / ``bad_json``) and
replaces only one attempt (``_once``): an ``AsyncOpenAI`` client per endpoint and event loop,
on the SDK's aiohttp transport when ``openai[aiohttp]`` is installed (else its httpx one), the
SDK's ``timeout``, ``aiolimiter.AsyncLimiter`` for ``rate_limit_per_s`` and a semaphore for
``concurrency``. The SDK's own retries are off by default (``sdk_max_retries=0``): the outer
loop already retries, and two retry layers would multiply the attempts and hide fail-over.

Not wired into ``build_chat`` yet: ``benchmarks/evaluation.py`` measures it against the
hand-written aiohttp transport (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from evads_kedro.backends.llm_base import ChatError, ChatReply
from evads_kedro.backends.llm_http import OpenAICompatibleChat, _retry_after_seconds

__all__ = ["OpenAISdkChat", "sdk_transport"]


def sdk_transport() -> str:
    """``aiohttp`` when the SDK's aiohttp client is usable here, else ``httpx``."""
    try:
        import aiohttp  # noqa: F401
        from openai import DefaultAioHttpClient  # noqa: F401
    except ImportError:
        return "httpx"
    return "aiohttp"


@dataclass(eq=False)
class _SdkLoopState:
    loop: asyncio.AbstractEventLoop
    client: Any  # openai.AsyncOpenAI bound to ``loop`` (its connection pool is)
    slots: asyncio.Semaphore
    limiter: Any  # aiolimiter.AsyncLimiter | None
    keeper: asyncio.Task | None = None


async def _close_when_cancelled(st: _SdkLoopState) -> None:
    """Close the client inside its loop when ``asyncio.run`` cancels leftover tasks."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await st.client.close()
        raise


class OpenAISdkChat(OpenAICompatibleChat):
    """:class:`OpenAICompatibleChat` with the ``openai`` SDK as the transport of one attempt.

    Same constructor, plus ``sdk_max_retries`` (the SDK's own retries per attempt; 0 leaves
    retries to the balancing loop) and ``transport`` (``auto`` | ``aiohttp`` | ``httpx``)."""

    def __init__(self, *args: Any, sdk_max_retries: int = 0, transport: str = "auto",
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sdk_max_retries = int(sdk_max_retries)
        self.transport = sdk_transport() if transport == "auto" else transport
        if self.transport not in ("aiohttp", "httpx"):
            raise ValueError(f"transport must be auto, aiohttp or httpx, got {transport!r}")
        self._sdk: dict[tuple[int, str], _SdkLoopState] = {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "transport": f"openai-sdk/{self.transport}"}

    def _sdk_state(self, ep: Any) -> _SdkLoopState:
        loop = asyncio.get_running_loop()
        key = (id(loop), ep.base_url)
        st = self._sdk.get(key)
        if st is None or st.loop is not loop:
            from openai import AsyncOpenAI

            for k, old in list(self._sdk.items()):  # forget clients of closed loops
                if old.loop.is_closed():
                    del self._sdk[k]
            if self.transport == "aiohttp":
                from openai import DefaultAioHttpClient

                http_client = DefaultAioHttpClient(timeout=self.timeout)
            else:
                from openai import DefaultAsyncHttpxClient

                http_client = DefaultAsyncHttpxClient(timeout=self.timeout)
            client = AsyncOpenAI(base_url=ep.base_url, api_key=self._api_key or "EMPTY",
                                 timeout=self.timeout, max_retries=self.sdk_max_retries,
                                 http_client=http_client)
            limiter = None
            if ep.rate:
                from aiolimiter import AsyncLimiter

                burst = float(ep.burst or 1.0)
                limiter = AsyncLimiter(burst, burst / float(ep.rate))
            st = _SdkLoopState(loop, client, asyncio.Semaphore(ep.concurrency), limiter)
            st.keeper = loop.create_task(_close_when_cancelled(st))
            self._sdk[key] = st
        return st

    async def _once(self, ep: Any, payload: bytes) -> ChatReply:
        import openai

        body = json.loads(payload)
        known = {k: body.pop(k) for k in ("model", "messages", "temperature", "max_tokens",
                                          "seed") if k in body}
        st = self._sdk_state(ep)
        async with st.slots:
            if st.limiter is not None:
                await st.limiter.acquire()
            t0 = time.perf_counter()
            try:
                # the raw response: our own json.loads is cheaper than the SDK's typed model
                response = await st.client.chat.completions.with_raw_response.create(
                    **known, extra_body=body or None)
                text_body = response.text
            except openai.APITimeoutError as exc:
                cause = exc.__cause__
                if cause is not None and "Cannot connect" in str(cause):
                    # the SDK's aiohttp client reports a refused connection as ConnectTimeout:
                    # it is the endpoint being down (fail over at once), not a slow reply
                    raise ChatError("transport", f"ClientConnectorError: {cause}",
                                    retryable=True) from None
                raise ChatError("timeout", type(exc).__name__, retryable=True) from None
            except openai.APIConnectionError as exc:
                cause = exc.__cause__
                detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
                raise ChatError("transport", detail, retryable=True) from None
            except openai.APIStatusError as exc:
                status = exc.status_code
                text = exc.response.text if exc.response is not None else str(exc)
                retryable = status in (408, 429) or status >= 500
                raise ChatError(f"http_{status}", text[:300 if not retryable else 200],
                                retryable=retryable, status=status,
                                retry_after=_retry_after_seconds(
                                    exc.response.headers.get("retry-after")
                                    if retryable and exc.response is not None else None)
                                ) from None
            except (openai.APIResponseValidationError, ValueError) as exc:
                raise ChatError("bad_json", f"{type(exc).__name__}: {exc}"[:200],
                                retryable=True) from None
            latency = time.perf_counter() - t0
        try:
            raw = json.loads(text_body)
            text = raw["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChatError("bad_json", f"{type(exc).__name__}: {text_body[:200]!r}",
                            retryable=True, status=200) from None
        if not isinstance(text, str) and text is not None:  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        return ChatReply(text=text or "", raw=raw, usage=dict(raw.get("usage") or {}),
                         latency=latency)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        for key in [k for k in self._sdk if k[0] == id(loop)]:
            st = self._sdk.pop(key)
            if st.keeper is not None:
                st.keeper.cancel()
            await st.client.close()
        await super().aclose()
