"""`kedro run --pipelines qa_generation` in a throw-away project copy: real catalog (parquet,
released-layout datasets, JSONL cache, MLflow), loopback LLM, then the review re-import."""

from __future__ import annotations

import pandas as pd
import yaml

from test_qa_generation_pipeline import EXPECTED_FINAL, make_params, responder, videos_frame


def _run(project, **kwargs):
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    configure_project("evads_kedro")
    with KedroSession.create(project_path=project) as session:
        return session.run(pipeline_names=["qa_generation"], **kwargs)


def test_kedro_run_end_to_end_and_review_reimport(kedro_project):
    from evads_kedro.backends.llm import clear_chat_cache
    from evads_kedro.pipelines.ingestion.released import import_splits
    from llm_server import FakeLLMServer

    ingested = kedro_project / "data/02_intermediate/ingested"
    ingested.mkdir(parents=True, exist_ok=True)
    videos_frame().to_parquet(ingested / "videos.parquet")
    out = kedro_project / "data/03_primary/qa_generation"
    with FakeLLMServer(responder) as srv:
        params = make_params(srv.base_url)
        params["export"]["both_splits"] = False
        params["export"]["rl_fraction"] = 0.5
        (kedro_project / "conf/local/parameters_qa_generation.yml").write_text(
            yaml.safe_dump({"qa_generation": params}, allow_unicode=True), encoding="utf-8")
        clear_chat_cache()
        _run(kedro_project)
        n_calls = srv.n_requests
        clear_chat_cache()
        _run(kedro_project)  # resumable: every call comes from the JSONL cache
        assert srv.n_requests == n_calls == 10

    items = pd.read_parquet(out / "items.parquet")
    assert sorted(zip(items.video_id, items.task, strict=True)) == sorted(EXPECTED_FINAL)
    sft, rl = pd.read_parquet(out / "EVAds_SFT.parquet"), pd.read_parquet(out / "EVAds_RL.parquet")
    assert len(sft) + len(rl) == 6 and len(sft) and len(rl)
    imp = import_splits([("sft", sft), ("rl", rl)], kedro_project / "data/01_raw/videos")
    assert imp.errors.empty and imp.counts["imported"] == 6
    rep = kedro_project / "data/08_reporting/qa_generation"
    rej = pd.read_csv(rep / "rejections.csv")
    assert len(rej) == 8 and (rej.stage == "verify").sum() == 5
    assert len(pd.read_csv(rep / "gaps.csv")) == 4

    # a reviewer rejects one item and fixes one answer; the re-import node applies it
    sheet = pd.read_csv(rep / "review.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    sheet.loc[0, "accept"] = "no"
    sheet.loc[1, "edit_answer"] = "人工修订的答案"
    sheet.to_csv(rep / "review_edited.csv", index=False, encoding="utf-8-sig")
    _run(kedro_project, node_names=["qa_apply_review"])
    reviewed = pd.read_parquet(out / "items_reviewed.parquet")
    assert len(reviewed) == 5 and "人工修订的答案" in set(reviewed.answer)
    r_sft = pd.read_parquet(out / "reviewed/EVAds_SFT.parquet")
    r_rl = pd.read_parquet(out / "reviewed/EVAds_RL.parquet")
    imp = import_splits([("sft", r_sft), ("rl", r_rl)], kedro_project / "data/01_raw/videos")
    assert imp.errors.empty and imp.counts["imported"] == 5
