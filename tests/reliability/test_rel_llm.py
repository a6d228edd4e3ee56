"""LLM faults over real HTTP (tests/llm_server.py on 127.0.0.1) through the evaluation nodes
(generation + judge, ``backends/llm.py``) and the qa_generation agents: timeouts, 429, 500,
truncated JSON, malformed judge scores (``0.8``, ``1.0/1``, ``Answer: `` with nothing), prose
instead of JSON. Every faulty item ends as a ``failed`` / ``invalid`` / rejection row with a
specific reason, transient faults are retried into a success, and the good items of the same
batch are all answered and judged.
"""

from __future__ import annotations

import re

import pytest

from evads_kedro.calls.cache import JsonlCache
from evads_kedro.pipelines.evaluation.nodes import (
    generate_answers,
    judge_answers,
    select_questions,
)
from evads_kedro.pipelines.evaluation.tasks import classify_tasks
from evaluation_data import eval_params, make_qa, make_videos, scripted_responder
from llm_server import FakeLLMServer, Hang, Reply, Status, Truncated, prompt_text

_MARK = re.compile(r"\[S([a-z0-9.]+)\]")
_TOKEN = re.compile(r"token=([a-z0-9.]+)")

# marker -> (kind, answer status, judge status, regex over "<answer error> | <judge error/raw>")
ITEMS = {
    "hang": ("llm: timeout", "failed", "skipped", r"timeout"),
    "r429": ("llm: HTTP 429 (persistent)", "failed", "skipped", r"http_429"),
    "r500": ("llm: HTTP 500 (persistent)", "failed", "skipped", r"http_500"),
    "trunc": ("llm: truncated JSON body", "failed", "skipped", r"bad_json"),
    "flaky": ("llm: transient 429/500 then ok", "ok", "ok", r""),
    "bad": ("judge: score 0.8", "ok", "invalid", r"judge score '0\.8' is not one of .*Answer: 0\.8$"),
    "frac": ("judge: score 1.0/1", "ok", "invalid", r"\| Answer: 1\.0/1$"),
    "empty": ("judge: 'Answer: ' with nothing", "ok", "invalid", r"\| Answer: $"),
    "jhang": ("llm: timeout", "ok", "failed", r"timeout"),
    "j500": ("llm: HTTP 500 (persistent)", "ok", "failed", r"http_500"),
    "jtrunc": ("llm: truncated JSON body", "ok", "failed", r"bad_json"),
}
GOOD = ["1", "0.5", "0.75", "0", "0.25", "1", "0.5", "0.25", "1"]
MARKERS = ([["hang", "r429", "r500", "trunc", "flaky"], ["bad", "frac", "empty", "jhang", "j500"],
            ["jtrunc"] + GOOD[:4], GOOD[4:]])


def responder(body, n):
    text = prompt_text(body)
    if "Answer to grade" in text:
        tok = (_TOKEN.search(text.split("Answer to grade:")[-1]) or [None, "none"])[1]
        if tok == "jhang":
            return Hang(1.5)
        if tok == "j500":
            return Status(500)
        if tok == "jtrunc":
            return Truncated()
        if tok == "flaky":
            return Reply("Answer: 1.0")
        return scripted_responder()(body, n)
    tok = (_MARK.search(text) or [None, "none"])[1]
    if tok == "hang":
        return Hang(1.5)
    if tok == "r429":
        return Status(429, headers={"Retry-After": "0.01"})
    if tok == "r500":
        return Status(500)
    if tok == "trunc":
        return Truncated()
    if tok == "flaky" and n < 2:
        return Status(429, headers={"Retry-After": "0.01"}) if n == 0 else Status(503)
    return Reply(f"<think>about {tok}</think> <answer>token={tok}</answer>")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("llm_faults")
    qa = make_qa(MARKERS)
    labels, _ = classify_tasks(qa, {"assign_per_video": True})
    qs = select_questions(qa, labels, make_videos(qa), {"subset": {"splits": ["rl"]}})
    with FakeLLMServer(responder) as srv:
        params = eval_params(srv.base_url)
        for section in (params["models_under_test"]["endpoint"]["backend"],
                        params["judge"]["backend"]):
            section.update(timeout=0.5, max_retries=2)
        answers = generate_answers(qs, JsonlCache(tmp / "a.jsonl"), params)
        judgements = judge_answers(qs, answers, JsonlCache(tmp / "j.jsonl"), params)
    qs = qs.assign(marker=qs["question"].str.extract(_MARK, expand=False))
    return qs, answers, judgements


def _kinds() -> list[str]:
    return sorted({k for k, *_ in ITEMS.values()})


