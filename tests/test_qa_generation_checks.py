"""qa_generation additions: keyframe captions (loopback VL server), blind check (scripted
answers + judge), sentence-embedding dedup (the packaged MiniLM)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from evads_kedro.backends.captions import frame_hash, select_keyframes
from evads_kedro.frames import FrameStack
from evads_kedro.pipelines.qa_generation import dedup
from test_qa_generation_pipeline import make_params, responder, run_slice

# channel values sit mid-bin of the 8-level histogram, so the pixel noise never crosses a bin
COLOURS = {"red": (200, 20, 20), "blue": (20, 40, 200), "green": (20, 180, 50)}


def scene_stack(video_id: str, scenes: list[tuple[str, int]], seed: int = 0) -> FrameStack:
    """Solid-colour scenes (name, n seconds) with mild pixel noise, 1 frame per second."""
    rng = np.random.default_rng(seed)
    frames = []
    for name, n in scenes:
        for _ in range(n):
            base = np.array(COLOURS[name], dtype=np.int16)
            noise = rng.integers(-6, 7, size=(64, 36, 3))
            frames.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return FrameStack(video_id, [float(i) for i in range(len(frames))], frames)


def colour_of(rgb) -> str:
    return min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], rgb,
                                                                       strict=True)))


# ---------------------------------------------------------------------------- keyframes
def test_keyframes_are_scene_changes_capped_by_largest_change():
    stack = scene_stack("v", [("red", 3), ("blue", 4), ("green", 3)])
    assert [k.second for k in select_keyframes(stack, 6)] == [0, 3, 7]
    # frame 7 is half blue, half green: a 0.5 change on each side of it, red->blue is 1.0
    mixed = scene_stack("w", [("red", 3), ("blue", 5), ("green", 2)])
    mixed.frames[7][32:] = mixed.frames[8][32:]
    assert [k.second for k in select_keyframes(mixed, 6)] == [0, 3, 7, 8]
    assert [k.second for k in select_keyframes(mixed, 2)] == [0, 3]
    assert [k.second for k in select_keyframes(mixed, 3)] == [0, 3, 7]
    assert [k.second for k in select_keyframes(mixed, 6, threshold=0.6)] == [0, 3]
    assert select_keyframes(scene_stack("s", [("red", 5)]), 4)[0].second == 0
    assert len(select_keyframes(scene_stack("s", [("red", 5)]), 4)) == 1
    assert frame_hash(stack.frames[0]) != frame_hash(stack.frames[3])


# ------------------------------------------------------------------- captions (loopback)
def vl_responder(body, n):
    """Captions name the frame's dominant colour (decoded from the image part); everything
    else goes to the QA responder."""
    from PIL import Image

    from llm_server import Reply

    parts = body["messages"][-1]["content"]
    if isinstance(parts, list) and any(p.get("type") == "image_url" for p in parts):
        url = next(p for p in parts if p.get("type") == "image_url")["image_url"]["url"]
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        rgb = np.asarray(img).reshape(-1, 3).mean(axis=0)
        return Reply(f"a {colour_of(rgb)} studio scene")
    return responder(body, n)


def test_captions_of_keyframes_reach_every_agent_prompt(tmp_path):
    from evads_kedro.calls.cache import JsonlCache
    from llm_server import FakeLLMServer

    frames = {"ad_jacket": scene_stack("ad_jacket", [("red", 3), ("blue", 4), ("green", 7)]),
              "ad_cream": lambda: scene_stack("ad_cream", [("green", 5), ("red", 3)], seed=1)}
    with FakeLLMServer(vl_responder) as srv:
        caps = {"backend": "openai", "base_url": srv.base_url, "model": "fake-vl",
                "max_retries": 0, "max_keyframes": 3, "scene_threshold": 0.3}
        cache = JsonlCache(tmp_path / "calls.jsonl")
        out = run_slice(srv.base_url, cache, frames=frames, captions=caps)
        image_reqs = [r["body"] for r in srv.requests
                      if isinstance(r["body"]["messages"][-1]["content"], list)]
        n_first = srv.n_requests
        run_slice(srv.base_url, JsonlCache(tmp_path / "calls.jsonl"), frames=frames,
                  captions=caps)
        assert srv.n_requests == n_first  # captions and agent calls all served from the cache

    # the server saw one image part per chosen keyframe, and those frames are the scene starts
    assert len(image_reqs) == 5
    for body in image_reqs:
        parts = body["messages"][-1]["content"]
        assert [p["type"] for p in parts].count("image_url") == 1
        assert parts[-1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    c = out["qa_generation_captions"]
    got = {(r.video_id, r.second): r.caption for r in c.itertuples()}
    assert got == {("ad_jacket", 0): "a red studio scene", ("ad_jacket", 3): "a blue studio scene",
                   ("ad_jacket", 7): "a green studio scene",
                   ("ad_cream", 0): "a green studio scene", ("ad_cream", 5): "a red studio scene"}
    assert c["error"].isna().all()

    agent_prompts = [r["body"]["messages"][1]["content"] for r in srv.requests
                     if r["body"]["messages"][0]["role"] == "system"
                     and "You are the CRITIC" not in r["body"]["messages"][0]["content"]]
    assert len(agent_prompts) == 10
    for p in agent_prompts:
        if "Video id: ad_jacket" in p:
            assert "[0s] a red studio scene\n[3s] a blue studio scene\n[7s] a green studio scene" in p
        else:
            assert "[0s] a green studio scene\n[5s] a red studio scene" in p
    assert len(out["qa_generation_items"]) == 6  # captions add context, not items


def test_no_caption_backend_means_no_caption_calls_and_no_block(tmp_path):
    from llm_server import FakeLLMServer

    frames = {"ad_jacket": scene_stack("ad_jacket", [("red", 3), ("blue", 4)])}
    with FakeLLMServer(vl_responder) as srv:
        out = run_slice(srv.base_url, frames=frames)
        assert out["qa_generation_captions"].empty
        assert not any(isinstance(r["body"]["messages"][-1]["content"], list)
                       for r in srv.requests)
        assert not any("Keyframe captions" in json.dumps(r["body"], ensure_ascii=False)
                       for r in srv.requests)


# ---------------------------------------------------------------------------- blind check
BLIND_ANSWERS = {  # question -> (blind answer, judge grade)
    "这款羽绒服的重量是多少？": ("羽绒服一般重约200克。", "1.0"),          # guessable: rejected
    "视频中哪句宣传语可能违反广告法的绝对化用语规定？": ("不知道。", "0"),    # needs the video
    "这款面霜的容量是多少？": ("50ml。", "Answer: maybe"),               # unreadable: kept
}


def blind_responder(body, n):
    from llm_server import Reply

    text = body["messages"][-1]["content"]
    if isinstance(text, str) and text.startswith("Answer this question about an e-commerce"):
        q = text.split("Question:", 1)[1].strip()
        return Reply(BLIND_ANSWERS.get(q, ("随便猜一个。", ""))[0])
    if isinstance(text, str) and text.startswith("You grade answers"):
        for q, (ans, grade) in BLIND_ANSWERS.items():
            if f"Question:\n{q}\n" in text:
                assert f"Answer to grade:\n{ans}\n" in text
                return Reply(grade if grade.startswith("Answer") else f"Answer: {grade}")
        return Reply("Answer: 0.5")  # other blind answers: partly right, below 0.75
    return responder(body, n)


def test_blind_check_rejects_items_answerable_without_the_video(tmp_path):
    from evads_kedro.calls.cache import JsonlCache
    from llm_server import FakeLLMServer

    with FakeLLMServer(blind_responder) as srv:
        params = make_params(srv.base_url)
        bc = {**params["blind_check"], "enabled": True}
        out = run_slice(srv.base_url, JsonlCache(tmp_path / "c.jsonl"), blind_check=bc)
        blind_prompts = [r for r in srv.requests
                         if str(r["body"]["messages"][-1]["content"]).startswith("Answer this")]
        n = srv.n_requests
        run_slice(srv.base_url, JsonlCache(tmp_path / "c.jsonl"), blind_check=bc)
        assert srv.n_requests == n  # blind answers and judgements are cached too

    checked = out["qa_generation_blind_checked"]
    passed_verify = out["qa_generation_verified"]["status"].eq("verified").sum()
    assert len(blind_prompts) == passed_verify == 8
    for r in blind_prompts:  # the question alone: no timeline, no system prompt
        msg = r["body"]["messages"]
        assert len(msg) == 1 and "Time-aligned" not in msg[0]["content"]
    rej = out["qa_generation_rejections"]
    blind = rej[rej.stage == "blind"]
    assert list(blind.question) == ["这款羽绒服的重量是多少？"]
    assert blind.reason.iloc[0] == "answerable_blind:r5=1>=0.75"
    row = checked[checked.question == "这款羽绒服的重量是多少？"].iloc[0]
    assert row.blind_answer == "羽绒服一般重约200克。" and row.blind_r5 == 1.0
    kept = checked[checked.question == "这款面霜的容量是多少？"].iloc[0]
    assert kept.status == "verified" and kept.blind_r5 is None  # unreadable judge: kept
    qa = out["qa_generation_items"]
    assert "这款羽绒服的重量是多少？" not in set(qa.question)
    assert "视频中哪句宣传语可能违反广告法的绝对化用语规定？" in set(qa.question)
    # BP of the jacket falls back to nothing else verified for BP -> a gap
    gaps = out["qa_generation_gaps"]
    assert ("ad_jacket", "BP") in set(zip(gaps.video_id, gaps.task, strict=True))
    m = {k: v["value"] for k, v in out["qa_generation_metrics"].items()}
    assert m["rejected.blind"] == 1 and m["reason.answerable_blind"] == 1


# -------------------------------------------------------------------- embedding dedup
EN = ["What price does the ad show for the jacket?",
      "How much does the jacket cost in the ad?",       # paraphrase: few shared characters
      "Who is the target audience of the ad?"]


def test_embedding_dedup_catches_an_english_paraphrase_that_minhash_misses():
    qs = [("v", q) for q in EN]
    assert dedup.find_duplicates(qs, {"method": "minhash", "threshold": 0.7}) == {}
    emb = dedup.find_duplicates_detailed(qs, {"method": "embedding",
                                              "embedding_threshold": 0.85})
    assert list(emb) == [1] and emb[1][0] == 0 and emb[1][1].startswith("embedding:")
    both = dedup.find_duplicates(qs + [("v", "what price does the ad show for the jacket")],
                                 {"method": "both", "threshold": 0.7,
                                  "embedding_threshold": 0.85})
    assert both == {1: 0, 3: 0}
    with pytest.raises(ValueError, match="dedup.method"):
        dedup.find_duplicates(qs, {"method": "bert"})


def test_packaged_encoder_does_not_separate_chinese_paraphrases():
    """What is true of the English-only MiniLM on Chinese: a paraphrase and an unrelated
    question score alike, so neither is caught at the default threshold (MinHash stays the
    default for Chinese)."""
    e = dedup.embed(["这款羽绒服有多重？", "这件外套的重量是多少？", "广告的目标人群是谁？"], {})
    para, unrelated = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert para < 0.85 and unrelated < 0.85
    assert abs(para - unrelated) < 0.2


def test_local_image_text_model_captions_keyframes(tmp_path):
    """The local path: a (random, tiny) Qwen2-VL folder behind the same captioner interface."""
    import torch

    from evads_kedro.backends.llm import clear_chat_cache
    from evads_kedro.pipelines.qa_generation import visual
    from evads_kedro.pipelines.rl_training.models import _tiny_tokenizer, build_tiny_vl

    torch.set_num_threads(1)
    tok = _tiny_tokenizer({"tokenizer": "bpe", "vocab_size": 300},
                          ["a red studio scene", "a blue studio scene"] * 50)
    model, proc = build_tiny_vl(tok, {"image_side": 56})
    model.save_pretrained(tmp_path / "vl")
    proc.save_pretrained(tmp_path / "vl")
    clear_chat_cache()
    frames = {"v": scene_stack("v", [("red", 2), ("blue", 2)])}
    params = {"captions": {"backend": "local", "model_dir": str(tmp_path / "vl"),
                           "device": "cpu", "max_tokens": 4, "max_keyframes": 4}}
    rows = visual.caption_rows(["v"], frames, params)
    assert list(rows.second) == [0, 2]
    assert set(rows.model_id) == {"local:vl"}
    # a random (seeded) model writes random tokens, but through the vision path, no errors
    assert rows.error.isna().all() and rows.caption.str.len().gt(0).all()
