"""``rl_training``: E-VAds-R1 = SFT (LoRA) then MG-GRPO, five reward variants, compared by the
evaluation pipeline.

    released_qa ─► prepare_base_model ─► build_datasets ─► train_sft ─┬─► grpo_s.train_grpo ──┐
                                                                      ├─► grpo_r3.train_grpo ─┤
                                                                      ├─► grpo_r5.train_grpo ─┼─► rl_compare
                                                                      ├─► grpo_mg.train_grpo ─┤
                                                                      └─► grpo_mg_no_trace ───┘

``rl_compare`` (see ``compare.py``) is a rewired copy of the evaluation pipeline: base, SFT and
each GRPO variant are its models under test (a local backend with ``adapter_dir``) on the
held-out questions (the test split when present), judged by ``rl_training.judge``; then
``compare_variants`` writes ``variant_scores.csv`` and the paper-layout table. The registry
passes the evaluation pipeline in (pipelines never import each other); ``kedro run --pipelines
rl_compare`` re-scores trained variants without training.

Each GRPO variant is a Kedro namespace: ``kedro run --pipelines rl_training --namespaces
grpo_mg`` trains only MG (from the SFT adapter already in the catalog). A variant's reward is
set in ``parameters_rl_training.yml`` under ``grpo_<variant>.variant``. Every training stage
checkpoints under ``data/06_models/rl_training/<stage>/checkpoints/`` and a rerun of a killed
stage resumes there; its MLflow run (``rl_sft_run``, ``grpo_<variant>.grpo_run``) is written by
a catalog dataset once the stage is done.
"""

from kedro.pipeline import Node, Pipeline

from evads_kedro.pipelines.rl_training import compare, nodes

VARIANTS = ("s", "r3", "r5", "mg", "mg_no_trace")
SHARED_INPUTS = {"rl_grpo_examples", "rl_base_model", "rl_sft_adapter",
                 "evaluation_judgement_cache"}


def _variant_pipeline(name: str) -> Pipeline:
    template = Pipeline([
        Node(
            nodes.train_grpo,
            inputs=["rl_grpo_examples", "rl_base_model", "rl_sft_adapter",
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


def create_comparison(evaluation: Pipeline) -> Pipeline:
    """The variant comparison: ``evaluation`` rewired (``compare.comparison_pipeline``), then
    the variant table. Its inputs are catalog entries rl_training writes."""
    table = Pipeline([
        Node(compare.compare_variants,
             inputs=[f"{compare.NAMESPACE}.evaluation_breakdown", compare.SETTINGS,
                     "rl_base_model_info", "rl_sft_summary",
                     *[f"grpo_{v}_summary" for v in VARIANTS], f"params:{compare.NAMESPACE}"],
             outputs=["rl_variant_scores", "rl_comparison_md", "rl_reward_curves",
                      "rl_variant_runs"],
             name="compare_variants", namespace=compare.NAMESPACE,
             tags=["rl_training", "report", compare.NAMESPACE]),
    ])
    return compare.comparison_pipeline(evaluation, VARIANTS) + table


def create_pipeline(evaluation: Pipeline | None = None, **kwargs) -> Pipeline:
    """Training (base → data → SFT → five GRPO variants) and, when the evaluation pipeline
    is given (the registry does), the held-out question table and the variant comparison."""
    prep = Pipeline([
        Node(nodes.prepare_base_model,
             inputs=["released_qa", "params:rl_training.model", "params:rl_training.seed"],
             outputs=["rl_base_model", "rl_base_model_info"], name="prepare_base_model"),
        Node(nodes.build_datasets,
             inputs=["released_qa", "released_videos", "rl_base_model",
                     "params:rl_training.data", "params:rl_training.seed"],
             outputs=["rl_sft_examples", "rl_grpo_examples", "rl_heldout_examples",
                      "rl_data_report"],
             name="build_rl_datasets"),
        Node(compare.heldout_questions, inputs=["released_qa", "rl_heldout_examples"],
             outputs=compare.HELDOUT_QA, name="heldout_questions"),
        Node(nodes.train_sft, inputs=["rl_sft_examples", "rl_base_model", "params:rl_training"],
             outputs=["rl_sft_run", "rl_sft_adapter", "rl_sft_summary"], name="train_sft",
             tags=["sft"]),
    ], tags=["rl_training"])
    variants = [_variant_pipeline(v) for v in VARIANTS]
    parts = [prep, *variants]
    if evaluation is not None:
        parts.append(create_comparison(evaluation))
    return Pipeline(parts)
