"""scripts/extractive_baseline.py (the model-free baseline behind the report screenshot): picks
the timeline window that overlaps the question and serves it OpenAI-style on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from extractive_baseline import answer  # noqa: E402

PROMPT = """Category: 服饰鞋包
Duration: 6s

[Time-aligned Events]:
Time 0s: OCR Text: [冬季骑车] ; ASR Text: "冬季骑车不"
Time 1s: OCR Text: [冬季骑车] ; ASR Text: "想得老寒腿"
Time 2s: OCR Text: [品牌 | 限时优惠] ; ASR Text: "今天下单"
Time 3s: OCR Text: [限时优惠] ; ASR Text: "立减五十"
Time 4s: OCR Text: [内里采用高品质羽绒] ; ASR Text: "用高品质羽"
Time 5s: OCR Text: [和石墨烯材质] ; ASR Text: "绒和石墨烯"

 Question: 这款骑行裤的内里采用了哪两种材质？
You are permitted to gather any relevant clues"""


def test_answers_with_the_window_that_overlaps_the_question():
    out = answer(PROMPT)
    text = out.split("<answer>")[1].split("</answer>")[0]
    assert "内里采用高品质羽绒" in text and "石墨烯" in text
    assert "冬季骑车" not in text and "老寒腿" not in text  # a window far from the question
    assert answer("no timeline here\n Question: 什么？") == "<answer>unknown</answer>"


def test_serves_chat_completions_while_the_command_runs():
    client = (
        "import json, os, urllib.request\n"
        "req = urllib.request.Request(os.environ['EVADS_BASELINE_BASE_URL'] + "
        "'/chat/completions', data=json.dumps({'messages': [{'role': 'user', 'content': "
        f"{PROMPT!r}}}]}}).encode(), headers={{'Content-Type': 'application/json'}})\n"
        "print(json.load(urllib.request.urlopen(req, timeout=10))['choices'][0]['message']"
        "['content'])\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/extractive_baseline.py"), "--",
                           sys.executable, "-c", client], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "<answer>" in proc.stdout and "石墨烯" in proc.stdout
