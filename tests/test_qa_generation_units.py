"""qa_generation building blocks: JSON extraction, verifier, dedup/balance, exports, review."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from evads_kedro.datasets.released_layout import ReleasedLayoutParquetDataset
from evads_kedro.datasets.review_sheet import OptionalReviewCSVDataset
from evads_kedro.pipelines.qa_generation import agents, dedup, export, nodes, verify
from evads_kedro.released_layout import to_arrow
from test_qa_generation_pipeline import JACKET, item, videos_frame

# ------------------------------------------------------------------------------ extraction


@pytest.mark.parametrize("text, n", [
    ('[{"task": "BP", "question": "q"}]', 1),
    ('Sure!\n```json\n[{"question": "a"}, {"question": "b"}]\n```\nDone.', 2),
    ('{"items": [{"question": "a"}]}', 1),
    ('Here: {"task": "RC", "question": "a"} ok', 1),
    ("[]", 0),
    ('note [1] then [{"question": "a"}]', 1),
    ('[{"question": "a", "answer": "b"},]', 1),                                 # trailing comma
    ('[{"question": "a", "answer": "b"}, {"question": "c", "ans', 1),          # cut off
    ('[{"task": "BP", "question": "a"}, {"answer": "b"}, {"quotes": []}]', 1),  # fragments
    ('[{"question": "a", "answer": "b"}, {"answer": "c"}]', 2),  # key clash: not merged
])
def test_extract_items_accepts_common_shapes(text, n):
    assert len(agents.extract_items(text)) == n


@pytest.mark.parametrize("text", ["", "no json here", '[{"question": "a"', "[1, 2]",
                                  '{"foo": 1}'])
def test_extract_items_rejects_malformed(text):
    with pytest.raises(agents.MalformedReply):
        agents.extract_items(text)


def test_persona_prompts_load_with_schema_and_tasks():
    params = {"personas": {"skeptic": {"tasks": ["RC", "CM"]}, "expert": {"enabled": False}}}
    ps = agents.load_personas(params)
    assert [p.name for p in ps] == ["skeptic"]
    assert "RC, CM" in ps[0].system and '"cited_seconds"' in ps[0].system
    assert "全网第一" in ps[0].system
    msgs = agents.build_messages(ps[0], {"video_id": "v", "category": "其他", "duration_s": "9",
                                         "timeline_full": JACKET}, 2)
    assert JACKET in msgs[1]["content"] and "Video id: v" in msgs[1]["content"]


# -------------------------------------------------------------------------------- verifier
INDEX = verify.second_index(JACKET)


def test_normalize_folds_width_space_and_punctuation():
    assert verify.normalize("仅重　２００Ｇ！ ") == verify.normalize("仅重200g")
    assert verify.normalize("是谁突然降温了？") == verify.normalize("是谁 突然降温了?")


@pytest.mark.parametrize("it, reasons", [
    (item("BP", "多重？", "200克", [("ocr", 4, "仅重200g")]), []),
    (item("BP", "多重？", "200克", [("ocr", 3, "仅重200g")]), ["unknown_second:3"]),
    (item("BP", "多重？", "200克", [("asr", 4, "仅重200g")]), ["quote_not_found:asr@4"]),
    (item("BP", "多重？", "200克", [("ocr", 4, "仅重200g")], cited=[4, 99]),
     ["unknown_second:99"]),
    (item("BP", "多重？", "200克", []), ["no_quotes"]),
    (item("CM", "一致吗？", "一致", [("ocr", 4, "仅重200g"), ("ocr", 5, "仅重200g")]),
     ["cm_single_modality"]),
    (item("RC", "违规吗？", "是", []), ["no_quotes", "rc_no_claim_quote"]),
    (item("XX", "q", "a", []), ["schema:task"]),
    ({"task": "BP", "question": "a\nb", "answer": "x", "cited_seconds": [], "quotes": []},
     ["schema:question_multiline"]),
])
def test_check_item_reasons(it, reasons):
    assert verify.check_item(it, INDEX, {"min_quotes": 1, "quote_window_s": 1}) == reasons


def test_answer_length_counts_units_not_characters():
    ok = item("BP", "q", "仅重 two hundred grams " * 5, [("ocr", 4, "仅重200g")])  # 5*(2+3)
    assert verify.check_item(ok, INDEX, {"max_answer_units": 25}) == []
    assert verify.check_item(ok, INDEX, {"max_answer_units": 24}) == ["answer_too_long:25>24"]


# ----------------------------------------------------------------------- dedup and balance
def test_minhash_dedup_is_per_video_and_keeps_the_first():
    qs = [("v1", "这款羽绒服的重量是多少？"), ("v1", "这款羽绒服的重量是多少"),
          ("v2", "这款羽绒服的重量是多少？"), ("v1", "广告的目标人群是谁？")]
    assert dedup.find_duplicates(qs, {"threshold": 0.7}) == {1: 0}
    assert dedup.find_duplicates(qs, {"threshold": 0.7, "scope": "global"}) == {1: 0, 2: 0}


def test_balance_reports_gaps():
    rows = [{"video_id": "v", "task": "BP"}, {"video_id": "v", "task": "BP"},
            {"video_id": "v", "task": "RC"}]
    kept, dropped, gaps = dedup.balance(rows, ["BP", "RC", "CI"], 1, video_ids=["v", "w"])
    assert kept == [0, 2] and list(dropped) == [1]
    assert [(g["video_id"], g["task"]) for g in gaps] == [
        ("v", "CI"), ("w", "BP"), ("w", "RC"), ("w", "CI")]


# --------------------------------------------------------------------------------- export
def _qa() -> pd.DataFrame:
    ctx = nodes.build_contexts(videos_frame(), {})
    first_ocr = {"ad_jacket": "暖阳NUANYANG羽绒服", "ad_cream": "水光面霜 50ml"}
    rows = []
    for c in ctx.to_dict("records"):
        quotes = json.dumps([{"modality": "ocr", "second": 0, "text": first_ocr[c["video_id"]]}],
                            ensure_ascii=False)
        for task in ("BP", "RC"):
            q = f"{c['video_id']} 的{task}问题？"
            rows.append({"question_id": export.question_id(c["video_id"], task, q),
                         "video_id": c["video_id"], "category": c["category"], "task": task,
                         "persona": "expert", "question": q, "answer": "答案", "clues": "线索",
                         "cited_seconds": "[0]", "quotes": quotes,
                         "timeline_full": c["timeline_full"], "timeline_asr": c["timeline_asr"]})
    return pd.DataFrame(rows, columns=export.QA_TABLE_COLUMNS)


def test_question_id_is_stable_and_content_addressed():
    a = export.question_id("ad_jacket", "BP", "多重？")
    assert a == export.question_id("ad_jacket", "BP", "多重？")
    assert a.startswith("ques_") and len(a) == 37
    assert a != export.question_id("ad_jacket", "RC", "多重？")


def test_contexts_derive_the_asr_only_timeline():
    ctx = nodes.build_contexts(videos_frame(), {"max_videos": 1})
    assert list(ctx.video_id) == ["ad_jacket"]
    assert ctx.timeline_asr[0].startswith("Voiceover: Duration: 14s")
    bad = pd.DataFrame([{"video_id": "x", "timeline_full": "garbage", "duration_s": 1}])
    assert nodes.build_contexts(bad, {}).empty


def test_default_split_is_by_video_and_reimports(tmp_path):
    from evads_kedro.pipelines.ingestion.released import import_splits

    qa = _qa()
    sft, rl, review = nodes.export_items(qa, {"rl_fraction": 0.5})
    assert len(sft) == 2 and len(rl) == 2 and len(review) == 4
    assert set(sft.videos).isdisjoint(set(rl.videos))
    for layout, frame in (("sft", sft), ("rl", rl)):
        ds = ReleasedLayoutParquetDataset(str(tmp_path / f"{layout}.parquet"), layout)
        ds.save(frame)
    imp = import_splits([("sft", pd.read_parquet(tmp_path / "sft.parquet")),
                         ("rl", pd.read_parquet(tmp_path / "rl.parquet"))], tmp_path)
    assert imp.errors.empty and imp.counts["imported"] == 4
    assert set(imp.qa.instruction) == {export.OFFICIAL_INSTRUCTION}


def test_export_schema_matches_the_release_column_for_column(tmp_path, evads_data_dir):
    qa = _qa()
    for layout, name in (("sft", "EVAds_SFT.parquet"), ("rl", "EVAds_RL.parquet")):
        frame = export.sft_rows(qa, {}) if layout == "sft" else export.rl_rows(qa, {})
        path = tmp_path / name
        pq.write_table(to_arrow(frame, layout), path)
        ours = pq.read_schema(path).remove_metadata()
        official = pq.read_schema(evads_data_dir / name).remove_metadata()
        assert ours.names == official.names
        assert ours.equals(official), (ours, official)
    # the official row 0 survives a split/join through our layout
    off = pd.read_parquet(evads_data_dir / "EVAds_RL.parquet").iloc[0]
    rl = export.rl_rows(qa, {}).iloc[0]
    assert set(rl["reward_model"]) == set(off["reward_model"])
    assert set(rl["extra_info"]) == set(off["extra_info"])


def test_review_sheet_round_trip_through_csv(tmp_path):
    qa = _qa()
    _, _, sheet = nodes.export_items(qa, {"both_splits": True})
    path = tmp_path / "review.csv"
    sheet.to_csv(path, index=False, encoding="utf-8-sig")
    edited = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    edited.loc[0, "accept"] = "no"
    edited.loc[1, "edit_question"] = "修改后的问题？"
    edited.loc[2, "edit_answer"] = "新答案"
    edited.to_csv(path, index=False, encoding="utf-8-sig")
    review = OptionalReviewCSVDataset(str(path)).load()
    reviewed, log, sft, rl = nodes.apply_review_sheet(qa, review, {}, {"both_splits": True})
    assert list(log.action) == ["rejected", "edited", "edited", "accepted"]
    assert len(reviewed) == 3 and len(sft) == 3 and len(rl) == 3
    assert reviewed.iloc[0].question == "修改后的问题？"
    assert reviewed.iloc[0].question_id == export.question_id(
        reviewed.iloc[0].video_id, reviewed.iloc[0].task, "修改后的问题？")
    assert reviewed.iloc[1].answer == "新答案"
    assert reviewed.iloc[1].question_id == qa.iloc[2].question_id  # answer edit keeps the id
    assert json.loads(reviewed.iloc[2].cited_seconds) == [0]


def test_missing_review_sheet_gives_empty_reviewed_outputs(tmp_path):
    review = OptionalReviewCSVDataset(str(tmp_path / "nope.csv")).load()
    reviewed, log, sft, rl = nodes.apply_review_sheet(_qa(), review, {}, {})
    assert reviewed.empty and sft.empty and rl.empty
    assert set(log.action) == {"missing_from_review"}


def test_review_reverifies_edits_and_reports_rejected_ones(tmp_path):
    qa = _qa()  # rows: jacket BP, jacket RC, cream BP, cream RC
    sheet = export.review_sheet(qa)
    sheet.loc[0, "edit_answer"] = "很长的答案" * 20                         # 100 units > 50
    sheet.loc[1, "edit_quotes"] = json.dumps(                             # not in the timeline
        [{"modality": "ocr", "second": 9, "text": "全网最低价"}], ensure_ascii=False)
    sheet.loc[2, "edit_quotes"] = "[{modality: ocr"                        # not JSON
    sheet.loc[3, "edit_quotes"] = json.dumps(                             # grounded: accepted
        [{"modality": "asr", "second": 3, "text": "一抹就吸收"}], ensure_ascii=False)
    sheet.loc[3, "edit_question"] = "口播如何描述吸收速度？"
    path = tmp_path / "review_edited.csv"
    sheet.to_csv(path, index=False, encoding="utf-8-sig")
    review = OptionalReviewCSVDataset(str(path)).load()
    reviewed, log, sft, rl = nodes.apply_review_sheet(
        qa, review, {"max_answer_units": 50}, {"both_splits": True})
    assert list(log.action) == ["edit_rejected", "edit_rejected", "edit_rejected", "edited"]
    assert log.reason[0] == "answer_too_long:100>50"
    assert log.reason[1] == "quote_not_found:ocr@9;rc_no_claim_quote"
    assert log.reason[2].startswith("schema:edit_quotes")
    assert list(reviewed.question) == ["口播如何描述吸收速度？"]
    assert len(sft) == len(rl) == 1
    assert json.loads(reviewed.quotes.iloc[0])[0]["text"] == "一抹就吸收"
