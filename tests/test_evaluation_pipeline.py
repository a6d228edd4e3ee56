"""The whole evaluation pipeline on an in-memory catalog: an OpenAI-compatible server on
127.0.0.1 (text and frames models + the judge) and a tiny local transformers model; exact scores
from scripted replies, invalid/failed counted, and a second run makes zero HTTP calls."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from evads_kedro.calls.templates import load_template, render
from evads_kedro.datasets import FramesDataset
from evads_kedro.datasets.jsonl_cache import JsonlCacheDataset
from evads_kedro.frames import FrameStack
from evads_kedro.pipelines.evaluation import create_pipeline
from evads_kedro.scoring import all_scores
from evaluation_data import (
    build_tiny_lm,
    eval_params,
    make_qa,
    make_videos,
    missing_test_file,
    scripted_responder,
)
from llm_server import FakeLLMServer, Status, prompt_text

OUTPUTS = ["evaluation_item_results", "evaluation_breakdown", "evaluation_leaderboard",
           "evaluation_leaderboard_md", "evaluation_metrics", "evaluation_answers",
           "evaluation_judgements", "evaluation_task_report", "evaluation_questions",
           "evaluation_model_runs", "evaluation_final_results"]

# video 0: legal scores; video 1: malformed judge replies + one failed generation
MARKERS = [["1", "0.75", "0.5", "0.25", "0"], ["1", "bad", "frac", "fail", "1"]]


def flaky(responder):
    """First request of some prompts: 429 (Retry-After) or 500, then the scripted reply."""
    def respond(body, n):
        text = prompt_text(body)
        if n == 0 and "[S0.75]" in text and "Answer to grade" not in text:
            return Status(429, headers={"Retry-After": "0.05"})
        if n == 0 and "token=0.5" in text:  # a judge prompt
            return Status(500, delay=0.05)
        return responder(body, n)
    return respond


def _catalog(tmp_path, qa, videos, params):
    ds = {"released_qa": MemoryDataset(qa), "released_videos": MemoryDataset(videos),
          "params:evaluation": MemoryDataset(params, copy_mode="deepcopy"),
          "params:evaluation.task_classifier": MemoryDataset(params["task_classifier"]),
          "evaluation_answer_cache": JsonlCacheDataset(str(tmp_path / "cache/answers.jsonl")),
          "evaluation_judgement_cache": JsonlCacheDataset(str(tmp_path / "cache/judgements.jsonl")),
          "evaluation_task_cache": JsonlCacheDataset(str(tmp_path / "cache/task_labels.jsonl")),
          "evaluation_task_reference": MemoryDataset(pd.DataFrame(
              columns=["question_id_prefix", "task", "sample"])),
          "evaluation_test_raw": MemoryDataset(missing_test_file(), copy_mode="assign"),
          "evaluation_plot": MemoryDataset(copy_mode="assign")}
    ds.update({name: MemoryDataset(copy_mode="assign") for name in OUTPUTS})
    # intermediates are persisted (the runner releases consumed memory datasets)
    for name in ("evaluation_answers", "evaluation_judgements", "evaluation_questions",
                 "evaluation_task_labels"):
        ds[name] = ParquetDataset(filepath=str(tmp_path / f"{name}.parquet"))
    ds["evaluation_task_report"] = JSONDataset(filepath=str(tmp_path / "task_report.json"))
    return DataCatalog(ds)


def _run(tmp_path, qa, videos, params):
    catalog = _catalog(tmp_path, qa, videos, params)
    # up to aggregate_results: the HTML report node would make the runner release the tables
    # loaded below (tests/test_evaluation_report_html.py runs the whole pipeline)
    SequentialRunner().run(create_pipeline().to_nodes("aggregate_results"), catalog)
    return {name: catalog.load(name) for name in OUTPUTS + ["evaluation_plot"]}


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm_pipeline"))


def test_full_pipeline_exact_scores_and_zero_calls_on_rerun(tmp_path, tiny_lm):
    qa = make_qa(MARKERS)
    videos = make_videos(qa)
    frames_dir = tmp_path / "frames"
    rng = np.random.default_rng(0)
    FramesDataset(str(frames_dir / "v0.zip")).save(FrameStack(
        "v0", [0.0, 1.0, 2.0, 3.0], [rng.integers(0, 255, (48, 64, 3), np.uint8)
                                     for _ in range(4)]))
    with FakeLLMServer(flaky(scripted_responder(latency=0.02))) as srv:
        params = eval_params(srv.base_url)
        params["frames_dir"] = str(frames_dir)
        endpoint = params["models_under_test"]["endpoint"]
        params["models_under_test"]["vlm"] = {**endpoint, "video": "frames", "n_frames": 2}
        params["models_under_test"]["tiny_local"] = {
            "timeline": "full", "video": "none", "max_tokens": 6, "temperature": 1.0,
            "concurrency": 1, "backend": {"backend": "local", "model_dir": str(tiny_lm),
                                          "device": "cpu"}}
        params["models_under_test"]["disabled"] = {**endpoint, "enabled": False}
        out = _run(tmp_path, qa, videos, params)
        first_calls = srv.n_requests
        statuses = [r for r in srv.requests if r["n"] == 1]
        assert len(statuses) >= 2  # the 429 and the 500 were retried
        frame_requests = [r for r in srv.requests
                          if isinstance(r["body"]["messages"][-1]["content"], list)]

        items = out["evaluation_item_results"]
        assert set(items["model"]) == {"endpoint", "vlm", "tiny_local"}
        assert len(items) == 3 * 10
        ep = items[items["model"] == "endpoint"].set_index("question_id")
        # exact scores from the scripted replies, per question of video 0
        expect = dict(zip(qa["question_id"][:5], [1.0, 0.75, 0.5, 0.25, 0.0], strict=True))
        for qid, r5 in expect.items():
            assert ep.loc[qid, "r5"] == r5 and ep.loc[qid, "judge_status"] == "ok"
            assert ep.loc[qid, "mg"] == pytest.approx(all_scores(r5)["mg"])
        v1 = ep[ep["video_id"] == "v1"]
        assert sorted(v1["judge_status"]) == ["invalid", "invalid", "ok", "ok", "skipped"]
        assert v1.loc[v1["judge_status"] == "invalid", "judge_raw_reply"].tolist() == \
            ["Answer: 0.8", "Answer: 1.0/1"]

        board = out["evaluation_leaderboard"].set_index("model")
        e = board.loc["endpoint"]
        assert (e.n_items, e.n_judged, e.n_invalid, e.n_failed) == (10, 7, 2, 1)
        assert e.r5 == pytest.approx((1 + .75 + .5 + .25 + 0 + 1 + 1) / 7)
        assert e.s == pytest.approx(3 / 7)
        assert e.r5_BP == 1.0 and e.r5_RC == pytest.approx(0.5)  # RC: 0 (v0) and 1 (v1)
        assert e.r5_CM == 0.75  # v1's CM reply was invalid: only v0 counts
        br = out["evaluation_breakdown"]
        cat = br[(br.model == "endpoint") & (br.grouping == "category")].set_index("group")
        assert cat.loc["apparel", "r5"] == pytest.approx(0.5)
        assert cat.loc["beauty", "n_judged"] == 2

        # frames: v0 from the artefact (2 images sent), v1 has no video -> text only
        vlm = out["evaluation_answers"][lambda d: d.model == "vlm"]
        assert sorted(vlm["input_mode"].unique()) == ["frames+text", "text_no_video"]
        assert (vlm.loc[vlm.video_id == "v0", "n_frames"] == 2).all()
        assert len(frame_requests) == 5
        assert all(sum(p["type"] == "image_url" for p in r["body"]["messages"][-1]["content"]) == 2
                   for r in frame_requests)
        # the local model under test answered every item; its garbage is judged invalid
        local = items[items["model"] == "tiny_local"]
        assert (local["answer_status"] == "ok").all()
        assert set(local["judge_status"]) <= {"ok", "invalid"}
        assert "tiny_local" in board.index

        mets = out["evaluation_metrics"]
        assert mets["endpoint.r5"]["value"] == pytest.approx(e.r5)
        assert mets["endpoint.n_invalid"]["value"] == 2
        runs = out["evaluation_model_runs"]  # one MLflow run per model under test
        assert set(runs) == {"endpoint", "vlm", "tiny_local"}
        assert runs["endpoint"]["r5"] == pytest.approx(e.r5)
        assert runs["endpoint"]["n_invalid"] == 2 and runs["endpoint"]["r5_BP"] == 1.0
        md = out["evaluation_leaderboard_md"]
        assert "| endpoint |" in md and "Smoke-test" not in md
        assert out["evaluation_task_report"]["permutation_rate"] == 1.0
        assert out["evaluation_questions"]["task"].tolist()[:5] == ["BP", "CM", "ML", "CI", "RC"]

        # second run: everything from the caches, zero HTTP calls, same results
        again = _run(tmp_path, qa, videos, params)
        assert srv.n_requests == first_calls + 1  # only the failed generation is retried
        pd.testing.assert_frame_equal(
            again["evaluation_item_results"].drop(columns=["error"]),
            items.drop(columns=["error"]))

    # the one request of the rerun is the scripted HTTP 400 (failures are not cached)
    assert json.dumps(srv.requests[-1]["body"], ensure_ascii=False).count("[Sfail]") == 1


def test_answer_template_reproduces_the_released_rl_prompt(evads_data_dir):
    from evads_kedro.pipelines.ingestion.released import import_splits

    rl = pd.read_parquet(evads_data_dir / "EVAds_RL.parquet")
    qa = import_splits([("rl", rl)], evads_data_dir / "videos").qa
    template = load_template("conf/base/prompts/evaluation/answer.txt", ("timeline", "question"))
    for row in qa.head(50).itertuples(index=False):
        built = render(template, video_token="<video>", timeline=row.prompt_timeline,
                       question=row.question)
        assert built == row.prompt


def test_select_questions_takes_whole_videos_seeded():
    from evads_kedro.pipelines.evaluation.nodes import select_questions
    from evads_kedro.pipelines.evaluation.tasks import classify_tasks

    qa = make_qa([["1"] * 5 for _ in range(6)])
    qa.loc[qa["video_id"] == "v5", "split"] = "sft"
    labels, _ = classify_tasks(qa, {})
    videos = make_videos(qa)
    pick = select_questions(qa, labels, videos, {"subset": {"splits": ["rl"], "max_questions": 7,
                                                             "seed": 3}})
    assert len(pick) == 5 and pick["video_id"].nunique() == 1  # whole videos that fit in 7
    assert len(select_questions(qa, labels, videos, {"subset": {"max_questions": 10}})) == 10
    assert len(select_questions(qa, labels, videos, {"subset": {"max_questions": 2}})) == 2
    assert "v5" not in set(pick["video_id"])
    again = select_questions(qa, labels, videos, {"subset": {"splits": ["rl"],
                                                              "max_questions": 7, "seed": 3}})
    assert again["question_id"].tolist() == pick["question_id"].tolist()
    for no_limit in (None, "null", "all", 0):
        assert len(select_questions(qa, labels, videos, {"subset": {
            "splits": ["rl", "sft"], "max_questions": no_limit}})) == 30
    ids = qa["question_id"][:2].tolist()
    one = select_questions(qa, labels, videos, {"subset": {"question_ids": ids}})
    assert one["question_id"].tolist() == ids
    assert (one["timeline_asr_only"].str.startswith("Voiceover:")).all()
    assert one["category_slug"].iloc[0] == "apparel" and one["dimension_slug"].iloc[0] == "perception"
    with pytest.raises(ValueError, match="subset is empty"):
        select_questions(qa, labels, videos, {"subset": {"splits": ["test"]}})
