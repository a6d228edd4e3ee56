"""The paper's comparison: base, SFT and every GRPO variant scored by the evaluation pipeline.

rl_training and evaluation meet in the catalog, not in imports. :func:`comparison_pipeline`
receives the evaluation ``Pipeline`` object (the registry passes it) and rewires a copy:

* ``released_qa`` → ``rl_heldout_qa`` (the test split when the release has one, else the RL
  videos kept out of GRPO; written by :func:`heldout_questions`);
* every ``params:evaluation[.<block>]`` → ``rl_compare.settings[.<block>]``: the evaluation
  parameters with each key of ``rl_compare.evaluation`` replacing the key of the same name,
  and ``models_under_test`` built by :func:`trained_models` from the trained folders
  (base, ``sft`` = base + SFT LoRA, ``<v>`` = base + SFT LoRA + that variant's LoRA);
* its outputs are renamed ``rl_compare.<name>``; caches, videos and references stay shared,
  so an answer or a judgement is never asked twice.

:func:`compare_variants` turns the rewired pipeline's breakdown into
``variant_scores.csv`` (long form) and a markdown table in the paper's layout: rows variants,
columns the five tasks and the two dimensions, and the relative gain over the base on
Cognition & Reasoning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from kedro.pipeline import Node, Pipeline

from evads_kedro.taxonomy import COGNITION, PERCEPTION, TASK_CODES, TASKS

logger = logging.getLogger(__name__)

NAMESPACE = "rl_compare"
SETTINGS = f"{NAMESPACE}.settings"
HELDOUT_QA = "rl_heldout_qa"
BASE, SFT = "base", "sft"
DIMENSION_COLUMNS = {PERCEPTION: "perception", COGNITION: "cognition"}
SCORES = ("r5", "r3", "s", "mg")
SCORE_COLUMNS = ["variant", "group_by", "group", "n", "r5", "r3", "s", "mg",
                 *[f"{k}_ci_{b}" for k in SCORES for b in ("low", "high")]]


# ------------------------------------------------------------------------ questions, settings
def heldout_questions(released_qa: pd.DataFrame, heldout_examples: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``released_qa`` the variants are compared on: the ``test`` split when the
    release has one, else the held-out RL questions (never seen by SFT or GRPO)."""
    test = released_qa[released_qa["split"] == "test"] if "split" in released_qa else None
    if test is not None and len(test):
        logger.info("variant comparison on the test split: %d questions", len(test))
        return test.reset_index(drop=True)
    ids = set(heldout_examples["question_id"]) if len(heldout_examples) else set()
    out = released_qa[released_qa["question_id"].isin(ids)].reset_index(drop=True)
    if out.empty:
        raise ValueError("no held-out question to compare the variants on: the release has no "
                         "test split and rl_training.data.heldout_videos kept none; set "
                         "rl_training.data.heldout_videos > 0")
    logger.info("variant comparison on %d held-out RL questions (%d videos): no test split",
                len(out), out["video_id"].nunique())
    return out


