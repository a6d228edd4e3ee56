"""Issue 17 "Done when": ``kedro run --pipeline evaluation`` (the real CLI, in a project copy) on
an EVAds_TEST-shaped parquet made from released RL rows, with two real video files and one
missing, the model under test and the judge served by a loopback OpenAI-compatible server.
Everything is asserted from what the server received and what the run wrote."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evads_kedro.paths import project_root
from llm_server import FakeLLMServer, Reply, prompt_text
from released_rows import official_test_frame

OFFICIAL_ASK = ("{asr}\n\nBy watching the video, you are required to answer a question within "
                "50 words: Question: {q}")
R5_CYCLE = ["1.0", "0.75", "0.5", "0.25", "0", "1", "0.75", "0.5", "0.75", "1.0"]
BAD_JUDGE_REPLY = "The answer is quite good."  # non-numeric: counted invalid, not averaged


def _tiny_mp4(path: Path, seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 4, (32, 32))
    for _ in range(6):
        w.write(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    w.release()
    assert path.stat().st_size > 0


def _responder(scores: dict[str, str]):
    """Model under test: ``<think>…</think> <answer>ANS:<question></answer>``; judge: the score
    scripted for the judged answer's question (a non-numeric reply for one of them)."""
    def respond(body, n):
        text = prompt_text(body)
        if "[Model Output]" in text:
            judged = text.split("5. [Model Output]:")[-1].split("# Output Template")[0].strip()
            m = re.match(r"ANS:(.*)$", judged, re.S)
            score = scores.get(m.group(1).strip()) if m else None
            return Reply(BAD_JUDGE_REPLY if score is None else f"Answer: {score}")
        q = text.split("Question: ")[-1]
        return Reply(f"<think>looked at the video</think> <answer>ANS:{q}</answer>")
    return respond