@pytest.mark.slow
@pytest.mark.kinds("evaluation", param="kind")
@pytest.mark.parametrize("kind", _kinds())
def test_evaluation_records_every_llm_fault_and_finishes_the_batch(evaluated, kind, outcome):
    qs, answers, judgements = evaluated
    a = answers.set_index("question_id")
    j = judgements.set_index("question_id")
    markers = [m for m, (k, *_) in ITEMS.items() if k == kind]
    handled, lost, problems = 0, 0, []
    for marker in markers:
        _, a_status, j_status, pattern = ITEMS[marker]
        qid = qs.loc[qs["marker"] == marker, "question_id"].iloc[0]
        if qid not in a.index or qid not in j.index:
            lost += 1
            problems.append(f"{marker}: missing from answers or judgements")
            continue
        ar, jr = a.loc[qid], j.loc[qid]
        detail = " | ".join(str(v) if isinstance(v, str) else "" for v in
                            (ar["error"], jr["error"], jr["raw_reply"]))
        if ar["status"] == a_status and jr["judge_status"] == j_status and \
                re.search(pattern, detail):
            handled += 1
        else:
            problems.append(f"{marker}: {ar['status']}/{jr['judge_status']} {detail!r}")
    good = qs[qs["marker"].isin(GOOD)]["question_id"]
    good_ok = (a.loc[good, "status"] == "ok").all() and (j.loc[good, "judge_status"] == "ok").all()
    lost += 0 if set(good) <= set(j.index) else 1
    outcome.record(kind, "evaluation", tried=len(markers), handled=handled, lost=lost)
    assert not problems, problems
    assert good_ok and len(judgements) == len(qs) == 20


# ----------------------------------------------------------------------------- qa_generation
QA_FAULTS = {  # persona -> (kind, action on ad_cream, stage, reason regex)
    "expert": ("llm: timeout", Hang(1.5), "llm", r"^llm_error:timeout"),
    "skeptic": ("llm: HTTP 500 (persistent)", Status(500), "llm", r"^llm_error:http_500"),
    "pragmatist": ("llm: HTTP 429 (persistent)", Status(429, headers={"Retry-After": "0.01"}),
                   "llm", r"^llm_error:http_429"),
    "creative_director": ("llm: truncated JSON body", Truncated(), "llm",
                          r"^llm_error:bad_json"),
    "consumer": ("qa agent: prose / 'Answer: ' instead of JSON", Reply("Answer: "), "parse",
                 r"^malformed_json:"),
}


@pytest.mark.slow
@pytest.mark.kinds("qa_generation", *sorted({k for k, *_ in QA_FAULTS.values()}))
def test_qa_generation_records_every_failed_call_and_keeps_the_good_video(outcome):
    from test_qa_generation_pipeline import PERSONA_NEEDLES, run_slice
    from test_qa_generation_pipeline import responder as good_responder

    def respond(body, n):
        text = prompt_text(body)
        if "Video id: ad_cream" in text:
            for persona, needle in PERSONA_NEEDLES.items():
                if needle in text:
                    return QA_FAULTS[persona][1]
        return good_responder(body, n)

    with FakeLLMServer(respond) as srv:
        out = run_slice(srv.base_url, llm={"backend": "openai", "base_url": srv.base_url,
                                           "model": "fake-model", "max_retries": 1,
                                           "timeout": 0.5, "backoff_base": 0.01})
    rej = out["qa_generation_call_rejections"]
    cream = rej[rej["video_id"] == "ad_cream"].set_index("persona")
    per_kind: dict[str, list[int]] = {}
    for persona, (kind, _, stage, pattern) in QA_FAULTS.items():
        ok = (persona in cream.index and cream.loc[persona, "stage"] == stage
              and re.search(pattern, cream.loc[persona, "reason"]) is not None)
        t = per_kind.setdefault(kind, [0, 0, 0])
        t[0] += 1
        t[1] += int(ok)
        t[2] += int(persona not in cream.index)
    items = out["qa_generation_items"]
    jacket_tasks = set(items.loc[items["video_id"] == "ad_jacket", "task"])
    for kind, (tried, handled, lost) in per_kind.items():
        outcome.record(kind, "qa_generation", tried=tried, handled=handled,
                       lost=lost + int(len(jacket_tasks) != 5))
    assert all(h == t for t, h, _ in per_kind.values()), cream[["stage", "reason"]]
    # the good video of the same batch: all 5 tasks, as without faults
    assert jacket_tasks == {"BP", "CM", "ML", "CI", "RC"}
    gaps = out["qa_generation_gaps"]
    assert set(gaps.loc[gaps["video_id"] == "ad_cream", "task"]) == {"BP", "CM", "ML", "CI", "RC"}


