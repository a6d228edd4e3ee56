"""Bad official test split input (issue 17): a missing column, a null question, a ``video_id``
that escapes the video roots, an unknown ``ques_categories`` spelling, a non-numeric judge reply.
Each gets a message naming the row (or column) and the fix, the batch goes on, nothing is lost.
Also the table itself: a declared kind that records nothing is listed as not handled."""

from __future__ import annotations

import pandas as pd
import pytest
from rel_table import KindOutcome, expected_kinds, report_lines

from evads_kedro.calls.cache import JsonlCache
from evads_kedro.pipelines.evaluation import nodes
from evads_kedro.pipelines.evaluation import test_split as ts
from evaluation_data import eval_params
from llm_server import FakeLLMServer, Reply, prompt_text
from released_rows import official_test_frame

PIPE = "evaluation"


def _import(frame, tmp_path):
    root = tmp_path / "videos"
    root.mkdir(exist_ok=True)
    return ts.import_test_split(frame, [root.resolve()])


def _accounted(frame, qa, errors) -> int:
    """Rows of ``frame`` neither evaluated nor reported (lost)."""
    kept = set(qa["source_row"])
    reported = set(errors.loc[errors["severity"] == "error", "row"])
    return sum(i not in kept and i not in reported for i in range(len(frame)))


@pytest.mark.kinds(PIPE, "test parquet: missing column")
def test_missing_columns_are_named(tmp_path, outcome):
    frame = official_test_frame(n_videos=1)
    handled = 0
    try:
        _import(frame.drop(columns=["ques_id"]), tmp_path)
    except ts.TestSplitError as exc:
        handled += "['ques_id']" in str(exc) and "Re-download" in str(exc)
    qa, _, errors = _import(frame.drop(columns=["ques_categories"]), tmp_path)
    handled += (len(qa) == 5 and errors["column"].tolist() == ["ques_categories"]
                and "task rules" in errors["reason"].iloc[0])
    outcome.record("test parquet: missing column", PIPE, tried=2, handled=handled,
                   lost=5 - len(qa))
    assert handled == 2


@pytest.mark.kinds(PIPE, "test row: null question", "test row: video_id escaping the video roots",
                   "test row: unknown ques_categories spelling")
def test_bad_rows_are_reported_and_kept(tmp_path, outcome):
    frame = official_test_frame(n_videos=3)
    bad = {"test row: null question": ([1, 6], "question", "fill the row's question"),
           "test row: video_id escaping the video roots": ([10, 11, 12, 13, 14], "video_id",
                                                            "escape evaluation.video_roots"),
           "test row: unknown ques_categories spelling": ([2], "ques_categories",
                                                          "add the spelling")}
    frame.loc[[1, 6], "question"] = None
    frame.loc[10:14, "video_id"] = "../../etc/passwd"
    frame.loc[2, "ques_categories"] = "品牌认知"
    qa, videos, errors = _import(frame, tmp_path)
    lost = _accounted(frame, qa, errors)
    kept = set(qa["source_row"])
    for kind, (rows, column, fix) in bad.items():
        e = errors[(errors["column"] == column) & errors["reason"].str.contains(fix)]
        if column == "video_id":  # reported once per video, every question of it kept
            reported = set(frame.loc[list(e["row"]), "video_id"])
            handled = sum(frame.loc[r, "video_id"] in reported and r in kept for r in rows)
        else:
            handled = sum(r in set(e["row"]) and r in kept for r in rows)
        outcome.record(kind, PIPE, tried=len(rows), handled=handled, lost=lost)
        assert handled == len(rows), (kind, errors.to_dict("records"))
    assert lost == 0 and len(qa) == len(frame)
    assert not videos["video_exists"].any()


@pytest.mark.kinds(PIPE, "judge: non-numeric reply")
def test_non_numeric_judge_reply_is_invalid_and_the_batch_goes_on(tmp_path, outcome):
    frame = official_test_frame(n_videos=1)
    qa, videos, _ = _import(frame, tmp_path)
    labels, _ = nodes.classify_tasks(qa, None, None, {"method": "rules"})
    qs = nodes.select_questions(qa, labels, videos, {"subset": {"splits": ["test"]}})
    nonnum = set(frame["question"].iloc[[0, 3]])

    def respond(body, n):
        text = prompt_text(body)
        if "[Model Output]" in text:
            q = text.split("1. [Question]: ")[1].split("\n2. [Metadata")[0]
            return Reply("Quite good overall." if q in nonnum else "Answer: 0.5")
        return Reply("<answer>ok</answer>")

    with FakeLLMServer(respond) as srv:
        # the release's judge prompt is read in place; its input block is what matters here
        official = tmp_path / "official_judge_prompt.txt"
        official.write_text("1. [Question]: {question}\n2. [Metadata (OCR/ASR)]: {metadata}\n"
                            "3. [Clues]: {clues}\n4. [Reference Answer]: {reference_answer}\n"
                            "5. [Model Output]: {model_output}\n", encoding="utf-8")
        params = eval_params(srv.base_url, protocol="official", judge_prompt_path=None,
                             official_judge_prompt_path=str(official))
        params["generation"]["prompt_path"] = None
        params["judge"]["invalid_retries"] = 1
        answers = nodes.generate_answers(qs, JsonlCache(tmp_path / "a.jsonl"), params)
        judgements = nodes.judge_answers(qs, answers, JsonlCache(tmp_path / "j.jsonl"), params)
    j = judgements.merge(qs[["question_id", "question"]], on="question_id")
    bad = j[j["question"].isin(nonnum)]
    handled = int(((bad["judge_status"] == "invalid")
                   & bad["error"].str.contains("no 'Answer: <score>' line")
                   & (bad["attempts"] == 2)).sum())
    lost = len(qs) - len(judgements)
    outcome.record("judge: non-numeric reply", PIPE, tried=len(nonnum), handled=handled,
                   lost=lost)
    assert handled == 2 and lost == 0
    assert (j.loc[~j["question"].isin(nonnum), "r5"] == 0.5).all()


class _Item:
    def __init__(self, marks, params=None):
        self._marks = marks
        if params is not None:
            self.callspec = type("C", (), {"params": params})()

    def iter_markers(self, name):
        return [m for m in self._marks if m.name == name]


def test_the_table_lists_a_kind_that_recorded_nothing_as_not_handled():
    items = [_Item([pytest.mark.kinds(PIPE, "kind a").mark]),
             _Item([pytest.mark.kinds(PIPE, param="kind").mark], {"kind": "kind b"}),
             _Item([pytest.mark.kinds("ingestion", param="kind").mark],
                   {"kind": "control: good videos"})]
    expected = expected_kinds(items)
    assert expected == [("kind a", PIPE), ("kind b", PIPE)]
    recorded = {("kind a", PIPE): KindOutcome(PIPE, tried=3, handled=3)}
    lines = report_lines(recorded, expected)
    assert any(line.startswith("kind a ") and line.split()[-3:] == ["3", "3", "0"]
               for line in lines)
    row_b = next(line for line in lines if line.startswith("kind b"))
    assert "NOT RECORDED" in row_b and row_b.split()[-3:] == ["1", "0", "0"]
    assert lines[-1] == ('{"kinds": 2, "tried": 4, "handled": 3, "lost": 0, '
                         '"unrecorded": 1}')
    # everything recorded: no unrecorded row
    recorded[("kind b", PIPE)] = KindOutcome(PIPE, tried=1, handled=1)
    assert '"unrecorded": 0' in report_lines(recorded, expected)[-1]
    assert pd.Series(report_lines(recorded, expected)).str.contains("NOT RECORDED").sum() == 0
