"""backends.openai_sdk.OpenAISdkChat, what only the SDK transport has. The behaviour it shares
with the hand-written client (request body, Retry-After, retries, error taxonomy) is tested
once for both transports in tests/test_evaluation_llm.py (the ``any_client`` fixture)."""

from __future__ import annotations

import pytest

pytest.importorskip("openai")
pytest.importorskip("aiolimiter")

from evads_kedro.backends.openai_sdk import OpenAISdkChat  # noqa: E402
from llm_server import FakeLLMServer, Reply, scripted  # noqa: E402
from test_evaluation_llm import chat, client  # noqa: E402  (one call + aclose, any backend)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_either_sdk_http_client_answers_and_says_which(transport):
    with FakeLLMServer(scripted([("hello", [Reply("hi")])])) as srv:
        c = client(srv, OpenAISdkChat, transport=transport)
        assert c.describe()["transport"] == f"openai-sdk/{transport}"
        assert chat(c).text == "hi" and srv.n_requests == 1


def test_an_unknown_transport_is_refused():
    with pytest.raises(ValueError, match="transport must be auto, aiohttp or httpx"):
        OpenAISdkChat("http://127.0.0.1:9/v1", "m", api_key_env=None, transport="curl")
