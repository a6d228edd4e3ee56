"""Issue 17: the official protocol (prompts, scoring parity with the official script's rules),
the EVAds_TEST import (bad rows reported, nothing lost), real task labels, model selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evads_kedro.calls.templates import ANSWER_FIELDS, JUDGE_FIELDS, load_template, render
from evads_kedro.pipelines.evaluation import nodes
from evads_kedro.pipelines.evaluation import protocol as proto
from evads_kedro.pipelines.evaluation import report as rep
from evads_kedro.pipelines.evaluation import test_split as ts
from evads_kedro.scoring import InvalidScore, all_scores, parse_judge_reply
from evads_kedro.taxonomy import task_from_label
from evaluation_data import missing_test_file
from released_rows import official_test_frame


# ------------------------------------------------------------------ official scoring oracle
def official_oracle(replies: list[str]) -> dict[str, object]:
    """The official script's scoring, re-implemented line for line from
    ``evaluation/eval_qwen3vl_8b.py`` (github.com/Tennine2077/E-VAds_Benchmark @ 114d552):
    ``get_llm_judge_score`` takes ``reply.split('Answer:')[-1].split('\\n')[0].strip()`` and
    ``float()``s it (a ValueError is retried, then the score is None); ``score_R3`` is R5 with
    0.75 -> 0.5 and 0.25 -> 0; ``score_R2`` is 1.0 only for R5 == 1.0; the summary prints
    ``Average Score (R5|R3|R2): {mean of the non-null scores:.3f}``."""
    r5s, r3s, r2s = [], [], []
    for reply in replies:
        score_text = reply.split("Answer:")[-1].split("\n")[0].strip()
        try:
            score = float(score_text)
        except ValueError:
            continue  # None in the official results: dropped from every mean
        r5s.append(score)
        r3 = score
        if score == 0.75:
            r3 = 0.5
        if score == 0.25:
            r3 = 0
        r3s.append(r3)
        r2s.append(1.0 if score == 1.0 else 0.0)
    avg = {k: sum(v) / len(v) for k, v in (("R5", r5s), ("R3", r3s), ("R2", r2s))}
    return {"n": len(r5s), **avg,
            "printed": [f"Average Score ({k}): {avg[k]:.3f}" for k in ("R5", "R3", "R2")]}


# legal replies in the spellings a judge produces, and replies with no score at all
REPLIES = ["Answer: 1.0", "Answer: 0.75", "Answer: 0.5", "Answer: 0.25", "Answer: 0",
           "Answer: 1", "Answer:0.75", "Answer: 0.5\n", "I cannot grade this", "Answer: ",
           "Answer: 0.75", "Answer: 1.0", "Answer: 0.25"]


def _our_items(replies: list[str]) -> pd.DataFrame:
    rows = []
    for i, reply in enumerate(replies):
        try:
            r5, status = parse_judge_reply(reply), "ok"
        except InvalidScore:
            r5, status = None, "invalid"
        sc = all_scores(r5) if r5 is not None else {}
        rows.append({"model": "m", "question_id": f"q{i}", "video_id": f"v{i // 5}",
                     "sample_index": 0, "task": "BP", "dimension_slug": "perception",
                     "category_slug": "apparel", "ques_categories": "BP",
                     "judge_status": status, "r5": np.nan if r5 is None else r5,
                     **{k: sc.get(k, np.nan) for k in ("r3", "s", "mg")}})
    return pd.DataFrame(rows)


def test_scoring_parity_with_the_official_script_rules():
    oracle = official_oracle(REPLIES)
    table = rep.breakdown(_our_items(REPLIES), n_boot=0)
    overall = table[table["group_by"] == "overall"].iloc[0]
    assert overall["n"] == oracle["n"] == 11
    assert overall["n_invalid"] == 2  # we count what the official script drops silently
    for ours, theirs in (("r5", "R5"), ("r3", "R3"), ("r2", "R2")):
        assert overall[ours] == pytest.approx(oracle[theirs], abs=1e-12)
    printed = [f"Average Score ({k}): {overall[c]:.3f}"
               for k, c in (("R5", "r5"), ("R3", "r3"), ("R2", "r2"))]
    assert printed == oracle["printed"]
    qc = table[table["group_by"] == "ques_categories"].iloc[0]
    assert (qc["group"], qc["n"]) == ("BP", 11) and qc["r5"] == overall["r5"]


def test_an_off_scale_number_is_where_we_differ_from_the_official_script():
    """The official script would average "Answer: 0.8" as R5 = 0.8; we count it invalid."""
    assert official_oracle(["Answer: 0.8"])["R5"] == 0.8
    with pytest.raises(InvalidScore):
        parse_judge_reply("Answer: 0.8")


# ------------------------------------------------------------------------ official prompts
def test_official_answer_prompt_and_judge_prompt_are_the_official_text(evads_data_dir):
    t = load_template(proto.PROTOCOLS["official"]["answer_prompt_path"], ANSWER_FIELDS)
    assert render(t, timeline="Voiceover: X", question="Q?") == (
        "Voiceover: X\n\nBy watching the video, you are required to answer a question within "
        "50 words: Question: Q?")
    release = evads_data_dir / "official_judge_prompt.txt"
    path = proto.judge_prompt_path({"official_judge_prompt_path": str(release)})
    assert path == str(release)  # read in place: the repo carries no copy
    ours = load_template(path, JUDGE_FIELDS)
    assert ours == release.read_text(encoding="utf-8").removesuffix("\n")


def test_protocol_defaults_and_explicit_overrides():
    gen = {"prompt_path": None, "max_tokens": None, "temperature": 1.0, "seed": 0}
    s = nodes._model_settings({"backend": {"backend": "openai"}}, gen, {})
    assert s["prompt_path"].endswith("answer_official.txt") and s["max_tokens"] == 1524
    assert s["video"] == "native"
    s = nodes._model_settings({"backend": {"backend": "openai"}}, gen, {"protocol": "ours"})
    assert s["prompt_path"].endswith("answer.txt") and s["video"] == "frames"
    s = nodes._model_settings({"backend": {"backend": "local"}, "max_tokens": 8}, gen, {})
    assert s["video"] == "none" and s["max_tokens"] == 8
    with pytest.raises(FileNotFoundError, match="evads_data_dir"):
        proto.judge_prompt_path({"official_judge_prompt_path": "/nowhere/x.txt"})
    assert proto.judge_prompt_path({"protocol": "ours"}).endswith("judge.txt")
    assert proto.judge_prompt_path({"judge_prompt_path": "x.txt"}) == "x.txt"
    with pytest.raises(ValueError, match="'official'"):
        proto.protocol_name({"protocol": "paper"})


@pytest.mark.parametrize("text,judged", [
    ("<think>t</think> <answer> 99元 </answer>", "99元"),
    ("<answer>first</answer><answer>second</answer>", "first"),
    ("no tags at all ", "no tags at all"),
    ("<answer>unclosed", "<answer>unclosed"),
])
def test_judged_text_is_cut_to_the_answer_tags_only_when_both_are_present(text, judged):
    assert proto.judged_text(text) == judged


def test_models_by_name_override_enabled_flags():
    table = {"a": {"enabled": False, "backend": {}}, "b": {"backend": {}},
             "c": {"enabled": True, "backend": {"adapter_dir": "x"}}}
    assert list(nodes._enabled_models({"models_under_test": table})) == ["b", "c"]
    assert list(nodes._enabled_models({"models_under_test": table, "models": ["a"]})) == ["a"]
    assert list(nodes._enabled_models({"models_under_test": table, "models": "[c,a]"})) == \
        ["c", "a"]
    assert list(nodes._enabled_models({"models_under_test": table, "models": ["a;c"]})) == \
        ["a", "c"]  # what kedro's --params makes of evaluation.models=[a;c]
    with pytest.raises(ValueError, match=r"\['zz'\]"):
        nodes._enabled_models({"models_under_test": table, "models": ["zz"]})


# ------------------------------------------------------------------------- task labels
@pytest.mark.parametrize("label,code", [
    ("BP", "BP"), ("Basic Perception", "BP"), ("basic_perception", "BP"),
    ("Cross-Modal Detection", "CM"), ("营销逻辑", "ML"), ("CI: Consumer Insight", "CI"),
    ("Regulatory Compliance", "RC"), ("合规审查", "RC"), ("something else", None), (None, None),
])
def test_task_labels_in_code_english_and_chinese(label, code):
    assert task_from_label(label) == code


# --------------------------------------------------------------------------- test split
def _roots(tmp_path):
    root = tmp_path / "videos"
    root.mkdir(exist_ok=True)
    return root, [root.resolve()]


def test_test_split_import_keeps_every_row_and_finds_videos(tmp_path):
    frame = official_test_frame(n_videos=2)
    root, roots = _roots(tmp_path)
    vids = list(dict.fromkeys(frame["video_id"]))
    (root / f"{vids[0]}.mkv").write_bytes(b"x")  # the official lookup tries .mkv too
    qa, videos, errors = ts.import_test_split(frame, roots)
    assert len(qa) == len(frame) and errors.empty
    assert (qa["split"] == "test").all()
    assert qa["question"].tolist() == frame["question"].tolist()
    assert qa["timeline_full"].tolist() == frame["asr_ocr_meta"].tolist()
    assert qa["prompt_timeline"].tolist() == frame["asr_input"].tolist()
    assert qa["clues"].tolist() == frame["evidence"].tolist()
    v = videos.set_index("video_id")
    assert v.loc[vids[0], "video_exists"] and v.loc[vids[0], "video_path"].endswith(".mkv")
    assert not v.loc[vids[1], "video_exists"]


def test_test_split_bad_rows_are_reported_with_row_column_and_fix(tmp_path):
    frame = official_test_frame(n_videos=2)
    root, roots = _roots(tmp_path)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "leak.mp4").write_bytes(b"x")
    (root / "linked.mp4").symlink_to(outside / "leak.mp4")
    frame.loc[1, "question"] = None
    frame.loc[2, "ques_categories"] = "Mystery Task"
    frame.loc[5:9, "video_id"] = "../secret/leak"
    frame.loc[3, "ques_id"] = None
    frame.loc[4, "ques_id"] = frame.loc[0, "ques_id"]
    extra = frame.iloc[[0]].assign(ques_id="ques_" + "f" * 32, video_id="linked")
    frame = pd.concat([frame, extra], ignore_index=True)
    qa, videos, errors = ts.import_test_split(frame, roots)
    by = {(r.row, r.column): r for r in errors.itertuples(index=False)}
    assert by[(1, "question")].severity == "warning" and "fill" in by[(1, "question")].reason
    assert "Mystery Task" in by[(2, "ques_categories")].reason
    assert "escape" in by[(5, "video_id")].reason
    assert by[(3, "ques_id")].severity == "error" and "duplicate" in by[(4, "ques_id")].reason
    assert "outside" in by[(10, "video_id")].reason
    # nothing lost: every row is either evaluated or an error row of the report
    n_err = int((errors["severity"] == "error").sum())
    assert len(qa) + n_err == len(frame)
    assert qa.set_index("question_id").loc[frame.loc[2, "ques_id"], "ques_categories"] == \
        "Mystery Task"
    assert not videos.set_index("video_id")["video_exists"].any()


def test_test_split_missing_columns(tmp_path):
    _, roots = _roots(tmp_path)
    frame = official_test_frame(n_videos=1)
    with pytest.raises(ts.TestSplitError, match=r"\['question'\]"):
        ts.import_test_split(frame.drop(columns=["question"]), roots)
    qa, _, errors = ts.import_test_split(frame.drop(columns=["evidence"]), roots)
    assert len(qa) == 5 and (qa["clues"] == "").all()
    assert errors["column"].tolist() == ["evidence"] and "evidence" in errors["reason"][0]


def test_source_falls_back_to_rl_with_a_banner_and_prefers_test(tmp_path):
    from evaluation_data import make_qa, make_videos

    qa = make_qa([["1"] * 5])
    videos = make_videos(qa)
    params = {"subset": {"splits": "auto"}, "video_roots": [str(tmp_path)]}
    src, _, _, info = nodes.build_evaluation_source(qa, videos, missing_test_file(), params)
    assert info["splits"] == ["rl"] and "NOT the test split" in info["banner"]
    assert "training data" in info["banner"]
    test = official_test_frame(n_videos=1)
    src, _, _, info = nodes.build_evaluation_source(qa, videos, test, params)
    assert info["splits"] == ["test"] and info["banner"].startswith("Official E-VAds test")
    assert set(src["split"]) == {"rl", "test"}
    with pytest.raises(ValueError, match="EVAds_TEST.parquet"):
        nodes.build_evaluation_source(qa, videos, missing_test_file(),
                                      {"subset": {"splits": ["test"]}})


def test_given_labels_replace_the_classifier_and_its_accuracy_is_reported(tmp_path):
    frame = official_test_frame(n_videos=2)
    frame.loc[0, "ques_categories"] = "Mystery Task"
    qa, _, _ = ts.import_test_split(frame, _roots(tmp_path)[1])
    labels, report = nodes.classify_tasks(qa, None, None, {"method": "rules"})
    lab = labels.set_index("question_id")
    q0 = frame.loc[0, "ques_id"]
    assert lab.loc[q0, "task_source"] == "given" and pd.isna(lab.loc[q0, "task"])
    assert lab.loc[q0, "ques_categories"] == "Mystery Task"
    g = report["given_labels"]
    assert g["n_given"] == 10 and g["n_mapped"] == 9
    assert g["unknown_spellings"] == {"Mystery Task": 1}
    assert 0.0 <= g["classifier_accuracy_vs_given"] <= 1.0
    assert g["classifier_accuracy_n"] == 9


def test_a_question_id_in_both_released_and_test_rows_keeps_the_test_row(tmp_path):
    from evaluation_data import make_qa, make_videos

    test = official_test_frame(n_videos=1)
    qa = make_qa([["1"] * 5])
    qa.loc[0, "question_id"] = test.loc[0, "ques_id"]
    src, _, _, _ = nodes.build_evaluation_source(qa, make_videos(qa), test,
                                                 {"video_roots": [str(tmp_path)]})
    assert src["question_id"].is_unique and len(src) == 9
    assert src.set_index("question_id").loc[test.loc[0, "ques_id"], "split"] == "test"


def test_video_part_and_processor_kwargs(tmp_path):
    from evads_kedro.backends import video_parts

    clip = tmp_path / "a.MOV"
    clip.write_bytes(b"\x00\x01video")
    part = video_parts.video_url_part(clip)
    assert part == {"type": "video_url",
                    "video_url": {"url": "data:video/quicktime;base64,AAF2aWRlbw=="}}
    msgs = video_parts.with_video([{"role": "system", "content": "s"},
                                   {"role": "user", "content": "question"}], part)
    assert msgs[1]["content"] == [part, {"type": "text", "text": "question"}]
    assert msgs[0]["content"] == "s"
    kw = video_parts.processor_kwargs({"fps": 1.0, "total_pixels": None})
    assert kw == {"fps": 1.0, "max_frames": 768, "max_pixels": 768 * 28 * 28}
    assert video_parts.video_identity(clip)["sha256"] != video_parts.video_identity(
        tmp_path.joinpath("b.mp4") if tmp_path.joinpath("b.mp4").write_bytes(b"other") else
        clip)["sha256"]


def test_native_video_needs_an_endpoint():
    params = {"models_under_test": {"m": {"video": "native", "backend": {
        "backend": "local", "asset": "smollm2"}}}, "generation": {}}
    qs = pd.DataFrame(columns=nodes.QUESTION_COLUMNS)
    with pytest.raises(ValueError, match="video: native"):
        nodes._answer_jobs(qs, params)
