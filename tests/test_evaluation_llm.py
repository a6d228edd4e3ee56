"""The chat client against a real HTTP server on 127.0.0.1, and the local transformers backend."""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import numpy as np
import pytest

from evads_kedro.backends.llm import (
    ChatError,
    LocalTransformersChat,
    OpenAICompatibleChat,
    TokenBucket,
    build_chat,
    clear_chat_cache,
)
from evaluation_data import build_tiny_lm
from llm_server import FakeLLMServer, Hang, Reply, Status, Truncated, scripted

USER = [{"role": "user", "content": "hello"}]


def client(server: FakeLLMServer | str, cls=OpenAICompatibleChat, **kw):
    """A client of ``cls`` on ``server`` (or a URL) with fast backoff and no API key."""
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("timeout", 2.0)
    return cls(getattr(server, "base_url", server), "fake-model", api_key_env=None, **kw)


def chat(c, messages=USER, **kw):
    async def go():
        try:
            return await c.chat(messages, temperature=kw.pop("temperature", 0.0),
                                seed=kw.pop("seed", 42), max_tokens=kw.pop("max_tokens", 8), **kw)
        finally:
            await c.aclose()
    return asyncio.run(go())


@pytest.fixture(params=["handwritten", "sdk"])
def any_client(request):
    """``make(server, **kw)`` for each transport: the hand-written aiohttp client and the
    openai-SDK one (backends.openai_sdk; skipped when openai/aiolimiter are missing). Both must
    keep the same request body, retries and error taxonomy."""
    if request.param == "sdk":
        pytest.importorskip("openai")
        pytest.importorskip("aiolimiter")
        from evads_kedro.backends.openai_sdk import OpenAISdkChat as cls
    else:
        cls = OpenAICompatibleChat
    return lambda server, **kw: client(server, cls, **kw)


# ------------------------------------------------ both transports (hand-written and SDK)
def test_normal_reply_and_request_body(any_client):
    with FakeLLMServer(scripted([("hello", [Reply("hi there")])])) as srv:
        reply = chat(any_client(srv, extra_body={"top_k": 5}), temperature=0.0, seed=42,
                     max_tokens=8)
        assert reply.text == "hi there" and reply.attempts == 1 and reply.latency > 0
        assert reply.usage["completion_tokens"] == len("hi there")
        body = srv.requests[0]["body"]
        assert body["model"] == "fake-model" and body["temperature"] == 0.0
        assert body["seed"] == 42 and body["max_tokens"] == 8
        assert body["messages"] == USER and body["top_k"] == 5


def test_429_honours_retry_after(any_client):
    script = scripted([("hello", [Status(429, headers={"Retry-After": "0.4"}), Reply("ok")])])
    with FakeLLMServer(script) as srv:
        t0 = time.perf_counter()
        reply = chat(any_client(srv))
        elapsed = time.perf_counter() - t0
    assert reply.text == "ok" and reply.attempts == 2
    assert elapsed >= 0.4  # waited as told, not the 0.05 s backoff cap
    assert srv.n_requests == 2


@pytest.mark.parametrize("failure", [Status(500), Status(503), Truncated(), Hang(1.0)],
                         ids=["500", "503", "truncated_json", "timeout"])
def test_transient_failures_are_retried(any_client, failure):
    with FakeLLMServer(scripted([("hello", [failure, Reply("recovered")])])) as srv:
        reply = chat(any_client(srv, timeout=0.3))
        assert reply.text == "recovered" and reply.attempts == 2


@pytest.mark.parametrize(("failure", "reason"), [
    (Status(500), "http_500"), (Truncated(), "bad_json"), (Hang(1.0), "timeout"),
    (Status(429, headers={"Retry-After": "0"}), "http_429"),
])
def test_exhausted_retries_raise_with_reason(any_client, failure, reason):
    with FakeLLMServer(scripted([("hello", [failure])])) as srv:
        with pytest.raises(ChatError) as info:
            chat(any_client(srv, timeout=0.3, max_retries=2))
        assert info.value.reason == reason and info.value.attempts == 3
        assert srv.n_requests == 3  # one request per attempt (the SDK's own retries are off)


def test_client_errors_are_not_retried_and_a_dead_port_is_transport(any_client):
    with FakeLLMServer(scripted([("hello", [Status(400, body='{"error": "bad"}')])])) as srv:
        with pytest.raises(ChatError, match="http_400"):
            chat(any_client(srv))
        assert srv.n_requests == 1
        url = srv.base_url
    with pytest.raises(ChatError) as info:
        chat(any_client(url, max_retries=0))
    assert info.value.reason == "transport"


# ------------------------------------------------------------- the hand-written client
def test_images_are_sent_as_data_urls():
    frame = np.zeros((64, 128, 3), np.uint8)
    frame[:, :64] = 255
    with FakeLLMServer() as srv:
        chat(client(srv, image_max_side=32), images=[frame, frame])
        content = srv.requests[0]["body"]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "hello"}
    urls = [p["image_url"]["url"] for p in content[1:]]
    assert len(urls) == 2 and all(u.startswith("data:image/jpeg;base64,") for u in urls)
    from io import BytesIO

    from PIL import Image

    img = Image.open(BytesIO(base64.b64decode(urls[0].split(",", 1)[1])))
    assert img.size == (32, 16)  # max side budget honoured, aspect kept


