"""``qa_generation``: keyframe captions -> persona agents -> verifier (deterministic, blind,
critic) -> dedup/balance -> released-layout exports.

``kedro run --pipelines qa_generation`` reads ``ingested_videos`` (your own ads, after the
ingestion pipeline). After editing the review CSV (saved as ``review_edited.csv``) re-import it alone with
``kedro run --pipelines qa_generation --nodes qa_apply_review``.
"""

from kedro.pipeline import Pipeline, node

from evads_kedro.pipelines.qa_generation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    gen = ["qa_generation"]
    return Pipeline([
        node(nodes.build_contexts, ["ingested_videos", "params:qa_generation"],
             "qa_generation_contexts", name="qa_build_contexts", tags=gen),
        node(nodes.caption_keyframes,
             ["qa_generation_contexts", "frames", "params:qa_generation", "qa_generation_cache"],
             "qa_generation_captions", name="qa_caption_keyframes", tags=gen),
        node(nodes.generate_candidates,
             ["qa_generation_contexts", "qa_generation_captions", "params:qa_generation",
              "qa_generation_cache"],
             ["qa_generation_candidates", "qa_generation_call_rejections"],
             name="qa_generate_candidates", tags=gen),
        node(nodes.verify_candidates,
             ["qa_generation_candidates", "qa_generation_contexts",
              "params:qa_generation.verifier"],
             "qa_generation_verified", name="qa_verify_candidates", tags=gen),
        node(nodes.blind_check,
             ["qa_generation_verified", "qa_generation_contexts", "params:qa_generation",
              "qa_generation_cache"],
             "qa_generation_blind_checked", name="qa_blind_check", tags=gen),
        node(nodes.critic_pass,
             ["qa_generation_blind_checked", "qa_generation_contexts", "params:qa_generation",
              "qa_generation_cache"],
             "qa_generation_criticised", name="qa_critic_pass", tags=gen),
        node(nodes.select_items,
             ["qa_generation_criticised", "qa_generation_call_rejections",
              "qa_generation_contexts", "params:qa_generation"],
             ["qa_generation_items", "qa_generation_rejections", "qa_generation_gaps",
              "qa_generation_metrics"],
             name="qa_select_items", tags=gen),
        node(nodes.export_items, ["qa_generation_items", "params:qa_generation.export"],
             ["qa_generation_sft", "qa_generation_rl", "qa_generation_review_sheet"],
             name="qa_export", tags=gen),
        node(nodes.apply_review_sheet,
             ["qa_generation_items", "qa_generation_review_edited",
              "params:qa_generation.verifier", "params:qa_generation.export"],
             ["qa_generation_items_reviewed", "qa_generation_review_log",
              "qa_generation_sft_reviewed", "qa_generation_rl_reviewed"],
             name="qa_apply_review", tags=["qa_review"]),
    ])
