"""``rl_training``: E-VAds-R1 = SFT (LoRA) then MG-GRPO, five reward variants compared in MLflow.

    released_qa ─► prepare_base_model ─► build_datasets ─► train_sft ─┬─► grpo_s.train_grpo ──┐
                                                                      ├─► grpo_r3.train_grpo ─┤
                                                                      ├─► grpo_r5.train_grpo ─┼─► compare_variants
                                                                      ├─► grpo_mg.train_grpo ─┤
                                                                      └─► grpo_mg_no_trace ───┘

Each GRPO variant is a Kedro namespace: ``kedro run --pipelines rl_training --namespaces
grpo_mg`` trains only MG (from the SFT adapter already in the catalog). A variant's reward is
set in ``parameters_rl_training.yml`` under ``grpo_<variant>.variant``. Every training stage
checkpoints under ``data/06_models/rl_training/<stage>/checkpoints/`` and a rerun of a killed
stage resumes there; its MLflow run (``rl_sft_run``, ``grpo_<variant>.grpo_run``) is written by
a catalog dataset once the stage is done.
"""

from kedro.pipeline import Node, Pipeline

from evads_kedro.pipelines.rl_training import nodes

VARIANTS = ("s", "r3", "r5", "mg", "mg_no_trace")
SHARED_INPUTS = {"rl_grpo_examples", "rl_heldout_examples", "rl_base_model", "rl_sft_adapter",
                 "evaluation_judgement_cache"}


def _variant_pipeline(name: str) -> Pipeline:
    template = Pipeline([
        Node(
            nodes.train_grpo,
            inputs=["rl_grpo_examples", "rl_heldout_examples", "rl_base_model", "rl_sft_adapter",
                    "evaluation_judgement_cache", "params:rl_training", "params:variant"],
            # the stage run first: it logs the adapter's scratch folder before the
            # FolderDataset moves it into place
            outputs=["grpo_run", "grpo_adapter", "grpo_summary"],
            name="train_grpo",
            tags=["rl_training", "grpo"],
        )
    ])
    # the summary leaves the namespace under a plain name (grpo_<variant>_summary) for the
    # comparison node; the adapter and the MLflow stage run stay namespaced
    return Pipeline(template, namespace=f"grpo_{name}", inputs=SHARED_INPUTS,
                    outputs={"grpo_summary": f"grpo_{name}_summary"},
                    parameters={"params:rl_training"})


def create_pipeline(**kwargs) -> Pipeline:
    prep = Pipeline([
        Node(nodes.prepare_base_model, inputs=["released_qa", "params:rl_training"],
             outputs=["rl_base_model", "rl_base_model_info"], name="prepare_base_model"),
        Node(nodes.build_datasets,
             inputs=["released_qa", "released_videos", "rl_base_model", "params:rl_training"],
             outputs=["rl_sft_examples", "rl_grpo_examples", "rl_heldout_examples",
                      "rl_data_report"],
             name="build_rl_datasets"),
        Node(nodes.train_sft, inputs=["rl_sft_examples", "rl_base_model", "params:rl_training"],
             outputs=["rl_sft_run", "rl_sft_adapter", "rl_sft_summary"], name="train_sft",
             tags=["sft"]),
    ], tags=["rl_training"])
    variants = [_variant_pipeline(v) for v in VARIANTS]
    compare = Pipeline([
        Node(nodes.compare_variants,
             inputs=["rl_base_model_info", "rl_sft_summary",
                     *[f"grpo_{v}_summary" for v in VARIANTS], "params:rl_training"],
             outputs=["rl_reward_curves", "rl_variant_scores", "rl_comparison_md"],
             name="compare_variants", tags=["rl_training", "report"]),
    ])
    return Pipeline([prep, *variants, compare])
