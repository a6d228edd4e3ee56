"""Hand-made released-QA tables and scripted model/judge behaviour for the evaluation tests.

Every question carries a marker ``[Sx]`` understood by :func:`scripted_responder`: the model
under test answers ``<answer>token=x</answer>`` and the judge, seeing ``token=x`` in the judged
text, replies ``Answer: x`` (legal scores) or a scripted malformed reply (``bad`` → "Answer:
0.8", ``frac`` → "Answer: 1.0/1", ``empty`` → "Answer: "); ``fail`` makes the model call fail
with HTTP 400 (not retried).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from evads_kedro.timeline import parse_timeline
from llm_server import Reply, Status, prompt_text

FULL = (
    "Category: {cat}\nDuration: 6s\n\n[Time-aligned Events]:\n"
    "Time 0s: OCR Text: [全网第一 | 限时特价99元] ; ASR Text: \"姐妹们看这件\"\n"
    "Time 1-2s: ASR Text: \"真的很保暖\"\n"
    "Time 3s: OCR Text: [纯棉面料]\n"
)
# One question per task, worded like the release (the rule classifier must get them right).
QUESTIONS = {
    "BP": "视频字幕中显示的产品价格是多少？[S{}]",
    "CM": "当ASR提到“真的很保暖”时，画面中模特穿的衣服是什么颜色？[S{}]",
    "ML": "视频如何利用价格锚点与痛点场景驱动转化？[S{}]",
    "CI": "视频锁定哪类核心受众，试图满足其何种需求？[S{}]",
    "RC": "视频宣称“全网第一”是否属于违规虚假宣传？[S{}]",
}
LEGAL = {"0": "0", "0.25": "0.25", "0.5": "0.5", "0.75": "0.75", "1": "1.0"}
MALFORMED = {"bad": "Answer: 0.8", "frac": "Answer: 1.0/1", "empty": "Answer: "}


def make_qa(markers: list[list[str]], categories: list[str] | None = None,
            split: str = "rl") -> pd.DataFrame:
    """``released_qa``-shaped table: video i has 5 questions (BP..RC) with markers[i]."""
    categories = categories or ["服饰鞋包", "美容彩妆", "家用电器", "母婴玩具 & 宠物"]
    rows = []
    for i, marks in enumerate(markers):
        cat = categories[i % len(categories)]
        full = FULL.format(cat=cat)
        asr = parse_timeline(full).to_asr_only().render()
        for j, (task, q) in enumerate(QUESTIONS.items()):
            qid = f"ques_{i:016x}{j:016x}"
            rows.append({
                "question_id": qid, "video_id": f"v{i}", "split": split, "category": cat,
                "task": None, "question": q.format(marks[j]), "answer": f"参考答案{task}",
                "think": None, "clues": f"线索{task}", "ground_truth": f"参考答案{task}",
                "instruction": "x", "prompt": "x", "prompt_timeline": asr,
                "timeline_full": full, "source_row": len(rows),
            })
    return pd.DataFrame(rows)


def make_videos(qa: pd.DataFrame) -> pd.DataFrame:
    v = qa.drop_duplicates("video_id")
    return pd.DataFrame({"video_id": v["video_id"], "video_path": "/nonexistent/x.mp4",
                         "video_exists": False})


def missing_test_file() -> pd.DataFrame:
    """What ``evaluation_test_raw`` loads when EVAds_TEST.parquet is absent."""
    frame = pd.DataFrame()
    frame.attrs["missing_file"] = "/nowhere/EVAds_TEST.parquet"
    return frame


_MARK = re.compile(r"\[S([a-z0-9.]+)\]")
_TOKEN = re.compile(r"token=([a-z0-9.]+)")


def scripted_responder(latency: float = 0.0):
    def respond(body: dict[str, Any], n: int):
        text = prompt_text(body)
        if "Answer to grade" in text or "[Model Output]" in text:  # our / official judge
            judged = text.split("Answer to grade:")[-1] if "Answer to grade" in text else \
                text.split("5. [Model Output]:")[-1]
            m = _TOKEN.search(judged)
            tok = m.group(1) if m else "none"
            if tok in LEGAL:
                return Reply(f"Answer: {LEGAL[tok]}", delay=latency)
            return Reply(MALFORMED.get(tok, "I cannot grade this"), delay=latency)
        m = _MARK.search(text)
        tok = m.group(1) if m else "none"
        if tok == "fail":
            return Status(400, body='{"error": "scripted client error"}')
        return Reply(f"<think>reasoning about {tok}</think> <answer>token={tok}</answer>",
                     delay=latency)
    return respond


def eval_params(base_url: str, **over: Any) -> dict[str, Any]:
    """Evaluation parameters: one endpoint model under test, the endpoint judge."""
    backend = {"backend": "openai", "base_url": base_url, "model": "fake-model",
               "api_key_env": None, "concurrency": 4, "backoff_base": 0.01, "backoff_max": 0.02,
               "timeout": 5, "max_retries": 2}
    params: dict[str, Any] = {
        "subset": {"splits": ["rl"], "max_questions": None, "seed": 0},
        "task_classifier": {"method": "rules", "assign_per_video": True},
        "frames_dir": None,
        "progress": False,
        "cache_failures": False,
        "generation": {"prompt_path": "conf/base/prompts/evaluation/answer.txt",
                       "video_token": "", "temperature": 1.0, "seed": 0, "n_samples": 1,
                       "max_tokens": 64, "n_frames": 2, "max_side": 64},
        "models_under_test": {"endpoint": {"timeline": "asr_only", "video": "none",
                                           "concurrency": 4, "backend": backend}},
        "judge_prompt_path": "conf/base/prompts/evaluation/judge.txt",
        "judge": {"backend": {**backend, "model": "fake-judge"}, "smoke_test": False,
                  "temperature": 0.0, "seed": 42, "max_tokens": 16, "invalid_retries": 2,
                  "concurrency": 4},
        "report": {"bootstrap": 200, "level": 0.95, "seed": 0},
        # the judge check adds its own judge calls; tests of it turn it on (its own tests:
        # test_evaluation_judge_probes.py, the HTML report's kedro run)
        "judge_probes": {"enabled": False},
    }
    for k, v in over.items():
        params[k] = v
    return params


def build_tiny_lm(d):
    """A random 2-layer Llama (hidden 64) + a tiny byte-level BPE tokenizer saved in ``d``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|pad|>", "<|eos|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["<think>a</think> <answer>b</answer> Answer: 1.0 视频 问题"] * 10,
                            trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>",
                                   pad_token="<|pad|>")
    fast.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                          "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    fast.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=4096, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d
