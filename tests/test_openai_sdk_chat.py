"""backends.openai_sdk.OpenAISdkChat: the SDK transport keeps our error taxonomy, Retry-After
and the request body, against the scripted loopback server."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiolimiter")

from evads_kedro.backends.llm import ChatError  # noqa: E402
from evads_kedro.backends.openai_sdk import OpenAISdkChat  # noqa: E402
from llm_server import FakeLLMServer, Hang, Reply, Status, Truncated, scripted  # noqa: E402
from test_evaluation_llm import USER, chat  # noqa: E402  (one call + aclose, any backend)


def client(server: FakeLLMServer, **kw) -> OpenAISdkChat:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("timeout", 2.0)
    return OpenAISdkChat(server.base_url, "fake-model", api_key_env=None, **kw)


def test_reply_usage_and_request_body():
    with FakeLLMServer(scripted([("hello", [Reply("hi there")])])) as srv:
        reply = chat(client(srv, extra_body={"top_k": 5}))
        body = srv.requests[0]["body"]
    assert reply.text == "hi there" and reply.attempts == 1
    assert reply.usage["completion_tokens"] == len("hi there")
    assert body["model"] == "fake-model" and body["seed"] == 42 and body["max_tokens"] == 8
    assert body["messages"] == USER and body["top_k"] == 5


def test_429_honours_retry_after():
    script = scripted([("hello", [Status(429, headers={"Retry-After": "0.4"}), Reply("ok")])])
    with FakeLLMServer(script) as srv:
        t0 = time.perf_counter()
        reply = chat(client(srv))
        elapsed = time.perf_counter() - t0
    assert reply.text == "ok" and reply.attempts == 2 and elapsed >= 0.4


@pytest.mark.parametrize(("failure", "reason"), [
    (Status(500), "http_500"), (Truncated(), "bad_json"), (Hang(1.0), "timeout"),
])
def test_exhausted_retries_raise_our_reasons(failure, reason):
    with FakeLLMServer(scripted([("hello", [failure])])) as srv:
        with pytest.raises(ChatError) as info:
            chat(client(srv, timeout=0.3, max_retries=2))
        assert info.value.reason == reason and info.value.attempts == 3
        assert srv.n_requests == 3  # the SDK's own retries are off: one request per attempt


def test_client_errors_are_not_retried_and_a_dead_port_is_transport():
    with FakeLLMServer(scripted([("hello", [Status(400, body='{"error": "bad"}')])])) as srv:
        with pytest.raises(ChatError, match="http_400"):
            chat(client(srv))
        assert srv.n_requests == 1
        url = srv.base_url
    with pytest.raises(ChatError) as info:
        chat(OpenAISdkChat(url, "m", api_key_env=None, max_retries=0, timeout=2.0))
    assert info.value.reason == "transport"
