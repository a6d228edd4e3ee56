"""The reliability table: recorded outcomes + every *expected* kind of fault.

A test declares the kinds it covers with ``@pytest.mark.kinds(pipeline, kind, ...)`` (or
``param="kind"`` to take the kind from its parametrization). A declared kind that recorded
nothing (its fixture or test errored before ``outcome.record``) is still listed, counted as
tried once and not handled, and flagged ``unrecorded`` in the JSON line, so a broken fixture
can never make a kind vanish while the summary says ``lost: 0``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass
class KindOutcome:
    pipeline: str
    tried: int = 0
    handled: int = 0
    lost: int = 0
    recorded: bool = True


PIPELINE_ORDER = ("ingestion", "ingestion (released)", "evaluation", "qa_generation")


def expected_kinds(items: Iterable) -> list[tuple[str, str]]:
    """``(kind, pipeline)`` declared by the ``kinds`` markers of the collected ``items``."""
    out: list[tuple[str, str]] = []
    for item in items:
        for m in item.iter_markers("kinds"):
            pipeline, kinds = m.args[0], list(m.args[1:])
            param = m.kwargs.get("param")
            callspec = getattr(item, "callspec", None)
            if param and callspec is not None and param in callspec.params:
                kinds.append(callspec.params[param])
            for k in kinds:
                if not str(k).startswith("control:") and (k, pipeline) not in out:
                    out.append((k, pipeline))
    return out


def merged(outcomes: Mapping[tuple[str, str], KindOutcome],
           expected: Iterable[tuple[str, str]]) -> OrderedDict[tuple[str, str], KindOutcome]:
    """Recorded outcomes plus, for every expected kind that recorded nothing, a row tried 1 /
    handled 0 / ``recorded`` False."""
    rows: OrderedDict[tuple[str, str], KindOutcome] = OrderedDict(outcomes)
    for kind, pipeline in expected:
        if (kind, pipeline) not in rows:
            rows[(kind, pipeline)] = KindOutcome(pipeline, tried=1, handled=0, lost=0,
                                                 recorded=False)
    return rows


def report_lines(outcomes: Mapping[tuple[str, str], KindOutcome],
                 expected: Iterable[tuple[str, str]] = ()) -> list[str]:
    """The table and, last, the JSON summary line."""
    order = {p: i for i, p in enumerate(PIPELINE_ORDER)}
    rows = sorted(merged(outcomes, expected).items(),
                  key=lambda kv: order.get(kv[1].pipeline, len(order)))
    label = {k: k + ("  [NOT RECORDED: fixture/test error]" if not o.recorded else "")
             for (k, _), o in rows}
    kw = max([len("kind of fault")] + [len(v) for v in label.values()])
    pw = max([len("pipeline")] + [len(o.pipeline) for _, o in rows])
    head = f"{'kind of fault':<{kw}}  {'pipeline':<{pw}}  {'tried':>5}  {'handled':>7}  {'lost':>4}"
    lines = ["", "== reliability ==", head, "-" * len(head)]
    for (kind, _), o in rows:
        lines.append(f"{label[kind]:<{kw}}  {o.pipeline:<{pw}}  {o.tried:>5}  {o.handled:>7}  "
                     f"{o.lost:>4}")
    total = {"kinds": len(rows), "tried": sum(o.tried for _, o in rows),
             "handled": sum(o.handled for _, o in rows), "lost": sum(o.lost for _, o in rows),
             "unrecorded": sum(not o.recorded for _, o in rows)}
    lines.append("-" * len(head))
    lines.append(json.dumps(total))
    return lines


# ------------------------------------------------------------------ pytest-xdist hand-over
def to_json(outcomes: Mapping[tuple[str, str], KindOutcome],
            expected: Iterable[tuple[str, str]]) -> str:
    """A worker's raw outcomes and expected kinds, for the controller (``workeroutput``)."""
    return json.dumps({"outcomes": [[k, p, o.pipeline, o.tried, o.handled, o.lost]
                                    for (k, p), o in outcomes.items()],
                       "expected": [list(e) for e in expected]})


def merge_json(text: str, outcomes: OrderedDict[tuple[str, str], KindOutcome],
               expected: list[tuple[str, str]]) -> None:
    """Add one worker's :func:`to_json` into the controller's ``outcomes`` / ``expected``.
    Raw counts add up first; expected kinds no worker recorded become rows only when the
    table is drawn (:func:`merged`), so a kind another worker ran is never marked missing."""
    data = json.loads(text)
    for kind, pipeline, label, tried, handled, lost in data["outcomes"]:
        o = outcomes.setdefault((kind, pipeline), KindOutcome(label))
        o.tried += tried
        o.handled += handled
        o.lost += lost
    for kind, pipeline in data["expected"]:
        if (kind, pipeline) not in expected:
            expected.append((kind, pipeline))
