"""Cross-cutting run behaviour; nodes stay unaware of it."""

from __future__ import annotations

import sys
from typing import Any

import click
from kedro.framework.cli.utils import KedroCliError
from kedro.framework.hooks import hook_impl

from evads_kedro.params import ParameterError, validate_parameters

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


class ValidateParametersHook:
    """Check the merged parameters (conf/<env> + ``--params``) once, when the context is
    created: a typo or a wrong type stops the run before any node, naming the key's full path
    and the closest valid key (:func:`evads_kedro.params.validate_parameters`)."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        try:
            validate_parameters(context.params)
        except ParameterError as exc:
            raise InvalidParametersError(exc) from None


class InvalidParametersError(KedroCliError, ValueError):
    """A :class:`~evads_kedro.params.ParameterError` as the CLI shows it: the message, no
    traceback (``kedro run`` exits 1); in-process sessions can catch it as a ValueError."""

    def __init__(self, error: ParameterError):
        super().__init__(str(error))
        self.problems = error.problems

    def show(self, file: Any = None) -> None:
        click.secho(f"Error: {self.message}", file=file, err=True, fg="yellow")