def _kedro(project: Path, params: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    kedro = Path(sys.executable).with_name("kedro")
    return subprocess.run([str(kedro), "run", "--pipeline", "evaluation", "--params", params],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_kedro_run_official_test_split_native_video_loopback(kedro_project, evads_data_dir,
                                                             tmp_path):
    from evads_kedro.pipelines.ingestion.released import import_splits

    rl = pd.read_parquet(evads_data_dir / "EVAds_RL.parquet")
    test = official_test_frame(n_videos=3, rl=rl)
    vids = list(dict.fromkeys(test["video_id"]))
    data_dir = tmp_path / "evads"
    (data_dir / "videos").mkdir(parents=True)
    for i, vid in enumerate(vids[:2]):  # the third video's file is missing
        _tiny_mp4(data_dir / "videos" / f"{vid}.mp4", i)
    test.to_parquet(data_dir / "EVAds_TEST.parquet")
    shutil.copy(evads_data_dir / "official_judge_prompt.txt", data_dir)  # as in a release folder
    # a user who ran `kedro run --pipeline ingestion` has the released tables
    imp = import_splits([("rl", rl.head(10))], data_dir / "videos")
    (kedro_project / "data/02_intermediate/released").mkdir(parents=True, exist_ok=True)
    imp.qa.to_parquet(kedro_project / "data/03_primary/released_qa.parquet")
    imp.videos.to_parquet(kedro_project / "data/02_intermediate/released/videos.parquet")

    scores = {q: R5_CYCLE[i % len(R5_CYCLE)] for i, q in enumerate(test["question"])}
    bad_q = test["question"].iloc[7]
    scores.pop(bad_q)
    with FakeLLMServer(_responder(scores)) as srv:
        env = {**os.environ, "EVADS_LLM_BASE_URL": srv.base_url, "EVADS_LLM_MODEL": "fake-vlm",
               "PYTHONPATH": os.pathsep.join([str(project_root() / "src"),
                                              str(Path(__file__).parent)])}
        params = (f"evads_data_dir={data_dir},evaluation.subset.splits=[test],"
                  "evaluation.subset.max_questions=null,evaluation.models=[vlm_endpoint],"
                  "evaluation.models_under_test.vlm_endpoint.video=native,"
                  "evaluation.judge.backend.backend=openai,"
                  f"evaluation.judge.backend.base_url={srv.base_url},"
                  "evaluation.judge.backend.model=fake-judge,evaluation.judge.smoke_test=false")
        run = _kedro(kedro_project, params, env)
        assert run.returncode == 0, run.stderr[-4000:]
        n_first = srv.n_requests
        bodies = [r["body"] for r in srv.requests]
        judges = [b for b in bodies if b["model"] == "fake-judge"]
        answer = [b for b in bodies if b["model"] == "fake-vlm"]
        # the judge grades the 15 answers; its other requests are the judge check's probes
        judge = [b for b in judges if "5. [Model Output]: ANS:" in prompt_text(b)]
        probes = [b for b in judges if "5. [Model Output]: ANS:" not in prompt_text(b)]
        assert len(answer) == len(test) == 15 and len(judge) == 15 and len(probes) > 0

        # the exact official answer prompt for every question; video_url where the file exists
        expected = {OFFICIAL_ASK.format(asr=r.asr_input, q=r.question): r.video_id
                    for r in test.itertuples()}
        sent = {}
        for b in answer:
            content = b["messages"][-1]["content"]
            if isinstance(content, str):
                sent[content] = None
                continue
            texts = [p["text"] for p in content if p["type"] == "text"]
            videos = [p["video_url"]["url"] for p in content if p["type"] == "video_url"]
            assert len(texts) == 1 and len(videos) == 1
            sent[texts[0]] = videos[0]
            assert b["mm_processor_kwargs"]["max_frames"] == 768
            assert (b["temperature"], b["max_tokens"], b["seed"]) == (1.0, 1524, 0)
        assert set(sent) == set(expected)
        for prompt, url in sent.items():
            vid = expected[prompt]
            if vid in vids[:2]:
                raw = (data_dir / "videos" / f"{vid}.mp4").read_bytes()
                assert url == "data:video/mp4;base64," + base64.b64encode(raw).decode()
            else:
                assert url is None
        # the judge: T=0, seed 42, the official prompt with asr_ocr_meta, evidence, answer tags cut
        for b in judge:
            assert (b["temperature"], b["seed"]) == (0.0, 42)
            text = prompt_text(b)
            assert text.startswith("\n# Role\nYou are a professional E-commerce Content Analyst")
            row = test[test["question"] == text.split("1. [Question]: ")[1].split(
                "\n2. [Metadata")[0]].iloc[0]
            assert f"2. [Metadata (OCR/ASR)]: {row.asr_ocr_meta}\n3. [Clues]: {row.evidence}\n" \
                   f"4. [Reference Answer]: {row.answer}\n5. [Model Output]: ANS:{row.question}\n" \
                in text

        out = kedro_project / "data/08_reporting/evaluation"
        final = pd.read_csv(out / "vlm_endpoint/final_results.csv")
        assert list(final.columns[:10]) == ["video_id", "ques_id", "question", "answer",
                                            "prediction", "ques_categories", "goods_category",
                                            "score_R5", "score_R3", "score_R2"]
        f = final.set_index("question")
        for q, s in scores.items():
            assert f.loc[q, "score_R5"] == float(s)
            assert f.loc[q, "score_R2"] == (1.0 if float(s) == 1.0 else 0.0)
        assert pd.isna(f.loc[bad_q, "score_R5"]) and f.loc[bad_q, "judge_status"] == "invalid"
        assert set(f["input_mode"]) == {"video+text", "text_no_video"}

        bd = pd.read_csv(out / "breakdown.csv")
        assert list(bd.columns[:7]) == ["model", "group_by", "group", "n", "r5", "r3", "r2"]
        assert set(bd["group_by"]) == {"overall", "ques_categories", "task", "dimension",
                                       "goods_category"}
        qc = bd[bd["group_by"] == "ques_categories"].set_index("group")
        valid = test[test["question"] != bad_q].assign(
            r5=lambda d: d["question"].map(scores).astype(float))
        means = valid.groupby("ques_categories")["r5"].agg(["mean", "size"])
        assert set(qc.index) == set(means.index)
        for g, m in means.iterrows():
            assert qc.loc[g, "r5"] == pytest.approx(m["mean"], abs=1e-4)
            assert qc.loc[g, "n"] == m["size"]
        overall = bd[bd["group_by"] == "overall"].iloc[0]
        assert (overall["n"], overall["n_invalid"]) == (14, 1)
        split = json.loads((out / "split.json").read_text())
        assert split["splits"] == ["test"] and split["protocol"] == "official"

        # a rerun sends no request (everything from the caches)
        again = _kedro(kedro_project, params, env)
        assert again.returncode == 0, again.stderr[-4000:]
        assert srv.n_requests == n_first
