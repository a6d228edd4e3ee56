"""An extractive *timeline* baseline behind an OpenAI-compatible endpoint on 127.0.0.1.

No model: for each answer prompt (conf/base/prompts/evaluation/answer.txt) it cuts the
``Time Ns:`` lines of the timeline into 3-second windows, keeps the window whose OCR/ASR text
shares the most tokens with the question, and answers with that text (deduplicated, ~50
tokens). A floor any model should beat, used by scripts/screenshots.sh so the report shows a
spread of scores next to the packaged SmolLM2 smoke baselines.

    python scripts/extractive_baseline.py -- CMD ARGS...   # serve while CMD runs; the URL is
                                                            # exported as EVADS_BASELINE_BASE_URL
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "extractive-timeline-baseline"
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[A-Za-z0-9]+")
_LINE = re.compile(r"^Time (\d+)s:(.*)$", re.M)
_TEXT = re.compile(r"\[([^\]]*)\]|\"([^\"]*)\"")


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def answer(prompt: str, window: int = 3, max_tokens: int = 50) -> str:
    """The timeline window that best overlaps the question, as a short answer."""
    question = prompt.rsplit("Question:", 1)[-1].split("\n", 1)[0]
    texts: list[str] = []
    for _, rest in _LINE.findall(prompt):
        parts = [p for a, b in _TEXT.findall(rest) for p in (a or b).split(" | ") if p.strip()]
        texts.append(" ".join(dict.fromkeys(parts)))
    if not texts:
        return "<answer>unknown</answer>"
    q = Counter(_tokens(question))
    best, best_score = "", -1
    for i in range(len(texts)):
        chunk = " ".join(dict.fromkeys(" ".join(texts[i:i + window]).split()))
        score = sum((Counter(_tokens(chunk)) & q).values())
        if score > best_score:
            best, best_score = chunk, score
    kept, n = [], 0
    for word in best.split():
        n += len(_tokens(word))
        if n > max_tokens:
            break
        kept.append(word)
    return f"<think>timeline window with the most question tokens</think> <answer>{' '.join(kept)}</answer>"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        prompt = "\n".join(m["content"] if isinstance(m["content"], str) else
                           " ".join(p.get("text", "") for p in m["content"])
                           for m in body.get("messages", []))
        text = answer(prompt)
        out = json.dumps({"id": "x", "object": "chat.completion", "model": MODEL,
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": text}}],
                          "usage": {"prompt_tokens": 0, "completion_tokens": 0}},
                         ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__)
        return 2
    command = argv[argv.index("--") + 1:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    print(f"extractive timeline baseline at {url}", flush=True)
    try:
        return subprocess.call(command, env={**os.environ, "EVADS_BASELINE_BASE_URL": url})
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
