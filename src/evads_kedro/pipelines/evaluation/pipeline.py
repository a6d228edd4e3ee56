"""``evaluation``: models under test answer released questions, an LLM judge scores them,
and R5 / R3 / S / MG are reported per model, task, dimension and category (SPEC §6).

Each call-making node persists every finished call in an append-only cache and saves its table
before the next node runs: a rerun makes no repeated call, a killed run resumes.

Usage::

    kedro run --pipeline evaluation                  # offline smoke test (SmolLM2 everywhere)
    # a real evaluation: a judge behind an OpenAI-compatible endpoint
    export OPENAI_API_KEY=...                        # only if the endpoint wants one
    kedro run --pipeline evaluation --params "evaluation.judge.backend.backend=openai,\
    evaluation.judge.backend.base_url=http://HOST:PORT/v1,evaluation.judge.backend.model=NAME,\
    evaluation.judge.smoke_test=false,evaluation.judge.invalid_retries=2,\
    evaluation.subset.max_questions=null"
    # official judge prompt for parity
    kedro run --pipeline evaluation --params \
        "evaluation.judge_prompt_path=../shared/evads/official_judge_prompt.txt"

Input: the released SFT/RL questions (``released_qa``, from ``ingestion``) and, when
``EVAds_TEST.parquet`` sits in ``evads_data_dir``, the official test split, which is then the
default evaluation split (``evaluation.subset.splits: auto``; without it the run falls back to
RL and the report's banner says so). ``evaluation.protocol: official`` (default) uses the
official script's prompts; ``evaluation.models=[a,b]`` picks models under test by name.

Outputs: data/08_reporting/evaluation/{leaderboard.csv,leaderboard.md,leaderboard.png,
breakdown.csv (long form: model, group_by, group, n, r5, r3, r2, ...),item_results.parquet,
task_classifier.json,test_import_errors.csv,split.json,<model>/final_results.csv (the official
script's layout)} and the self-contained HTML report
data/08_reporting/evaluation_report.html (also MLflow artifacts) and MLflow
metrics ``evaluation.<model>[.<grouping>.<group>].<r5|r3|s|mg>``, plus one nested MLflow run
per model under test (``eval:<model>``, ``evaluation_model_runs``) to compare models in the UI.
"""

from kedro.pipeline import Node, Pipeline

from evads_kedro.pipelines.evaluation import nodes
from evads_kedro.pipelines.evaluation.judge_probes import judge_check
from evads_kedro.pipelines.evaluation.report_html import evaluation_html_report


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.build_evaluation_source,
                inputs=["released_qa", "released_videos", "evaluation_test_raw",
                        "params:evaluation"],
                outputs=["evaluation_source_qa", "evaluation_source_videos",
                         "evaluation_test_import_errors", "evaluation_split_info"],
                name="build_evaluation_source",
            ),
            Node(
                nodes.classify_tasks,
                inputs=["evaluation_source_qa", "evaluation_task_cache",
                        "evaluation_task_reference",
                        "params:evaluation.task_classifier"],
                outputs=["evaluation_task_labels", "evaluation_task_report"],
                name="classify_tasks",
            ),
            Node(
                nodes.select_questions,
                inputs=["evaluation_source_qa", "evaluation_task_labels",
                        "evaluation_source_videos", "params:evaluation"],
                outputs="evaluation_questions",
                name="select_questions",
            ),
            Node(
                nodes.generate_answers,
                inputs=["evaluation_questions", "evaluation_answer_cache", "params:evaluation"],
                outputs="evaluation_answers",
                name="generate_answers",
            ),
            Node(
                nodes.judge_answers,
                inputs=["evaluation_questions", "evaluation_answers",
                        "evaluation_judgement_cache", "params:evaluation"],
                outputs="evaluation_judgements",
                name="judge_answers",
            ),
            Node(
                nodes.aggregate_results,
                inputs=["evaluation_questions", "evaluation_answers", "evaluation_judgements",
                        "evaluation_task_report", "params:evaluation",
                        "evaluation_split_info"],
                outputs=["evaluation_item_results", "evaluation_breakdown",
                         "evaluation_leaderboard", "evaluation_leaderboard_md",
                         "evaluation_metrics", "evaluation_plot", "evaluation_model_runs",
                         "evaluation_final_results"],
                name="aggregate_results",
            ),
            Node(
                judge_check,
                inputs=["evaluation_source_qa", "evaluation_judge_probe_cache",
                        "params:evaluation"],
                outputs=["evaluation_judge_probe_scores", "evaluation_judge_check",
                         "evaluation_judge_check_metrics"],
                name="judge_check",
            ),
            Node(
                evaluation_html_report,
                inputs=["evaluation_item_results", "evaluation_breakdown",
                        "evaluation_leaderboard", "params:evaluation.judge",
                        "params:evaluation.report", "evaluation_judge_check"],
                outputs="evaluation_report_html",
                name="evaluation_html_report",
            ),
        ],
        tags=["evaluation"],
    )
