"""A SMOKE judge: an OpenAI-compatible chat endpoint on 127.0.0.1 that scores by text overlap.

It is **not** a judge of quality. It exists so ``make train-smoke`` and the tests exercise the
real judge path (HTTP client, retries, cache, reply parsing) without a model: it reads the
reference and the model output out of the rendered judge prompt, computes a token-overlap F1
(one token per CJK character or ``[A-Za-z0-9]+`` run) and replies ``Answer: <R5>`` with the
F1 bucketed onto the five legal values. Deterministic, stdlib only.

CLI::

    python -m evads_kedro.pipelines.rl_training.smoke_judge                 # serve until Ctrl-C
    python -m evads_kedro.pipelines.rl_training.smoke_judge -- CMD ARGS...  # serve while CMD runs

With a command, the server listens on a free port, ``EVADS_JUDGE_BASE_URL`` is exported to the
command (``http://127.0.0.1:<port>/v1``) and the command's exit code is returned.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_NAME = "smoke-overlap-judge"
BASE_URL_ENV = "EVADS_JUDGE_BASE_URL"

_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[A-Za-z0-9]+")
# Section labels of judge prompts (the official one: "4. [Reference Answer]: ..."; ours:
# "Reference answer:" on its own line). A section runs to the next known label at a line start.
REFERENCE_NAMES = ("Reference Answer",)
OUTPUT_NAMES = ("Model Output", "Answer to grade", "Model Answer", "Candidate Answer")
_ALL_LABELS = (
    "Question", "Metadata", "Time-aligned OCR/ASR record", "Clues", "Evidence",
    *REFERENCE_NAMES, *OUTPUT_NAMES, "Reply with", "Output Template", "Constraints",
)
_LABEL_AT_LINE = r"^[ \t]*(?:\d+\.[ \t]*)?(?:#+[ \t]*)?\[?(?:{names})\b[^\n:：]*?\]?[ \t]*[:：]?"
# F1 thresholds -> R5 (arbitrary and lenient, so a few-step tiny model already sees every
# level): >= .4 -> 1, >= .25 -> .75, >= .15 -> .5, >= .08 -> .25, else 0. CLI: --thresholds.
THRESHOLDS: tuple[tuple[float, float], ...] = ((0.4, 1.0), (0.25, 0.75), (0.15, 0.5), (0.08, 0.25))


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text or "")]


def overlap_f1(output: str, reference: str) -> float:
    """Bag-of-tokens F1 between ``output`` and ``reference``."""
    a, b = Counter(tokens(output)), Counter(tokens(reference))
    common = sum((a & b).values())
    if not common:
        return 0.0
    p, r = common / sum(a.values()), common / sum(b.values())
    return 2 * p * r / (p + r)


def r5_from_f1(f1: float, thresholds: Sequence[tuple[float, float]] = THRESHOLDS) -> float:
    for threshold, value in thresholds:
        if f1 >= threshold:
            return value
    return 0.0


def _section(prompt: str, names: Sequence[str]) -> str | None:
    label = re.compile(_LABEL_AT_LINE.format(names="|".join(map(re.escape, names))),
                       re.IGNORECASE | re.MULTILINE)
    any_label = re.compile(_LABEL_AT_LINE.format(names="|".join(map(re.escape, _ALL_LABELS))),
                           re.IGNORECASE | re.MULTILINE)
    m = label.search(prompt)
    if not m:
        return None
    nxt = any_label.search(prompt, m.end() + 1)
    return prompt[m.end(): nxt.start() if nxt else len(prompt)].strip()


def score_prompt(prompt: str, thresholds: Sequence[tuple[float, float]] = THRESHOLDS
                 ) -> tuple[float, float]:
    """(R5, F1) of a rendered judge prompt; a prompt without both sections scores 0."""
    reference, output = _section(prompt, REFERENCE_NAMES), _section(prompt, OUTPUT_NAMES)
    if reference is None or output is None:
        return 0.0, 0.0
    f1 = overlap_f1(output, reference)
    return r5_from_f1(f1, thresholds), f1


class _Handler(BaseHTTPRequestHandler):
    server: SmokeJudgeServer

    def log_message(self, format, *args):  # noqa: A002 - quiet by default
        pass

    def _send(self, code: int, payload: dict) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model"}]})
        elif self.path.rstrip("/").endswith("/stats"):
            self._send(200, {"requests": self.server.requests})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):  # noqa: N802
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            messages = body["messages"]
            prompt = "\n".join(
                m["content"] if isinstance(m.get("content"), str)
                else "\n".join(p.get("text", "") for p in m.get("content") or [])
                for m in messages if m.get("role") == "user"
            )
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, {"error": {"message": f"bad request: {exc}"}})
            return
        r5, f1 = score_prompt(prompt, self.server.thresholds)
        with self.server.lock:
            self.server.requests += 1
        text = f"Answer: {r5:g}"
        self._send(200, {
            "id": f"smoke-{self.server.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or MODEL_NAME,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": len(tokens(prompt)), "completion_tokens": 3,
                      "total_tokens": len(tokens(prompt)) + 3},
            "smoke": {"f1": round(f1, 4)},
        })


class SmokeJudgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 thresholds: Sequence[tuple[float, float]] = THRESHOLDS):
        super().__init__((host, port), _Handler)
        self.thresholds = tuple(thresholds)
        self.requests = 0
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> SmokeJudgeServer:
        self._thread = threading.Thread(target=self.serve_forever, name="smoke-judge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> SmokeJudgeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = a free port")
    ap.add_argument("--thresholds", default=",".join(f"{t:g}" for t, _ in THRESHOLDS),
                    help="F1 lower bounds of R5 = 1, .75, .5, .25 (comma-separated)")
    args = ap.parse_args(argv)
    bounds = [float(x) for x in args.thresholds.split(",")]
    if len(bounds) != 4 or bounds != sorted(bounds, reverse=True):
        ap.error("--thresholds needs 4 decreasing numbers")
    thresholds = tuple(zip(bounds, (1.0, 0.75, 0.5, 0.25), strict=True))
    with SmokeJudgeServer(args.host, args.port, thresholds) as server:
        print(f"smoke judge (token-overlap, NOT a real judge) at {server.base_url}", flush=True)
        if not command:
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
        env = dict(os.environ, **{BASE_URL_ENV: server.base_url})
        rc = subprocess.call(command, env=env)
        print(f"smoke judge served {server.requests} requests", flush=True)
        return rc


if __name__ == "__main__":
    sys.exit(main())
