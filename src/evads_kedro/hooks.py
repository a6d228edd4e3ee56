"""Cross-cutting run behaviour; nodes stay unaware of it."""

from __future__ import annotations

import sys
from typing import Any

from kedro.framework.hooks import hook_impl

# Markdown reports shown on stdout when a run produced them, in this order.
PRINTED_REPORTS = ("ingestion_summary_md", "density_table_md", "evaluation_leaderboard_md",
                   "rl_comparison_md")


class PrintReportsHook:
    """Print the run's markdown reports after the pipeline finishes (the user's summary)."""

    def __init__(self) -> None:
        self._produced: dict[str, str] = {}

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        for name in PRINTED_REPORTS:
            if name in outputs and isinstance(outputs[name], str):
                self._produced[name] = outputs[name]

    @hook_impl
    def after_pipeline_run(self) -> None:
        for name in PRINTED_REPORTS:
            if name in self._produced:
                sys.stdout.write(f"\n== {name} ==\n{self._produced[name]}\n")
        sys.stdout.flush()
        self._produced.clear()
