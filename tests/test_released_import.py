"""The released-data importer: tidy tables, and every bad row reported with its reason."""

import pandas as pd
import pytest

from evads_kedro.pipelines.ingestion.released import (
    ReleasedRowError,
    import_splits,
    resolve_video_path,
)
from released_rows import frame, rl_row, sft_row


def test_good_rows_become_tidy_tables(tmp_path):
    (tmp_path / "7.mp4").write_bytes(b"x")
    res = import_splits([("sft", frame([sft_row()])), ("rl", frame([rl_row()]))], tmp_path)
    assert res.errors.empty, res.errors
    assert res.counts == {"rows": 2, "imported": 2, "errors": 0, "warnings": 0}
    v = res.videos.iloc[0]
    assert (v.video_id, v.category, v.duration_s, v.splits, v.n_questions, bool(v.video_exists)) == (
        "7", "服饰鞋包", 6.0, "rl,sft", 2, True)
    # Range 1-2s expands to one row per second; seconds without events have no row.
    assert res.timelines["second"].tolist() == [0, 1, 2, 3]
    assert list(res.timelines.iloc[1]["ocr"]) == ["限时特价", "¥99"]
    qa = res.qa.set_index("split")
    assert qa.loc["sft", "answer"] == "99元" and qa.loc["sft", "think"] == "字幕显示¥99"
    assert qa.loc["rl", "clues"] == "开头降温场景" and qa.loc["rl", "answer"] == "怕冷的上班族"
    assert qa.loc["rl", "question"] == "谁是目标人群？"
    assert qa.loc["rl", "timeline_full"] == qa.loc["sft", "timeline_full"]


def _broken(mutate, maker=sft_row):
    row = maker()
    mutate(row)
    return row


BAD_ROWS = {
    "missing id": (_broken(lambda r: r["extra_info"].pop("id")), "extra_info.id"),
    "bad id": (_broken(lambda r: r["extra_info"].update(id="q1")), "ques_<32 hex>"),
    "escaping path": (sft_row(video="../../outside/secret.txt"), "escapes the video root"),
    "absolute path": (sft_row(video="/etc/passwd"), "absolute"),
    "empty prompt": (_broken(lambda r: r["prompt"][0].update(content="")), "empty"),
    "non-string prompt": (_broken(lambda r: r["prompt"][0].update(content=42)), "must be a string"),
    "no timeline": (_broken(lambda r: r["prompt"][0].update(content="<video>hello?\n\nbye")), ""),
    "bad answer": (_broken(lambda r: r.update(answer="just text")), "answer"),
    "missing verifier": (_broken(lambda r: r["reward_model"].pop("verifier"), rl_row), "verifier"),
    "bad meta_info": (_broken(lambda r: r["reward_model"]["verifier"][0].update(meta_info="nonsense"),
                              rl_row), ""),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_rows_are_reported_not_dropped(kind, tmp_path):
    bad, needle = BAD_ROWS[kind]
    split = "rl" if "reward_model" in bad else "sft"
    good = sft_row(qid="ques_" + "c" * 32) if split == "sft" else rl_row(qid="ques_" + "c" * 32)
    res = import_splits([(split, frame([good, bad]))], tmp_path)
    assert len(res.qa) == 1, "the good row must survive the bad one"
    assert len(res.errors) == 1
    err = res.errors.iloc[0]
    assert (err.split, err.row, err.severity) == (split, 1, "error")
    assert needle in err.reason


def test_missing_columns_and_missing_file_are_reported(tmp_path):
    no_cols = pd.DataFrame({"videos": ["../videos/1.mp4"]})
    missing = pd.DataFrame()
    missing.attrs["missing_file"] = "/nowhere/EVAds_RL.parquet"
    res = import_splits([("sft", no_cols), ("rl", missing)], tmp_path)
    reasons = res.errors.set_index("split")["reason"]
    assert "missing columns" in reasons["sft"] and "not found" in reasons["rl"]
    assert res.qa.empty and res.videos.empty


def test_duplicate_question_ids_keep_first(tmp_path):
    res = import_splits([("sft", frame([sft_row(), sft_row(question="另一个问题？")]))], tmp_path)
    assert len(res.qa) == 1 and res.qa.iloc[0].question == "价格是多少？"
    assert "duplicate question id" in res.errors.iloc[0].reason


@pytest.mark.parametrize("raw,expected", [("../videos/698.mp4", "698.mp4"), ("videos/a/b.mp4", "a/b.mp4"),
                                          ("x.mp4", "x.mp4")])
def test_video_paths_resolve_under_root(raw, expected, tmp_path):
    assert resolve_video_path(raw, tmp_path) == (tmp_path / expected).resolve()


@pytest.mark.parametrize("raw", ["../../outside/secret.txt", "/abs/x.mp4", "../videos/../../x.mp4",
                                 "C:\\x.mp4", "", "../videos/", "a/\x00.mp4"])
def test_video_paths_that_escape_are_refused(raw, tmp_path):
    with pytest.raises(ReleasedRowError):
        resolve_video_path(raw, tmp_path)


def test_symlink_out_of_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    with pytest.raises(ReleasedRowError, match="outside the video root"):
        resolve_video_path("../videos/link.mp4", root)