@pytest.mark.kinds("evaluation", "row: null / empty question in released_qa")
def test_evaluation_rows_without_a_question_fail_alone(tmp_path, outcome):
    """A hand-made released_qa with a null / empty question: those items fail with the fix
    (no model call with a 'nan' question), the rest of the batch is answered and judged."""
    qa = make_qa([["1"] * 5, ["0.5"] * 5])
    qa["question"] = qa["question"].astype(object)
    bad = {qa.loc[7, "question_id"], qa.loc[8, "question_id"]}
    qa.loc[7, "question"] = None
    qa.loc[8, "question"] = ""
    labels, _ = classify_tasks(qa, {"assign_per_video": True})
    qs = select_questions(qa, labels, make_videos(qa), {"subset": {"splits": ["rl"]}})
    with FakeLLMServer(scripted_responder()) as srv:
        params = eval_params(srv.base_url)
        answers = generate_answers(qs, JsonlCache(tmp_path / "a.jsonl"), params)
        judgements = judge_answers(qs, answers, JsonlCache(tmp_path / "j.jsonl"), params)
        n_answer_calls = sum("Answer to grade" not in prompt_text(r["body"]) for r in srv.requests)
    a, j = answers.set_index("question_id"), judgements.set_index("question_id")
    handled = sum(a.loc[q, "status"] == "failed" and "has no question text; re-import" in
                  a.loc[q, "error"] and j.loc[q, "judge_status"] == "skipped" for q in bad)
    good = [q for q in qs["question_id"] if q not in bad]
    lost = len(set(qs["question_id"]) - set(j.index))
    outcome.record("row: null / empty question in released_qa", "evaluation", tried=len(bad),
                   handled=handled, lost=lost)
    assert handled == 2 and lost == 0 and n_answer_calls == len(good)
    assert (j.loc[good, "judge_status"] == "ok").all()


@pytest.mark.kinds("qa_generation", "qa: ingested video with unusable timeline")
def test_qa_generation_skips_unusable_timelines_by_name(caplog, outcome):
    """Ingested videos whose timeline does not parse (or has no event) are skipped with a
    warning naming the video and what to do; the good video still gets its 5 tasks."""
    import logging

    import pandas as pd
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from evads_kedro.backends.llm import clear_chat_cache
    from evads_kedro.pipelines.qa_generation import create_pipeline
    from test_qa_generation_pipeline import OUTPUTS, _kept_class, make_params, videos_frame
    from test_qa_generation_pipeline import responder as good_responder

    videos = videos_frame()
    broken = pd.DataFrame([
        {"video_id": "ad_garbled", "category": "其他", "duration_s": 5.0,
         "timeline_full": "Category: 其他\nDuration: 5s\n\n[Time-aligned Events]:\nTime -1s: ??",
         "timeline_asr": None},
        {"video_id": "ad_silent", "category": "其他", "duration_s": 5.0,
         "timeline_full": "Category: 其他\nDuration: 5s\n\n[Time-aligned Events]:\n",
         "timeline_asr": None},
        {"video_id": "ad_null", "category": "其他", "duration_s": 5.0, "timeline_full": None,
         "timeline_asr": None}])
    clear_chat_cache()
    with FakeLLMServer(good_responder) as srv, caplog.at_level(logging.WARNING):
        kept = _kept_class()
        params = make_params(srv.base_url)
        ds = {"ingested_videos": MemoryDataset(pd.concat([broken, videos], ignore_index=True)),
              "params:qa_generation": MemoryDataset(params, copy_mode="deepcopy"),
              **{f"params:qa_generation.{k}": MemoryDataset(v, copy_mode="deepcopy")
                 for k, v in params.items()},
              "qa_generation_cache": MemoryDataset(None, copy_mode="assign"),
              "frames": MemoryDataset({}, copy_mode="assign")}
        ds.update({n: kept(copy_mode="assign") for n in OUTPUTS})
        catalog = DataCatalog(ds)
        SequentialRunner().run(create_pipeline().only_nodes_with_tags("qa_generation"), catalog)
        items = catalog.load("qa_generation_items")
    warned = {vid for vid in broken["video_id"]
              if any(vid in r.getMessage() and "skipped" in r.getMessage()
                     and ("re-run ingestion" in r.getMessage() or "quarantine" in r.getMessage())
                     for r in caplog.records)}
    outcome.record("qa: ingested video with unusable timeline", "qa_generation",
                   tried=len(broken), handled=len(warned), lost=len(broken) - len(warned))
    assert warned == set(broken["video_id"])
    assert set(items.loc[items["video_id"] == "ad_jacket", "task"]) == {"BP", "CM", "ML", "CI",
                                                                          "RC"}