def trained_models(compare: Mapping[str, Any], base: str, sft: str,
                   grpo: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``models_under_test`` for ``compare.variants`` (in that order): ``base`` = the base
    folder, ``sft`` = base + SFT LoRA, ``<v>`` = base + SFT LoRA + ``grpo[v]`` (folders as the
    catalog loads them), each with the ``compare.model`` settings."""
    spec = dict(compare.get("model") or {})
    backend = dict(spec.pop("backend", None) or {"backend": "local"})
    known = [BASE, SFT, *grpo]
    models: dict[str, dict[str, Any]] = {}
    for name in compare.get("variants") or known:
        name = str(name)
        if name not in known:
            raise ValueError(f"rl_compare.variants: unknown variant {name!r}; use {known}")
        adapters = [] if name == BASE else [str(sft)] if name == SFT else [str(sft), str(grpo[name])]
        b = {**backend, "model_dir": str(base)}
        if adapters:
            b["adapter_dir"] = adapters
        models[name] = {**spec, "enabled": True, "backend": b}
    return models


class _Settings:
    """Node: the evaluation parameters for the comparison run. Each key of
    ``compare.evaluation`` replaces evaluation's key of the same name; ``models_under_test``
    = the trained models. Taking the trained folders as inputs also orders the comparison
    after the training."""

    def __init__(self, variants: tuple[str, ...]):
        self.variants = tuple(variants)
        self.__name__ = "comparison_settings"

    def __call__(self, evaluation: Mapping[str, Any], compare: Mapping[str, Any], base: str,
                 sft: str, *grpo: str) -> dict[str, Any]:
        out = dict(evaluation)
        out.update(dict(compare.get("evaluation") or {}))
        out["models_under_test"] = trained_models(compare, base, sft,
                                                  dict(zip(self.variants, grpo, strict=True)))
        out["models"] = None  # evaluation.models=[...] picks by name: every trained model here
        return out


def _pick(settings: Mapping[str, Any], path: str) -> Any:
    value: Any = settings
    for key in path.split("."):
        value = value[key]
    return value


# ------------------------------------------------------------------------------- rewiring
def _renamed(names: Any, rename: Callable[[str], str]) -> Any:
    """A node's inputs or outputs as declared (a name, a list or a dict) with each renamed."""
    if isinstance(names, dict):
        return {k: rename(v) for k, v in names.items()}
    if isinstance(names, str):
        return rename(names)
    return [rename(n) for n in (names or [])]


def comparison_pipeline(evaluation: Pipeline, variants: tuple[str, ...]) -> Pipeline:
    """A copy of ``evaluation`` wired to the comparison's questions, settings and outputs;
    ``variants`` are the GRPO namespaces (``grpo_<v>.grpo_adapter`` folders)."""
    produced = set(evaluation.all_outputs())
    param_inputs: set[str] = set()

    def rename(name: str) -> str:
        if name == "released_qa":
            return HELDOUT_QA
        if name == "params:evaluation":
            return SETTINGS
        if name.startswith("params:evaluation."):
            param_inputs.add(name)
            return f"{SETTINGS}.{name.removeprefix('params:evaluation.')}"
        if name in produced:
            return f"{NAMESPACE}.{name}"
        return name

    nodes = [Node(n.func, _renamed(n._inputs, rename), _renamed(n._outputs, rename),
                  name=n.name, namespace=NAMESPACE, tags=set(n.tags) | {NAMESPACE})
             for n in evaluation.nodes]
    # the comparison's settings, and each narrower block an evaluation node asks for
    folders = ["rl_base_model", "rl_sft_adapter", *[f"grpo_{v}.grpo_adapter" for v in variants]]
    settings = [Node(_Settings(variants), ["params:evaluation", f"params:{NAMESPACE}", *folders],
                     SETTINGS, name="settings", namespace=NAMESPACE, tags={NAMESPACE})]
    for p in sorted(param_inputs):
        path = p.removeprefix("params:evaluation.")
        settings.append(Node(_Picker(path), SETTINGS, f"{SETTINGS}.{path}",
                             name=f"settings_{path.replace('.', '_')}", namespace=NAMESPACE,
                             tags={NAMESPACE}))
    return Pipeline(settings + nodes)


class _Picker:
    """A node function returning one block of the settings (picklable, unlike a lambda)."""

    def __init__(self, path: str):
        self.path = path
        self.__name__ = f"pick_{path.replace('.', '_')}"

    def __call__(self, settings: Mapping[str, Any]) -> Any:
        return _pick(settings, self.path)


# ---------------------------------------------------------------------------- the tables
def _col(df: pd.DataFrame, *names: str) -> str:
    for n in names:
        if n in df.columns:
            return n
    raise KeyError(f"breakdown has none of {names}: columns {list(df.columns)}")


def variant_scores(breakdown: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    """The evaluation breakdown in the comparison's long form (one row per variant, group)."""
    group_by = _col(breakdown, "group_by", "grouping")
    n_col = _col(breakdown, "n_judged", "n")
    order = [str(v) for v in (settings.get("variants_order") or [])]
    rank = {v: i for i, v in enumerate(order)}
    out = pd.DataFrame({
        "variant": breakdown["model"].astype(str),
        "group_by": breakdown[group_by], "group": breakdown["group"],
        "n": breakdown[n_col].astype(int),
    })
    for c in SCORE_COLUMNS[4:]:
        out[c] = breakdown[c] if c in breakdown.columns else float("nan")
    out["_r"] = out["variant"].map(lambda v: rank.get(v, len(rank)))
    out = out.sort_values(["_r"], kind="stable").drop(columns="_r").reset_index(drop=True)
    return out[SCORE_COLUMNS]


def _value(scores: pd.DataFrame, variant: str, group_by: str, group: str, metric: str) -> float:
    row = scores[(scores["variant"] == variant) & (scores["group_by"] == group_by)
                 & (scores["group"] == group)]
    return float(row[metric].iloc[0]) if len(row) else float("nan")


def paper_table(scores: pd.DataFrame, metric: str = "r5", baseline: str = BASE,
                smoke: bool = False) -> str:
    """Markdown: rows = variants; columns = the five tasks, the two dimensions, overall, and
    the relative gain over ``baseline`` on Cognition & Reasoning (scores ×100)."""
    def f(x: float) -> str:
        return "—" if x is None or math.isnan(x) else f"{100 * x:.1f}"

    tasks = list(TASK_CODES)
    dims = [(DIMENSION_COLUMNS[d], d) for d in (PERCEPTION, COGNITION)]
    head = ([TASKS[t].name for t in tasks] + [d for _, d in dims]
            + ["Overall", f"Δ C&R vs {baseline}", "n"])
    title = f"## E-VAds-R1 variants, judged by the evaluation pipeline ({metric.upper()} ×100)"
    lines = [title + (" — SMOKE judge: scores mean nothing" if smoke else ""), "",
             "| variant | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    base_cog = _value(scores, baseline, "dimension", "cognition", metric)
    for variant in dict.fromkeys(scores["variant"]):
        vals = [_value(scores, variant, "task", t, metric) for t in tasks]
        vals += [_value(scores, variant, "dimension", slug, metric) for slug, _ in dims]
        overall = _value(scores, variant, "overall", "all", metric)
        cog = _value(scores, variant, "dimension", "cognition", metric)
        if variant == baseline:
            gain = "—"
        elif math.isnan(cog) or math.isnan(base_cog) or base_cog == 0:
            gain = "n/a"
        else:
            gain = f"{100 * (cog - base_cog) / base_cog:+.1f} %"
        n = scores[(scores["variant"] == variant) & (scores["group_by"] == "overall")]["n"]
        lines.append(f"| {variant} | " + " | ".join(f(v) for v in vals) + f" | {f(overall)} | "
                     f"{gain} | {int(n.iloc[0]) if len(n) else 0} |")
    return "\n".join(lines) + "\n"


def compare_variants(breakdown: pd.DataFrame, settings: dict[str, Any], base_info: dict,
                     sft_summary: dict, *summaries_and_params):
    """Long-form ``variant_scores``, the paper-layout markdown (plus the wall time of every
    stage), the reward-curve figure, and ``{variant: metrics}`` for one MLflow run each."""
    *summaries, compare = summaries_and_params
    metric = str(compare.get("table_metric", "r5"))
    settings = {**settings, "variants_order": list(compare.get("variants") or [])}
    scores = variant_scores(breakdown, settings)
    smoke = bool((settings.get("judge") or {}).get("smoke_test"))
    md = paper_table(scores, metric, str(compare.get("baseline", BASE)), smoke)
    md += "\n" + _stage_times(base_info, sft_summary, summaries)
    logger.info("\n%s", md)
    metrics = {v: {f"{g}.{grp}.{k}": float(x) for g, grp, k, x in (
        (r["group_by"], r["group"], k, r[k]) for r in sub.to_dict("records") for k in SCORES)
        if x == x} for v, sub in scores.groupby("variant", sort=False)}
    return scores, md, _curves(summaries, smoke), metrics


def _stage_times(base_info, sft_summary, summaries) -> str:
    def f(x):
        return "—" if x is None else f"{float(x):.1f}"

    lines = ["| stage | steps | final reward | wall s |", "|---|---|---|---|",
             f"| base model | — | — | {f((base_info or {}).get('wall_s'))} |",
             f"| sft | {(sft_summary or {}).get('steps', '—')} | — | "
             f"{f((sft_summary or {}).get('wall_s'))} |"]
    for s in summaries:
        if s:
            lines.append(f"| grpo_{s.get('variant')} | {s.get('steps', '—')} | "
                         f"{f(s.get('final_reward'))} | {f(s.get('wall_s'))} |")
    return "\n".join(lines) + "\n"


def _curves(summaries, smoke: bool):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for s in summaries:
        curve = (s or {}).get("reward_curve") or []
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=s.get("variant"))
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward (each variant's own objective)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("E-VAds MG-GRPO reward per step" + (" — SMOKE judge" if smoke else ""))
    fig.tight_layout()
    return fig
