"""The layer rules of docs/dev/ARCHITECTURE.md, checked on the source (every import, at module
top or inside a function): pipelines meet only in the catalog and in the layers below them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "evads_kedro"
PIPELINES = sorted(p.name for p in (PACKAGE / "pipelines").iterdir()
                   if p.is_dir() and (p / "__init__.py").exists())
# Layers below the pipelines: nothing in them may import a pipeline.
SHARED_LAYERS = ("calls", "backends", "datasets", "synth")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every absolute ``evads_kedro`` import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(ln, m) for ln, m in found if m.startswith("evads_kedro")]


def _pipeline_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "pipelines" and parts[2] in PIPELINES:
        return parts[2]
    return None


def _violations(files: list[Path], allowed_pipeline) -> list[str]:
    bad = []
    for f in files:
        for line, module in _imports(f):
            target = _pipeline_of(module)
            if target is not None and target != allowed_pipeline(f):
                where = f.relative_to(PACKAGE) if f.is_relative_to(PACKAGE) else f
                bad.append(f"{where}:{line} imports {module}")
    return sorted(set(bad))


def test_there_are_five_pipelines() -> None:
    assert PIPELINES == ["density", "evaluation", "ingestion", "qa_generation", "rl_training"]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_no_pipeline_imports_another(pipeline: str) -> None:
    files = sorted((PACKAGE / "pipelines" / pipeline).rglob("*.py"))
    assert _violations(files, lambda f: pipeline) == []


def test_shared_layers_import_no_pipeline() -> None:
    files = [f for layer in SHARED_LAYERS for f in sorted((PACKAGE / layer).rglob("*.py"))]
    files += sorted(p for p in PACKAGE.glob("*.py") if p.name != "pipeline_registry.py")
    assert _violations(files, lambda f: None) == []


def test_the_rule_catches_an_upward_and_a_sideways_import(tmp_path: Path) -> None:
    """The checker itself: a hidden in-function import of another pipeline is found."""
    f = tmp_path / "x.py"
    f.write_text("def g():\n    from evads_kedro.pipelines.evaluation.nodes import judge\n"
                 "import evads_kedro.pipelines.density.nodes\n")
    assert sorted(m for _, m in _imports(f) if _pipeline_of(m)) == [
        "evads_kedro.pipelines.density.nodes", "evads_kedro.pipelines.evaluation.nodes",
        "evads_kedro.pipelines.evaluation.nodes.judge"]
    assert _violations([f], lambda _: "density") == [
        f"{f}:2 imports evads_kedro.pipelines.evaluation.nodes",
        f"{f}:2 imports evads_kedro.pipelines.evaluation.nodes.judge"]

    assert _pipeline_of("evads_kedro.calls.judge") is None
