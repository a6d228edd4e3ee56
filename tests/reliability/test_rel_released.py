"""Bad released-parquet rows through ``kedro run --pipelines ingestion --tags released`` (real
parquet files on disk, the catalog's OptionalParquetDataset, the importer node): every bad row
lands in ``released_import_errors.csv`` with its split, row number, question id and a specific
reason; the good rows of the same files are all imported. Row shapes a parquet file cannot hold
(mixed types in one column) go through the importer function itself.
"""

from __future__ import annotations

import copy
import re

import pandas as pd
import pytest

from evads_kedro.pipelines.ingestion.released import import_splits
from released_rows import FULL, INSTRUCTION, frame, rl_row, sft_row

SECRET = "OUTSIDE-SECRET-0b1d"


def _qid(n: int) -> str:
    return f"ques_{n:032x}"


def _with_timeline(row: dict, timeline: str) -> dict:
    row["prompt"][0]["content"] = "<video>" + timeline + "\n价格是多少？\n\n" + INSTRUCTION
    return row


def _mut(row: dict, fn) -> dict:
    fn(row)
    return row


# kind -> list of (split, row, reason regex)
SFT_BAD = {
    "row: empty prompt": [
        _mut(sft_row(qid=_qid(101)), lambda r: r["prompt"][0].update(content="")),
        _mut(sft_row(qid=_qid(102)), lambda r: r["prompt"][0].update(content="   \n"))],
    "timeline: out-of-order seconds": [
        _with_timeline(sft_row(qid=_qid(111)), FULL.replace("Time 0s:", "Time 5s:", 1))],
    "timeline: negative seconds": [
        _with_timeline(sft_row(qid=_qid(121)), FULL.replace("Time 3s:", "Time -3s:")),
        _with_timeline(sft_row(qid=_qid(122)), FULL.replace("Time 1-2s:", "Time -2-1s:"))],
    "path: videos escaping the root": [
        sft_row(qid=_qid(131), video="../../outside/secret.txt"),
        sft_row(qid=_qid(132), video="../videos/../../outside/secret.txt"),
        sft_row(qid=_qid(133), video="videos/../../../outside/secret.txt")],
    "path: videos absolute": [
        sft_row(qid=_qid(141), video="/etc/passwd"),
        sft_row(qid=_qid(142), video="C:\\videos\\1.mp4")],
    "row: huge text field": [
        sft_row(qid=_qid(151), question="价格" * 200_000 + "？"),
        _mut(sft_row(qid=_qid(152)), lambda r: r.update(answer="<think>" + "x" * 300_000
                                                        + "</think>\n<answer>99元</answer>"))],
}
REASONS = {
    "row: empty prompt": r"prompt\[0\]\.content is empty",
    "timeline: out-of-order seconds": r"events out of time order: Time \d+s comes after Time [0-9-]+s; fix",
    "timeline: negative seconds": r"timeline does not parse: line \d+: expected 'Time <s>s",
    "path: videos escaping the root": r"escapes the video root; expected \.\./videos/<id>\.mp4",
    "path: videos absolute": r"is absolute; expected \.\./videos/<id>\.mp4",
    "row: huge text field": r"characters, over the 200,000 limit",
}
RL_BAD = {
    "timeline: out-of-order seconds": [
        _mut(rl_row(qid=_qid(211)), lambda r: r["reward_model"]["verifier"][0].update(
            meta_info=FULL.replace("Time 3s:", "Time 1s:")))],
}


def _good(n: int) -> list[tuple[str, dict]]:
    return ([("sft", sft_row(qid=_qid(i), video=f"../videos/{i}.mp4")) for i in range(1, n + 1)]
            + [("rl", rl_row(qid=_qid(50 + i), video=f"../videos/{i}.mp4"))
               for i in range(1, n + 1)])


def _kedro_released(project, data_dir):
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    configure_project("evads_kedro")
    try:
        with KedroSession.create(project_path=project,
                                 runtime_params={"evads_data_dir": str(data_dir)}) as s:
            s.run(pipeline_names=["ingestion"], tags=["released"])
    finally:
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture(scope="module")
def imported(module_project, tmp_path_factory):
    base = tmp_path_factory.mktemp("released")
    data_dir = base / "evads"
    data_dir.mkdir()
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text(SECRET)
    good = _good(3)
    sft_rows = [r for s, r in good if s == "sft"] + [r for rows in SFT_BAD.values() for r in rows]
    rl_rows = [r for s, r in good if s == "rl"] + [r for rows in RL_BAD.values() for r in rows]
    frame(sft_rows).to_parquet(data_dir / "EVAds_SFT.parquet")
    frame(rl_rows).to_parquet(data_dir / "EVAds_RL.parquet")
    _kedro_released(module_project, data_dir)
    d = module_project / "data"
    errors = pd.read_csv(d / "08_reporting/released_import_errors.csv")
    qa = pd.read_parquet(d / "03_primary/released_qa.parquet")
    return {"errors": errors, "qa": qa, "good": good, "project": module_project}


