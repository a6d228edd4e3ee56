"""A tiny scripted OpenAI-compatible server on 127.0.0.1 for tests and benchmarks.

``POST /v1/chat/completions`` answers according to a *responder*: a function
``(body: dict, n: int) -> Action`` where ``n`` counts earlier requests carrying the same prompt
(the concatenated message texts). Actions: :class:`Reply` (200 with a completion),
:class:`Status` (any HTTP status, optional headers such as ``Retry-After``), :class:`Truncated`
(200 with a cut-off JSON body), :class:`Hang` (sleep past the client's timeout). Every request
is recorded (``server.requests``) and the peak number of requests in flight is tracked.

Structured outputs: ``FakeLLMServer(structured={...})`` names the request fields the server
honours among :data:`STRUCTURED_FIELDS` (vLLM ``structured_outputs`` / ``guided_choice`` /
``guided_json``, OpenAI ``response_format``); a request carrying another of them gets HTTP 400
(as OpenAI answers an unknown argument), and an honoured one constrains the scripted reply (a
choice: the scripted text if legal, else the first option; JSON: the scripted text if it
parses, else the first JSON value inside it, else ``[]``/``{}``). ``structured=None`` (the
default) ignores all of them, as before.

Standalone: ``python tests/llm_server.py --port 8000 --latency 0.2`` serves
``<answer>ok</answer>`` replies (and ``Answer: 1.0`` to judge prompts) with a fixed latency.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    text: str
    delay: float = 0.0


@dataclass
class Status:
    code: int
    body: str = '{"error": {"message": "scripted error"}}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Truncated:
    delay: float = 0.0


@dataclass
class Hang:
    seconds: float = 5.0


Action = Reply | Status | Truncated | Hang
STRUCTURED_FIELDS = ("structured_outputs", "guided_choice", "guided_json", "response_format")


def structured_field(body: dict[str, Any]) -> str | None:
    """The structured-output field a request carries, if any."""
    return next((f for f in STRUCTURED_FIELDS if body.get(f) is not None), None)


def _constrain(field_name: str, spec: Any, text: str) -> str:
    """``text`` held to the constraint ``spec`` of ``field_name``."""
    choices = None
    if field_name == "guided_choice":
        choices = list(spec)
    elif field_name == "structured_outputs" and "choice" in spec:
        choices = list(spec["choice"])
    elif field_name == "response_format":
        schema = (spec.get("json_schema") or {}).get("schema") or {}
        enum = ((schema.get("properties") or {}).get("choice") or {}).get("enum")
        if enum is not None:
            return json.dumps({"choice": text.strip() if text.strip() in enum else enum[0]})
    if choices is not None:
        return text.strip() if text.strip() in choices else choices[0]
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "[{":
            try:
                return json.dumps(decoder.raw_decode(text, i)[0], ensure_ascii=False)
            except ValueError:
                continue
    schema = spec.get("json") if field_name == "structured_outputs" else \
        (spec.get("json_schema") or {}).get("schema") if field_name == "response_format" \
        else spec
    return "[]" if (schema or {}).get("type") == "array" else "{}"
Responder = Callable[[dict[str, Any], int], Action]


def prompt_text(body: dict[str, Any]) -> str:
    """All text of the request's messages, joined (the key scripts match on)."""
    out = []
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            out += [p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(out)


def default_responder(latency: float = 0.0) -> Responder:
    """Judge prompts (containing 'Answer:') get ``Answer: 1.0``; others a formatted answer."""
    def respond(body: dict[str, Any], n: int) -> Action:
        text = prompt_text(body)
        if "Answer:" in text or "Answer: " in text:
            return Reply("Answer: 1.0", delay=latency)
        return Reply("<think>looked at the timeline</think> <answer>ok</answer>", delay=latency)
    return respond


def scripted(rules: Sequence[tuple[str, Sequence[Action]]], default: Responder | None = None,
             ) -> Responder:
    """Responder from ``(substring, actions)`` rules: the n-th request whose prompt contains
    ``substring`` gets ``actions[min(n, len - 1)]``; unmatched prompts go to ``default``."""
    default = default or default_responder()

    def respond(body: dict[str, Any], n: int) -> Action:
        text = prompt_text(body)
        for needle, actions in rules:
            if needle in text:
                return actions[min(n, len(actions) - 1)]
        return default(body, n)
    return respond


class _Server(ThreadingHTTPServer):
    # listen backlog: the default 5 drops SYNs when 32 clients connect at once, and each
    # dropped SYN costs the client a 1 s retransmit (real servers use 128-2048)
    request_queue_size = 256
    daemon_threads = True


class FakeLLMServer:
    """Threaded loopback server; use as a context manager or call start()/stop()."""

    def __init__(self, responder: Responder | None = None, *, port: int = 0,
                 model: str = "fake-model", structured: Sequence[str] | None = None):
        self.responder = responder or default_responder()
        self.structured = None if structured is None else set(structured)
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.prompt_counts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def n_requests(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.prompt_counts.clear()
            self.max_in_flight = 0

    def start(self) -> FakeLLMServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body are separate writes: without NODELAY, Nagle + delayed ACK
                # add ~40 ms to every reply
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None,
                      length: int | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                try:
                    self._post()
                except (BrokenPipeError, ConnectionResetError):  # client gone (killed)
                    pass

            def _post(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": "not found"}')
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, b'{"error": "bad json"}')
                    return
                text = prompt_text(body)
                with server._lock:
                    n = server.prompt_counts[text]
                    server.prompt_counts[text] += 1
                    server.requests.append({"body": body, "headers": dict(self.headers),
                                            "time": time.time(), "n": n})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                field_name = structured_field(body)
                if field_name and server.structured is not None \
                        and field_name not in server.structured:
                    with server._lock:
                        server.in_flight -= 1
                    self._send(400, json.dumps({"error": {"message": "Unrecognized request "
                               f"argument supplied: {field_name}"}}).encode())
                    return
                try:
                    self._act(server.responder(body, n), body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _act(self, action: Action, body: dict[str, Any]) -> None:
                if isinstance(action, Hang):
                    time.sleep(action.seconds)
                    action = Reply("too late")
                if getattr(action, "delay", 0):
                    time.sleep(action.delay)
                if isinstance(action, Reply):
                    field_name = structured_field(body)
                    if field_name and server.structured is not None:
                        action = Reply(_constrain(field_name, body[field_name], action.text))
                    payload = {
                        "id": "chatcmpl-fake", "object": "chat.completion",
                        "model": body.get("model", server.model),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": action.text}}],
                        "usage": {"prompt_tokens": len(prompt_text(body)),
                                  "completion_tokens": len(action.text),
                                  "total_tokens": len(prompt_text(body)) + len(action.text)},
                    }
                    self._send(200, json.dumps(payload).encode())
                elif isinstance(action, Status):
                    self._send(action.code, action.body.encode(), action.headers)
                elif isinstance(action, Truncated):
                    self._send(200, b'{"id": "chatcmpl-fake", "choices": [{"mess')
                else:  # pragma: no cover
                    raise TypeError(f"unknown action {action!r}")

        return Handler


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args(argv)
    with FakeLLMServer(default_responder(args.latency), port=args.port) as srv:
        print(f"serving {srv.base_url} (latency {args.latency}s); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
