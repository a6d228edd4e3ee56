"""The packaged SmolLM2-135M as the QA writer, end to end on 2 synthetic sample ads (slow).

The timelines come from the sample ads' ground truth (captions and placed voiceover per
second), so this exercises the generator, not OCR/ASR (the ingestion tests cover those). A
135M English model is no real QA writer: the test asserts that the run completes, that every
candidate is accounted for (final or rejected with a reason), and that JSON-schema decoding
(``structured: auto``, xgrammar) holds: every reply parses, and no quote or cited second is
off the timeline. It does not assert that items survive the blind check.

Runtime: schema-constrained replies close after ~120 tokens (one 8 s ad, 1 thread: 18.7 /
20.3 s CPU per call against 49.2 / 8.2 s for free text, which ran to 320 tokens or stopped
after an unusable 39-token reply); more items now pass the verifier, so the blind check makes
more calls. Measured on 2 shared cores at load 6-8 (sample ads already rendered): 786 s, 516 s
CPU; 10 candidates, 0 parse or verifier rejections, 6 duplicates, 4 final items (before: 10
calls, 3 malformed_json, 7 verifier rejections, 0 final items).
"""

from __future__ import annotations

import pandas as pd
import pytest

from test_qa_generation_pipeline import OUTPUTS, _kept_class


def sample_timeline(gt: dict) -> str:
    """A released-format timeline from a sample ad's ground truth."""
    caps = {int(r["t"]): r.get("captions") or [] for r in gt.get("per_second_captions") or []}
    asr = {int(r["t"]): r.get("text") or "" for r in gt.get("asr_per_second_estimate") or []}
    lines = [f"Category: {gt['category']}", f"Duration: {round(gt['duration_s'])}s", "",
             "[Time-aligned Events]:"]
    for s in range(int(round(gt["duration_s"]))):
        parts = []
        ocr = [c for c in (caps.get(s) or []) if c]
        if ocr:
            parts.append("OCR Text: [" + " | ".join(ocr) + "]")
        if asr.get(s):
            parts.append(f'ASR Text: "{asr[s]}"')
        if parts:
            lines.append(f"Time {s}s: " + " ; ".join(parts))
    return "\n".join(lines)


@pytest.mark.slow
def test_smollm2_run_completes_on_two_sample_ads(sample_ground_truth, tmp_path):
    import yaml
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from evads_kedro.calls.cache import JsonlCache
    from evads_kedro.paths import project_root
    from evads_kedro.pipelines.qa_generation import create_pipeline

    ids = ["ad_apparel_jacket", "ad_beauty_lipstick"]
    videos = pd.DataFrame([{"video_id": v, "category": sample_ground_truth[v]["category"],
                            "duration_s": float(sample_ground_truth[v]["duration_s"]),
                            "timeline_full": sample_timeline(sample_ground_truth[v]),
                            "timeline_asr": None} for v in ids])
    params = yaml.safe_load((project_root() / "conf/base/parameters_qa_generation.yml")
                            .read_text(encoding="utf-8"))["qa_generation"]
    params["prompt_dir"] = str(project_root() / params["prompt_dir"])
    params["llm"] = {**params["llm"], "num_threads": 1}  # 2 threads thrash on a busy 2-core box
    params["calls_per_agent"] = 1  # 10 agent calls
    assert params["structured"] == "auto"  # JSON-schema decoding for the local model
    kept = _kept_class()
    ds = {"ingested_videos": MemoryDataset(videos),
          "params:qa_generation": MemoryDataset(params, copy_mode="deepcopy"),
          **{f"params:qa_generation.{k}": MemoryDataset(v, copy_mode="deepcopy")
             for k, v in params.items()},
          "qa_generation_cache": MemoryDataset(JsonlCache(tmp_path / "c.jsonl"),
                                               copy_mode="assign"),
          "frames": MemoryDataset({}, copy_mode="assign")}
    ds.update({n: kept(copy_mode="assign") for n in OUTPUTS})
    catalog = DataCatalog(ds)
    SequentialRunner().run(create_pipeline().only_nodes_with_tags("qa_generation"), catalog)
    out = {n: catalog.load(n) for n in OUTPUTS}

    assert len(out["qa_generation_contexts"]) == 2
    n_calls = len(out["qa_generation_candidates"].groupby(["video_id", "persona"])) + \
        len(out["qa_generation_call_rejections"])
    assert n_calls >= 1
    n_cand = len(out["qa_generation_candidates"]) + len(out["qa_generation_call_rejections"])
    assert n_cand == len(out["qa_generation_items"]) + len(out["qa_generation_rejections"])
    assert out["qa_generation_rejections"]["reason"].notna().all()
    call_rej = out["qa_generation_call_rejections"]
    assert not call_rej["reason"].astype(str).str.startswith("malformed_json").any(), call_rej
    reasons = out["qa_generation_rejections"]["reason"].astype(str)
    assert not reasons.str.contains("quote_not_found|unknown_second|schema:").any(), reasons
    m = {k: v["value"] for k, v in out["qa_generation_metrics"].items()}
    assert m["final_items"] == len(out["qa_generation_items"])
    cand = out["qa_generation_candidates"]
    rej = out["qa_generation_rejections"]
    heads = rej["reason"].astype(str).str.split(":").str[0]
    print("\nSmolLM2 QA run on", ids)
    print("calls per agent:", (cand.groupby("persona")["call_key"].nunique()
                               .add(out["qa_generation_call_rejections"].groupby("persona")
                                    .size(), fill_value=0)).to_dict())
    print("candidates per agent:", cand.groupby("persona").size().to_dict())
    print("rejections (stage, reason):", rej.assign(head=heads).groupby(["stage", "head"])
          .size().to_dict())
    print("final items per task:", out["qa_generation_items"].groupby("task").size().to_dict())
    print("metrics:", {k: round(v, 3) for k, v in sorted(m.items())})
