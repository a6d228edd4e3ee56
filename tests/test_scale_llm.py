"""The multi-endpoint chat client against loopback servers (``tests/llm_server.py``): a dead
endpoint (500 on every call, or a closed port) costs no item, the healthy server gets the
work, a recovered endpoint is used again after its cool-down, and calls go to the endpoint
with the fewest in flight."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from evads_kedro.backends.llm import OpenAICompatibleChat, build_chat, clear_chat_cache
from llm_server import FakeLLMServer, Reply, Status, default_responder

N_ITEMS = 24


def _client(urls: str | list[str], **kw) -> OpenAICompatibleChat:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("timeout", 2.0)
    kw.setdefault("concurrency", 4)
    return OpenAICompatibleChat(urls, "fake-model", api_key_env=None, **kw)


def _run_items(c: OpenAICompatibleChat, n: int = N_ITEMS, parallel: int = 8) -> list[str]:
    """``n`` distinct prompts, ``parallel`` callers at a time; the reply texts in item order."""
    async def go():
        gate = asyncio.Semaphore(parallel)

        async def one(i):
            async with gate:
                r = await c.chat([{"role": "user", "content": f"item {i}"}], temperature=0,
                                 seed=0, max_tokens=4)
                return r.text
        try:
            return await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await c.aclose()
    return asyncio.run(go())


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    return f"http://127.0.0.1:{port}/v1"


def _always_500(body, n):
    return Status(500, '{"error": {"message": "engine dead"}}')


@pytest.mark.parametrize("bad_first", [True, False], ids=["bad_listed_first", "bad_second"])
def test_endpoint_answering_500_fails_over_to_the_healthy_one(bad_first):
    with FakeLLMServer(_always_500) as bad, FakeLLMServer() as good:
        urls = [bad.base_url, good.base_url] if bad_first else [good.base_url, bad.base_url]
        c = _client(urls, max_retries=3, cooldown_s=60)
        texts = _run_items(c)
        assert len(texts) == N_ITEMS and all("<answer>ok</answer>" in t for t in texts)
        assert good.n_requests == N_ITEMS  # every item was served by the healthy server
        # marked unhealthy after 2 failures in a row: only the calls already on their way
        # (at most one per concurrent caller) ever reached it
        assert 1 <= bad.n_requests <= 8
        stats = {s["base_url"].rstrip("/"): s for s in c.endpoint_stats()}
        assert stats[bad.base_url]["healthy"] is False and stats[good.base_url]["healthy"]
        assert stats[good.base_url]["ok"] == N_ITEMS and stats[bad.base_url]["ok"] == 0


def test_closed_port_fails_over_at_once():
    with FakeLLMServer() as good:
        c = _client([_closed_port_url(), good.base_url], max_retries=2, cooldown_s=60)
        texts = _run_items(c)
        assert len(texts) == N_ITEMS and good.n_requests == N_ITEMS
        dead = c.endpoint_stats()[0]
        assert dead["healthy"] is False and dead["ok"] == 0 and 1 <= dead["failed"] <= 8


def test_all_endpoints_down_still_raises_after_retries():
    from evads_kedro.backends.llm import ChatError

    with FakeLLMServer(_always_500) as a, FakeLLMServer(_always_500) as b:
        c = _client([a.base_url, b.base_url], max_retries=3, cooldown_s=60)
        with pytest.raises(ChatError) as info:
            _run_items(c, n=1)
        assert info.value.reason == "http_500" and info.value.attempts == 4
        assert a.n_requests + b.n_requests == 4 and a.n_requests >= 1 and b.n_requests >= 1


def test_endpoint_is_used_again_after_its_cool_down():
    state = {"down": True}

    def flaky(body, n):
        return Status(503) if state["down"] else Reply("<answer>back</answer>")

    with FakeLLMServer(flaky) as flap, FakeLLMServer() as good:
        c = _client([flap.base_url, good.base_url], max_retries=3, cooldown_s=0.3)
        assert len(_run_items(c, n=8)) == 8
        assert c.endpoint_stats()[0]["ok"] == 0
        state["down"] = False
        time.sleep(0.4)  # past the cool-down
        texts = _run_items(c, n=N_ITEMS)
        assert any("back" in t for t in texts)  # the recovered server serves again
        assert c.endpoint_stats()[0]["ok"] >= 1 and c.endpoint_stats()[0]["healthy"]


def test_calls_go_to_the_endpoint_with_fewest_in_flight():
    with FakeLLMServer(default_responder(latency=0.25)) as slow, FakeLLMServer() as fast:
        c = _client([slow.base_url, fast.base_url], concurrency=8)
        assert len(_run_items(c, n=40, parallel=4)) == 40
        # the slow server keeps its few calls in flight while the fast one takes the rest
        assert fast.n_requests >= 3 * slow.n_requests, (fast.n_requests, slow.n_requests)
        assert slow.n_requests >= 1


def test_build_chat_passes_endpoint_list_and_failover_settings():
    clear_chat_cache()
    try:
        c = build_chat({"backend": "openai", "base_url": ["http://127.0.0.1:1/v1",
                                                          "http://127.0.0.1:2/v1"],
                        "model": "m", "failover_after": 3, "cooldown_s": 5})
        assert isinstance(c, OpenAICompatibleChat)
        assert c.failover_after == 3 and c.cooldown_s == 5.0
        assert [s["base_url"] for s in c.endpoint_stats()] == [
            "http://127.0.0.1:1/v1/", "http://127.0.0.1:2/v1/"]
    finally:
        clear_chat_cache()


def test_one_string_may_list_several_endpoints():
    """What an environment variable or a --params value can carry."""
    with FakeLLMServer(_always_500) as bad, FakeLLMServer() as good:
        c = _client(f"{bad.base_url}  {good.base_url}", max_retries=3)
        assert len(c.endpoint_stats()) == 2
        assert len(_run_items(c, n=6)) == 6 and good.n_requests == 6
    c = _client("http://127.0.0.1:1/v1,http://127.0.0.1:2/v1")
    assert [s["base_url"] for s in c.endpoint_stats()] == [
        "http://127.0.0.1:1/v1/", "http://127.0.0.1:2/v1/"]
