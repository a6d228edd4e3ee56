"""qa_generation on two small ads with a scripted loopback LLM: exactly which items survive and why."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from evads_kedro.paths import project_root

JACKET = "\n".join([
    "Category: 服饰鞋包",
    "Duration: 14s",
    "",
    "[Time-aligned Events]:",
    'Time 0s: OCR Text: [暖阳NUANYANG羽绒服] ; ASR Text: "是谁突然降温了"',
    'Time 1-2s: OCR Text: [暖阳NUANYANG羽绒服 | 是谁突然降温了？] ; ASR Text: "没有衣服穿啊"',
    'Time 4s: OCR Text: [轻薄羽绒服仅重200g] ; ASR Text: "轻薄保暖只有两"',
    'Time 5s: OCR Text: [轻薄羽绒服仅重200g] ; ASR Text: "百克"',
    'Time 9s: OCR Text: [限时¥199买一送一 | 全网销量第一] ; ASR Text: "今天下单买一送一"',
    'Time 12s: ASR Text: "快点击下方链接"',
])
CREAM = "\n".join([
    "Category: 美容彩妆",
    "Duration: 8s",
    "",
    "[Time-aligned Events]:",
    'Time 0s: OCR Text: [水光面霜 50ml] ; ASR Text: "干皮姐妹看过来"',
    'Time 3s: ASR Text: "一抹就吸收"',
])


def videos_frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"video_id": "ad_jacket", "category": "服饰鞋包", "duration_s": 14.0,
         "timeline_full": JACKET, "timeline_asr": None},
        {"video_id": "ad_cream", "category": "美容彩妆", "duration_s": 8.0,
         "timeline_full": CREAM, "timeline_asr": None},
    ])


def item(task, question, answer, quotes, cited=None, clues="见时间线"):
    return {"task": task, "question": question, "answer": answer, "clues": clues,
            "cited_seconds": cited if cited is not None else sorted({q[1] for q in quotes}),
            "quotes": [{"modality": m, "second": s, "text": t} for m, s, t in quotes]}


# persona -> list of items (or a raw string reply) for ad_jacket
JACKET_REPLIES = {
    "expert": [
        item("ML", "视频开头用什么钩子吸引观众，最后如何促成下单？", "以突然降温痛点开场，最后用买一送一限时优惠促单。",
             [("asr", 0, "是谁突然降温了"), ("ocr", 9, "限时¥199买一送一")]),
        # full-width '？' in the timeline vs ASCII '?' here: equal after normalisation
        item("CI", "这条广告主要针对哪类人群的什么痛点？", "怕冷又嫌羽绒服笨重的人，降温没衣服穿的焦虑。",
             [("ocr", 1, "是谁突然降温了?")]),
    ],
    "skeptic": [
        item("RC", "视频中哪句宣传语可能违反广告法的绝对化用语规定？", "“全网销量第一”属于无法证实的绝对化用语。",
             [("ocr", 9, "全网销量第一")]),
        item("CM", "字幕和口播在价格信息上是否一致？", "字幕写限时199买一送一，口播只说买一送一。",
             [("ocr", 9, "限时¥199买一送一")]),                        # one modality only
        item("RC", "视频是否出现了未经证实的销量宣传？", "出现了全网销量第一。",
             [("ocr", 4, "全网销量第一")]),                           # wrong second
    ],
    "consumer": '[{"task": "BP", "question": "羽绒服多重？", "answer": "200克"',  # malformed
    "pragmatist": [
        # full-width digits/letters in the quote: NFKC folds them
        item("BP", "这款羽绒服的重量是多少？", "仅重200克。", [("ocr", 4, "轻薄羽绒服仅重２００ｇ")]),
        item("BP", "羽绒服原价是多少钱？", "原价999元。", [("ocr", 4, "原价999元")]),  # ungrounded
        # ASR quote running on into the next second ("只有两" + "百克")
        item("CM", "当字幕显示仅重200g时，口播如何描述重量？", "口播说轻薄保暖只有两百克，与字幕一致。",
             [("ocr", 4, "仅重200g"), ("asr", 4, "只有两百克")]),
        item("CI", "谁会被只有两百克的卖点打动？", "通勤怕冷的年轻人。",
             [("asr", 4, "轻薄保暖")], cited=[30]),                    # unknown second
    ],
    "creative_director": [
        # near-duplicate of the expert's ML question (punctuation/one char differ)
        item("ML", "视频开头用了什么钩子吸引观众，最后如何促成下单?", "降温痛点开场，买一送一收尾。",
             [("asr", 0, "是谁突然降温了")]),
        item("CI", "广告通过什么情绪打动怕冷的消费者？", "降温焦虑与轻薄不臃肿的向往。",
             [("asr", 1, "没有衣服穿啊")]),                            # surplus CI
        item("BP", "买一送一活动的价格是多少？", "限时199元买一送一，" + "非常划算" * 15,
             [("ocr", 9, "限时¥199买一送一")]),                        # answer too long
    ],
}
CREAM_REPLIES = {
    "consumer": [item("BP", "这款面霜的容量是多少？", "50ml。", [("ocr", 0, "水光面霜 50ml")])],
}

PERSONA_NEEDLES = {
    "consumer": "You are the CONSUMER", "expert": "You are the MARKETING EXPERT",
    "skeptic": "You are the SKEPTIC", "pragmatist": "You are the PRAGMATIST",
    "creative_director": "You are the CREATIVE DIRECTOR",
}

EXPECTED_FINAL = {  # (video, task) -> (persona, item_index)
    ("ad_jacket", "ML"): ("expert", 0),
    ("ad_jacket", "CI"): ("expert", 1),
    ("ad_jacket", "RC"): ("skeptic", 0),
    ("ad_jacket", "BP"): ("pragmatist", 0),
    ("ad_jacket", "CM"): ("pragmatist", 2),
    ("ad_cream", "BP"): ("consumer", 0),
}
EXPECTED_REJECTIONS = {  # (video, persona, item_index) -> (stage, reason prefix)
    ("ad_jacket", "consumer", -1): ("parse", "malformed_json"),
    ("ad_jacket", "skeptic", 1): ("verify", "cm_single_modality"),
    ("ad_jacket", "skeptic", 2): ("verify", "quote_not_found:ocr@4"),
    ("ad_jacket", "pragmatist", 1): ("verify", "quote_not_found:ocr@4"),
    ("ad_jacket", "pragmatist", 3): ("verify", "unknown_second:30"),
    ("ad_jacket", "creative_director", 0): ("dedup", "duplicate_of:expert#0"),
    ("ad_jacket", "creative_director", 1): ("balance", "surplus:CI"),
    ("ad_jacket", "creative_director", 2): ("verify", "answer_too_long"),
}


def responder(body, n):
    from llm_server import Reply, prompt_text

    text = prompt_text(body)
    replies = JACKET_REPLIES if "Video id: ad_jacket" in text else CREAM_REPLIES
    if "You are the CRITIC" in text:
        if "这条广告主要针对哪类人群" in text:
            return Reply('{"verdict": "reject", "reason": "ambiguous audience question"}')
        if "这款羽绒服的重量" in text:
            return Reply("I think it is fine")  # unreadable verdict: item kept
        return Reply('Verdict: {"verdict": "accept", "reason": "grounded"}')
    for persona, needle in PERSONA_NEEDLES.items():
        if needle in text:
            r = replies.get(persona, [])
            if isinstance(r, str):
                return Reply(r)
            return Reply("好的，以下是题目：\n```json\n" + json.dumps(r, ensure_ascii=False) + "\n```")
    return Reply("[]")


def make_params(base_url: str) -> dict:
    import yaml

    p = yaml.safe_load((project_root() / "conf/base/parameters_qa_generation.yml")
                       .read_text(encoding="utf-8"))["qa_generation"]
    p["llm"] = {"backend": "openai", "base_url": base_url, "model": "fake-model",
                "max_retries": 0, "timeout": 10}
    p["max_videos"] = None
    p["items_per_agent"], p["calls_per_agent"] = 2, 1
    p["blind_check"] = {**p["blind_check"], "enabled": False}  # its own tests below
    p["prompt_dir"] = str(project_root() / "conf/base/prompts/qa_generation")
    p["export"] = {**p["export"], "both_splits": True}
    return p


OUTPUTS = [
    "qa_generation_contexts", "qa_generation_captions", "qa_generation_candidates",
    "qa_generation_call_rejections", "qa_generation_verified", "qa_generation_blind_checked",
    "qa_generation_criticised", "qa_generation_items", "qa_generation_rejections",
    "qa_generation_gaps", "qa_generation_metrics", "qa_generation_sft", "qa_generation_rl",
    "qa_generation_review_sheet",
]


def _kept_class():
    from kedro.io import MemoryDataset

    class Kept(MemoryDataset):
        def _release(self) -> None:  # keep intermediate outputs for the assertions
            pass
    return Kept


def run_slice(base_url: str, cache=None, frames=None, **overrides) -> dict:
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from evads_kedro.backends.llm import clear_chat_cache
    from evads_kedro.pipelines.qa_generation import create_pipeline

    clear_chat_cache()
    _Kept = _kept_class()  # noqa: N806
    params = make_params(base_url) | overrides
    ds = {"ingested_videos": MemoryDataset(videos_frame()),
          "params:qa_generation": MemoryDataset(params, copy_mode="deepcopy"),
          # the sub-blocks nodes take (Kedro's catalog adds one per nested key)
          **{f"params:qa_generation.{k}": MemoryDataset(v, copy_mode="deepcopy")
             for k, v in params.items()},
          "qa_generation_cache": MemoryDataset(cache, copy_mode="assign"),
          "frames": MemoryDataset(frames or {}, copy_mode="assign")}
    ds.update({n: _Kept(copy_mode="assign") for n in OUTPUTS})
    catalog = DataCatalog(ds)
    pipe = create_pipeline().only_nodes_with_tags("qa_generation")
    SequentialRunner().run(pipe, catalog)
    return {n: catalog.load(n) for n in OUTPUTS}


@pytest.fixture(scope="module")
def server():
    from llm_server import FakeLLMServer

    with FakeLLMServer(responder) as srv:
        yield srv


@pytest.fixture(scope="module")
def result(server):
    return run_slice(server.base_url)


def test_exactly_the_expected_items_survive(result):
    qa = result["qa_generation_items"]
    verified = result["qa_generation_verified"]
    got = {}
    for r in qa.itertuples():
        match = verified[(verified.video_id == r.video_id) & (verified.question == r.question)]
        assert len(match) == 1
        got[(r.video_id, r.task)] = (match.persona.iloc[0], int(match.item_index.iloc[0]))
    assert got == EXPECTED_FINAL
    assert qa["question_id"].str.fullmatch(r"ques_[0-9a-f]{32}").all()
    assert qa["question_id"].is_unique


def test_every_rejection_is_kept_with_its_reason(result):
    rej = result["qa_generation_rejections"]
    got = {(r.video_id, r.persona, int(r.item_index)): (r.stage, r.reason) for r in rej.itertuples()}
    assert set(got) == set(EXPECTED_REJECTIONS)
    for key, (stage, prefix) in EXPECTED_REJECTIONS.items():
        assert got[key][0] == stage, key
        assert got[key][1].startswith(prefix), (key, got[key])
    # nothing is lost: candidates + failed replies = final + rejected
    n_cand = len(result["qa_generation_candidates"]) + len(result["qa_generation_call_rejections"])
    assert n_cand == len(result["qa_generation_items"]) + len(rej)


def test_gaps_and_metrics(result):
    gaps = result["qa_generation_gaps"]
    assert sorted(zip(gaps.video_id, gaps.task, strict=True)) == [
        ("ad_cream", t) for t in ("CI", "CM", "ML", "RC")]
    m = {k: v["value"] for k, v in result["qa_generation_metrics"].items()}
    assert m["final_items"] == 6 and m["failed_calls"] == 1 and m["gaps"] == 4
    assert m["candidates.pragmatist"] == 4 and m["verify_rate.pragmatist"] == 0.5
    assert m["rejected.verify"] == 5 and m["rejected.dedup"] == 1 and m["rejected.balance"] == 1


def test_exports_reimport_with_the_foundation_importer(result, tmp_path):
    from evads_kedro.pipelines.ingestion.released import import_splits
    from evads_kedro.released_layout import to_arrow

    qa = result["qa_generation_items"].set_index("question_id")
    for split in ("sft", "rl"):  # both_splits: the same items in each file
        path = tmp_path / f"{split}.parquet"
        pq.write_table(to_arrow(result[f"qa_generation_{split}"], split), path)
        imp = import_splits([(split, pd.read_parquet(path))], tmp_path / "videos")
        assert imp.errors.empty, imp.errors.to_dict("records")
        assert imp.counts["imported"] == 6
        for r in imp.qa.itertuples():
            src = qa.loc[r.question_id]
            assert r.video_id == src.video_id and r.question == src.question
            assert r.answer == src.answer
            assert r.timeline_full == src.timeline_full
            assert (r.clues if split == "rl" else r.think) == src.clues
        assert set(imp.videos.video_id) == {"ad_jacket", "ad_cream"}


def test_rerun_is_stable_and_served_from_the_cache(server, result, tmp_path):
    from evads_kedro.calls.cache import JsonlCache

    cache = JsonlCache(tmp_path / "calls.jsonl")
    first = run_slice(server.base_url, cache)
    n = server.n_requests
    second = run_slice(server.base_url, JsonlCache(tmp_path / "calls.jsonl"))
    assert server.n_requests == n  # every call came from the cache
    for out in (first, second):
        assert list(out["qa_generation_items"].question_id) == \
            list(result["qa_generation_items"].question_id)


def test_critic_rejects_with_reason_and_balance_falls_back(server):
    out = run_slice(server.base_url, critic={"enabled": True, "on_error": "keep"})
    rej = out["qa_generation_rejections"]
    critic = rej[rej.stage == "critic"]
    assert list(critic.persona) == ["expert"] and list(critic.item_index) == [1]
    assert critic.reason.iloc[0] == "critic:ambiguous audience question"
    verified = out["qa_generation_verified"]
    qa = out["qa_generation_items"]
    ci = qa[(qa.video_id == "ad_jacket") & (qa.task == "CI")].question.iloc[0]
    assert verified[verified.question == ci].persona.iloc[0] == "creative_director"
    assert "这款羽绒服的重量是多少？" in set(qa.question)  # unreadable verdict -> kept
    assert len(qa) == 6
