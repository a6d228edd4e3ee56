"""The whole parameter tree: one field per top-level YAML block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evads_kedro.params.base import Block
from evads_kedro.params.density import Density
from evads_kedro.params.errors import validate
from evads_kedro.params.evaluation import Evaluation
from evads_kedro.params.ingestion import Ingestion
from evads_kedro.params.qa_generation import QaGeneration
from evads_kedro.params.rl_training import RlCompare, RlTraining, VariantBlock


class ProjectParams(Block):
    """Every top-level block. A block an environment leaves out is not checked (None)."""

    density: Density | None = None
    evaluation: Evaluation | None = None
    ingestion: Ingestion | None = None
    qa_generation: QaGeneration | None = None
    rl_training: RlTraining | None = None
    rl_compare: RlCompare | None = None
    grpo_s: VariantBlock | None = None
    grpo_r3: VariantBlock | None = None
    grpo_r5: VariantBlock | None = None
    grpo_mg: VariantBlock | None = None
    grpo_mg_no_trace: VariantBlock | None = None
    # runtime-only: `kedro run --params evads_data_dir=/data/evads` (read by conf/base/globals.yml)
    evads_data_dir: str | None = None


def validate_parameters(params: Mapping[str, Any]) -> ProjectParams:
    """The merged parameters as :class:`ProjectParams`, or
    :class:`~evads_kedro.params.errors.ParameterError` naming each bad key's full path."""
    return validate(ProjectParams, dict(params))
