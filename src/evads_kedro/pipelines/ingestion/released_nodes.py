"""The released half of ``ingestion``: the node importing the released E-VAds parquets
(logic in ``released.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from evads_kedro.pipelines.ingestion.released import import_splits

logger = logging.getLogger(__name__)


def import_released(
    sft: pd.DataFrame, rl: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Released SFT + RL parquets → ``videos``, per-second ``timelines``, ``qa``, import report.

    ``params["video_root"]`` is where the released videos live (or would live): the ``videos``
    column is resolved under it and a row whose path escapes it is reported, not followed.
    Returns the four tables and MLflow metrics of the import.
    """
    result = import_splits((("sft", sft), ("rl", rl)), Path(params["video_root"]))
    c = result.counts
    logger.info(
        "Imported %d/%d released rows (%d videos, %d errors, %d warnings)",
        c["imported"], c["rows"], len(result.videos), c["errors"], c["warnings"],
    )
    for _, err in result.errors.iterrows():
        log = logger.error if err["severity"] == "error" else logger.warning
        log("released %s row %s (%s): %s", err["split"], err["row"], err["question_id"], err["reason"])
    metrics = {
        f"{k}": {"value": float(v), "step": 0} for k, v in c.items()
    } | {"videos": {"value": float(len(result.videos)), "step": 0}}
    return result.videos, result.timelines, result.qa, result.errors, metrics
