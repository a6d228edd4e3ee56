"""Reliability suite plumbing: every test records, per kind of fault, how many items it tried,
how many got the expected clear error / quarantine record, and how many items (bad or good) were
lost (neither processed nor recorded). ``make reliability`` prints the table at the end of the
session, then one JSON line ``{"kinds", "tried", "handled", "lost"}``.

Outcomes are recorded *before* a test asserts, so a failing kind still shows up in the table.
"""

from __future__ import annotations

import json
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass

import pytest

from project_copy import enter_project, make_project

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:  # helpers of the main suite (llm_server, test_ingestion_helpers...)
    sys.path.insert(0, TESTS)


@dataclass
class KindOutcome:
    pipeline: str
    tried: int = 0
    handled: int = 0
    lost: int = 0


PIPELINE_ORDER = ("ingestion", "ingestion (released)", "evaluation", "qa_generation")
_OUTCOMES: OrderedDict[tuple[str, str], KindOutcome] = OrderedDict()


class Recorder:
    """``outcome.record(kind, pipeline, tried=, handled=, lost=)``; repeated kinds add up."""

    def record(self, kind: str, pipeline: str, *, tried: int, handled: int, lost: int = 0) -> None:
        o = _OUTCOMES.setdefault((kind, pipeline), KindOutcome(pipeline))
        o.tried += int(tried)
        o.handled += int(handled)
        o.lost += int(lost)


@pytest.fixture(scope="session")
def outcome() -> Recorder:
    return Recorder()


def report_lines() -> list[str]:
    """The table and, last, the JSON summary line."""
    order = {p: i for i, p in enumerate(PIPELINE_ORDER)}
    rows = sorted(_OUTCOMES.items(), key=lambda kv: order.get(kv[1].pipeline, len(order)))
    kw = max([len("kind of fault")] + [len(k) for (k, _), _ in rows])
    pw = max([len("pipeline")] + [len(o.pipeline) for _, o in rows])
    head = f"{'kind of fault':<{kw}}  {'pipeline':<{pw}}  {'tried':>5}  {'handled':>7}  {'lost':>4}"
    lines = ["", "== reliability ==", head, "-" * len(head)]
    for (kind, _), o in rows:
        lines.append(f"{kind:<{kw}}  {o.pipeline:<{pw}}  {o.tried:>5}  {o.handled:>7}  {o.lost:>4}")
    total = {"kinds": len(rows), "tried": sum(o.tried for _, o in rows),
             "handled": sum(o.handled for _, o in rows), "lost": sum(o.lost for _, o in rows)}
    lines.append("-" * len(head))
    lines.append(json.dumps(total))
    return lines


def pytest_unconfigure(config) -> None:
    # after pytest's own "N passed" line, so the JSON object is the last line of the output
    if _OUTCOMES:
        sys.stdout.write("\n".join(report_lines()) + "\n")
        sys.stdout.flush()


@pytest.fixture(scope="module")
def module_project(tmp_path_factory):
    """``kedro_project`` for a whole module: cwd, MLflow store and logging point inside it."""
    base = tmp_path_factory.mktemp("relproj")
    project = make_project(base)
    with pytest.MonkeyPatch.context() as mp:
        enter_project(mp, project, base / "no-release")
        yield project
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()
