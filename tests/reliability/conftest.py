"""Reliability suite plumbing: every test records, per kind of fault, how many items it tried,
how many got the expected clear error / quarantine record, and how many items (bad or good) were
lost (neither processed nor recorded). ``make reliability`` prints the table at the end of the
session, then one JSON line ``{"kinds", "tried", "handled", "lost", "unrecorded"}``; every
kind a test declares with ``@pytest.mark.kinds`` is listed, recorded or not (see rel_table).

Outcomes are recorded *before* a test asserts, so a failing kind still shows up in the table.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict

import pytest
from rel_table import KindOutcome, expected_kinds, to_json
from rel_table import report_lines as _report_lines

from project_copy import enter_project, make_project

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:  # helpers of the main suite (llm_server, test_ingestion_helpers...)
    sys.path.insert(0, TESTS)


_OUTCOMES: OrderedDict[tuple[str, str], KindOutcome] = OrderedDict()
_EXPECTED: list[tuple[str, str]] = []


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "kinds(pipeline, *kinds, param=None): kinds of fault a "
                            "reliability test covers (listed even when it records nothing)")


def pytest_collection_finish(session) -> None:  # after -k / -m deselection
    _EXPECTED[:] = expected_kinds(session.items)


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
    """The table (every expected kind listed) and, last, the JSON summary line."""
    return _report_lines(_OUTCOMES, _EXPECTED)


def pytest_sessionfinish(session) -> None:
    """Under pytest-xdist a worker hands its outcomes to the controller, which draws the one
    table (tests/conftest.py: the controller never loads this conftest)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["evads_reliability"] = to_json(_OUTCOMES, _EXPECTED)


def pytest_unconfigure(config) -> None:
    # after pytest's own "N passed" line, so the JSON object is the last line of the output
    if hasattr(config, "workerinput"):  # an xdist worker: the controller prints
        return
    if _OUTCOMES or _EXPECTED:
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