def test_api_key_sent_but_never_shown(monkeypatch, caplog):
    monkeypatch.setenv("EVADS_TEST_KEY", "sk-secret-123")
    caplog.set_level(logging.DEBUG)
    script = scripted([("hello", [Status(500), Reply("ok")])])
    with FakeLLMServer(script) as srv:
        c = OpenAICompatibleChat(srv.base_url, "m", api_key_env="EVADS_TEST_KEY",
                                 backoff_base=0.01, backoff_max=0.02)
        chat(c)
        assert srv.requests[0]["headers"]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(c) and "sk-secret" not in str(c.describe())
    assert "sk-secret" not in caplog.text


def test_concurrency_is_bounded_per_endpoint():
    with FakeLLMServer(scripted([], default=lambda b, n: Reply("x", delay=0.1))) as srv:
        c = client(srv, concurrency=3)

        async def go():
            msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
            out = await asyncio.gather(*(c.chat(m, temperature=0, seed=1, max_tokens=4)
                                         for m in msgs))
            await c.aclose()
            return out
        t0 = time.perf_counter()
        out = asyncio.run(go())
        elapsed = time.perf_counter() - t0
    assert len(out) == 12 and srv.max_in_flight == 3
    assert elapsed >= 0.4 - 0.02  # 12 calls / 3 at a time × 0.1 s


def test_several_endpoints_round_robin():
    with FakeLLMServer() as a, FakeLLMServer() as b:
        c = OpenAICompatibleChat([a.base_url, b.base_url], "m", api_key_env=None)

        async def go():
            await asyncio.gather(*(c.chat([{"role": "user", "content": str(i)}], temperature=0,
                                          seed=0, max_tokens=4) for i in range(6)))
            await c.aclose()
        asyncio.run(go())
        assert a.n_requests == 3 and b.n_requests == 3


def test_token_bucket_limits_rate():
    async def go():
        bucket = TokenBucket(rate=20, burst=1)
        t0 = time.perf_counter()
        for _ in range(6):
            await bucket.acquire()
        return time.perf_counter() - t0
    assert asyncio.run(go()) >= 5 / 20 - 0.02


def test_client_survives_several_event_loops():
    with FakeLLMServer() as srv:
        c = client(srv)
        for _ in range(2):  # each node run uses its own asyncio.run
            assert "ok" in asyncio.run(c.chat(USER, temperature=0, seed=0, max_tokens=4)).text


def test_build_chat_caches_and_validates(monkeypatch):
    clear_chat_cache()
    p = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    assert build_chat(p) is build_chat(dict(p))
    with pytest.raises(ValueError, match="base_url and model"):
        monkeypatch.delenv("EVADS_LLM_BASE_URL", raising=False)
        build_chat({"backend": "openai", "model": "x"})
    with pytest.raises(ValueError, match="backend.backend: .*'openai' or 'local'"):
        build_chat({"backend": "nope"})


# ------------------------------------------------------------------------- local backend
@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


def test_local_backend_seeded_sampling(tiny_lm):
    backend = LocalTransformersChat(tiny_lm, device="cpu")
    assert not backend.supports_images and backend.model_id == f"local:{tiny_lm.name}"

    async def go(seed, temperature=1.0):
        return await backend.chat(USER, temperature=temperature, seed=seed, max_tokens=12)

    a, b, c = (asyncio.run(go(s)) for s in (1, 1, 2))
    assert a.text == b.text and a.usage["completion_tokens"] > 0
    assert a.text != c.text or a.usage != c.usage  # another seed, another sample
    g1, g2 = asyncio.run(go(1, 0.0)), asyncio.run(go(7, 0.0))
    assert g1.text == g2.text  # greedy ignores the seed


def test_local_backend_refuses_images_and_missing_dir(tiny_lm, tmp_path):
    backend = LocalTransformersChat(tiny_lm, device="cpu")
    with pytest.raises(ChatError, match="no_vision"):
        asyncio.run(backend.chat(USER, images=[np.zeros((8, 8, 3), np.uint8)]))
    with pytest.raises(FileNotFoundError, match="config.json"):
        LocalTransformersChat(tmp_path)


def test_sessions_of_loops_closed_without_cleanup_are_released(caplog):
    """A loop closed without cancelling its tasks (not asyncio.run) cannot close its HTTP
    session itself: the next loop's first call releases it, and nothing warns at collection."""
    import gc
    import logging

    from evads_kedro.backends.llm import _LIVE_STATES, _release_all

    caplog.set_level(logging.ERROR, logger="asyncio")
    with FakeLLMServer() as srv:
        chat = OpenAICompatibleChat(srv.base_url, "m", api_key_env=None)
        loop = asyncio.new_event_loop()
        assert "ok" in loop.run_until_complete(chat.chat(USER, max_tokens=4)).text
        loop.close()
        (stale,) = [st for st in _LIVE_STATES if st.loop is loop]
        assert not stale.session.closed
        assert "ok" in asyncio.run(chat.chat(USER, max_tokens=4)).text  # a new loop
        assert stale.session.closed and stale not in _LIVE_STATES
        # asyncio.run closed its own session properly: nothing of it is kept
        assert not [st for st in _LIVE_STATES if st.loop.is_closed()]
        # a loop left open and a backend dropped (a library's background loop): kept until
        # exit, then released there
        other = OpenAICompatibleChat(srv.base_url, "m2", api_key_env=None)
        open_loop = asyncio.new_event_loop()
        assert "ok" in open_loop.run_until_complete(other.chat(USER, max_tokens=4)).text
        (kept,) = [st for st in _LIVE_STATES if st.loop is open_loop]
        del loop, stale, other
        gc.collect()
        assert not kept.session.closed
        _release_all()
        assert kept.session.closed and kept not in _LIVE_STATES
        open_loop.close()
        del kept, open_loop
        gc.collect()
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()
                or "destroyed but it is pending" in r.getMessage()]