def _check(imported, kind: str, split: str, rows: list[dict], reason: str, outcome) -> None:
    errors, qa = imported["errors"], imported["qa"]
    handled, lost, problems = 0, 0, []
    for row in rows:
        qid = row["extra_info"]["id"]
        err = errors[(errors["question_id"] == qid) & (errors["split"] == split)]
        if err.empty and qid not in set(qa["question_id"]):
            lost += 1
            problems.append(f"{qid}: neither imported nor reported")
        elif len(err) == 1 and err.iloc[0]["severity"] == "error" and \
                re.search(reason, err.iloc[0]["reason"]) and int(err.iloc[0]["row"]) >= 0:
            handled += 1
        else:
            problems.append(f"{qid}: {err.to_dict('records')}")
    good = {r["extra_info"]["id"] for _, r in imported["good"]}
    lost += len(good - set(qa["question_id"]))
    outcome.record(kind, "ingestion (released)", tried=len(rows), handled=handled, lost=lost)
    assert not problems, problems
    assert good <= set(qa["question_id"]), "good rows of the same file were dropped"


@pytest.mark.kinds("ingestion (released)", param="kind")
@pytest.mark.parametrize("kind", sorted(SFT_BAD))
def test_bad_sft_rows_are_reported_and_the_import_continues(imported, kind, outcome):
    _check(imported, kind, "sft", SFT_BAD[kind], REASONS[kind], outcome)


@pytest.mark.kinds("ingestion (released)", "timeline: out-of-order seconds")
def test_bad_rl_rows_are_reported(imported, outcome):
    kind = "timeline: out-of-order seconds"
    _check(imported, kind, "rl", RL_BAD[kind], REASONS[kind], outcome)


def test_nothing_outside_the_root_was_followed(imported):
    qa = imported["qa"]
    assert not qa["video_id"].isin(["secret", "passwd"]).any()
    hits = [p for p in (imported["project"] / "data").rglob("*")
            if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not hits


# ------------------------------------------------------------- shapes parquet cannot hold
NON_STRING = {
    "prompt content int": (lambda r: r["prompt"][0].update(content=42),
                           r"prompt\[0\]\.content must be a string, got int"),
    "answer float": (lambda r: r.update(answer=1.5), r"answer must be a string, got float"),
    "videos list of ints": (lambda r: r.update(videos=[7]), r"videos must be a string, got int"),
    "videos null": (lambda r: r.update(videos=None), r"videos must be a string, got NoneType"),
    "extra_info a string": (lambda r: r.update(extra_info="ques_x"),
                            r"extra_info must be a struct/dict, got str"),
    "prompt a number": (lambda r: r.update(prompt=3.0), r"prompt\[0\] must be a struct/dict"),
    "id an int": (lambda r: r["extra_info"].update(id=12), r"extra_info\.id must be a string"),
    "prompt list empty": (lambda r: r.update(prompt=[]),
                          r"empty list where one element was expected"),
    "prompt message without content": (lambda r: r["prompt"][0].pop("content"),
                                       r"missing field prompt\[0\]\.content"),
}


@pytest.mark.kinds("ingestion (released)", "row: non-string fields")
def test_non_string_fields_are_reported_per_row(tmp_path, outcome):
    rows, expect = [], {}
    for i, (name, (mutate, reason)) in enumerate(NON_STRING.items()):
        row = copy.deepcopy(sft_row(qid=_qid(300 + i)))
        mutate(row)
        rows.append(row)
        expect[len(rows) - 1] = (name, reason)
    good = sft_row(qid=_qid(399), video="../videos/9.mp4")
    res = import_splits([("sft", pd.DataFrame(rows + [good]))], tmp_path)
    errs = res.errors.set_index("row")
    handled = sum(1 for i, (_, reason) in expect.items()
                  if i in errs.index and re.search(reason, errs.loc[i, "reason"]))
    lost = sum(1 for i in expect if i not in errs.index) + (len(res.qa) != 1)
    outcome.record("row: non-string fields", "ingestion (released)", tried=len(expect),
                   handled=handled, lost=lost)
    assert list(res.qa["question_id"]) == [_qid(399)]
    for i, (name, reason) in expect.items():
        assert re.search(reason, errs.loc[i, "reason"]), (name, errs.loc[i, "reason"])


@pytest.mark.kinds("ingestion (released)", "parquet: missing columns")
def test_missing_columns_reject_the_split_with_the_fix(tmp_path, outcome):
    no_answer = frame([sft_row(qid=_qid(401)), sft_row(qid=_qid(402))]).drop(columns=["answer"])
    no_reward = frame([rl_row(qid=_qid(403))]).drop(columns=["reward_model", "extra_info"])
    good = frame([rl_row(qid=_qid(404))])
    res = import_splits([("sft", no_answer), ("rl", no_reward), ("rl", good)], tmp_path)
    reasons = res.errors["reason"].tolist()
    handled = (sum("missing columns ['answer']; is this the SFT parquet?" in r for r in reasons)
               + sum("missing columns ['reward_model', 'extra_info']; is this the RL parquet?"
                     in r for r in reasons))
    outcome.record("parquet: missing columns", "ingestion (released)", tried=2, handled=handled,
                   lost=int(list(res.qa["question_id"]) != [_qid(404)]))
    assert handled == 2 and res.counts["errors"] == 3 and res.counts["rows"] == 4
    assert list(res.qa["question_id"]) == [_qid(404)]
