"""The layer rules of docs/dev/ARCHITECTURE.md, checked on the source (every import, at module
top or inside a function): pipelines meet only in the catalog and in the layers below them; each
layer imports only its own and lower layers; the domain core imports no backend or heavy
library; every third-party import is declared in pyproject.toml."""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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


# ------------------------------------------------------------------------------ layers
# docs/dev/ARCHITECTURE.md, bottom to top. A unit is a top-level module or package of
# evads_kedro; a module may import its own layer and the layers below it, never above.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("scoring", "vden", "timeline", "taxonomy", "units", "prompts", "released_layout",
             "frames", "hashing", "paths", "params"),
    "media_backends_calls": ("video", "synth", "sample_videos", "asr_metrics", "ocr_metrics",
                             "devices", "assets", "backends", "calls", "executors"),
    "datasets": ("datasets",),
    "pipelines": ("pipelines",),
    "registry_hooks": ("pipeline_registry", "hooks", "settings", "credentials", "log_filters",
                       "__main__", "__init__"),
}
RANK = {unit: i for i, units in enumerate(LAYERS.values()) for unit in units}
LAYER_NAME = {unit: name for name, units in LAYERS.items() for unit in units}
# The domain core computes on numbers, tables and text: no model, transport or framework.
CORE_THIRD_PARTY = {"numpy", "pandas", "pyarrow", "pydantic", "pydantic_core"}


def _unit_of_file(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def _unit_of_module(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _layer_violations(files: list[Path]) -> list[str]:
    bad = []
    for f in files:
        src = _unit_of_file(f)
        for line, module in _imports(f):
            dst = _unit_of_module(module)
            if dst is None or dst == src or dst not in RANK:
                continue
            if RANK[dst] > RANK[src]:
                bad.append(f"{f.relative_to(PACKAGE)}:{line} ({LAYER_NAME[src]}) imports "
                           f"{module} ({LAYER_NAME[dst]})")
    return sorted(set(bad))


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())}
    assert units - set(RANK) == set(), "add the new module to LAYERS and ARCHITECTURE.md"


def test_no_layer_imports_a_layer_above_it() -> None:
    assert _layer_violations(sorted(PACKAGE.rglob("*.py"))) == []


def test_the_layer_rule_catches_an_upward_import(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "evads_kedro"
    (fake / "backends").mkdir(parents=True)
    f = fake / "backends" / "x.py"
    f.write_text("def g():\n    from evads_kedro.datasets.frames import FramesDataset\n"
                 "from evads_kedro.frames import FrameStack\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _layer_violations([f]) == [
        "backends/x.py:2 (media_backends_calls) imports evads_kedro.datasets.frames (datasets)",
        "backends/x.py:2 (media_backends_calls) imports "
        "evads_kedro.datasets.frames.FramesDataset (datasets)"]


def _third_party(files: list[Path]) -> dict[str, set[str]]:
    """top-level third-party module -> files importing it (anywhere in the file)."""
    out: dict[str, set[str]] = {}
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                if top not in sys.stdlib_module_names and top != "evads_kedro":
                    out.setdefault(top, set()).add(str(f.relative_to(PACKAGE)))
    return out


def test_the_domain_core_imports_no_backend_or_heavy_library() -> None:
    core_files = [f for f in sorted(PACKAGE.rglob("*.py"))
                  if LAYER_NAME.get(_unit_of_file(f)) == "core"]
    assert core_files
    heavy = {m: fs for m, fs in _third_party(core_files).items() if m not in CORE_THIRD_PARTY}
    assert heavy == {}


# ------------------------------------------------------------------------ dependencies
ROOT = PACKAGE.parents[1]


def _declared() -> dict[str, str]:
    """normalised distribution name -> where declared (main or the extra's name)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    groups = {"main": project["dependencies"], **project.get("optional-dependencies", {})}
    for group, specs in groups.items():
        for spec in specs:
            name = re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0]
            out.setdefault(_norm(name), group)
    return out


@functools.cache
def _distributions() -> dict[str, list[str]]:
    """importable top-level module -> installed distributions providing it (slow: once)."""
    import importlib.metadata as md

    return md.packages_distributions()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _assets_script_packages() -> set[str]:
    text = (ROOT / "scripts" / "install_assets.sh").read_text()
    return {_norm(m) for m in re.findall(r"^\s+([A-Za-z0-9_.-]+)==", text, flags=re.M)}


def test_every_third_party_import_of_src_is_declared() -> None:
    dists = _distributions()
    declared = _declared()
    assets = _assets_script_packages()
    undeclared = {}
    for module in _third_party(sorted(PACKAGE.rglob("*.py"))):
        names = {_norm(d) for d in dists.get(module, [])}
        if not names:
            undeclared[module] = "not installed here"
        elif not names & (set(declared) | assets):
            undeclared[module] = sorted(names)
    assert undeclared == {}, "declare these in pyproject.toml (or install_assets.sh)"


def test_rapidocr_is_installed_by_the_assets_script_and_its_runtime_is_declared() -> None:
    assert "rapidocr-onnxruntime" in _assets_script_packages()
    declared = _declared()
    for runtime in ("onnxruntime", "opencv-python-headless", "pyclipper", "shapely", "six",
                    "pyyaml", "pillow", "numpy", "tqdm"):
        assert declared.get(runtime) == "main", runtime
    assert "--no-deps" in (ROOT / "pyproject.toml").read_text()


# Declared main dependencies nothing in src imports, each with the reason it is needed.
NOT_IMPORTED_BUT_NEEDED = {
    "kedro-viz": "`kedro viz` CLI plugin (make viz)",
    "torchvision": "pinned beside torch; transformers / timm image processors import it",
    "gguf": "transformers reads the packaged SmolLM2 GGUF with it",
    "rich": "conf/logging.yml: rich.logging.RichHandler",
    "six": "RapidOCR runtime (installed --no-deps)",
    "pyclipper": "RapidOCR runtime (installed --no-deps)",
    "shapely": "RapidOCR runtime (installed --no-deps)",
    "pyyaml": "RapidOCR runtime (installed --no-deps)",
    "moviepy": "on the users' fixed stack; the sample ads are composed with PyAV (README stack table)",
}


def test_every_main_dependency_is_imported_or_has_a_reason() -> None:
    modules = _third_party(sorted(PACKAGE.rglob("*.py")))
    imported = {_norm(n) for module, names in _distributions().items()
                if module in modules for n in names}
    main = {name for name, group in _declared().items() if group == "main"}
    unused = sorted(main - imported - set(NOT_IMPORTED_BUT_NEEDED))
    assert unused == [], "drop these from pyproject.toml or say why they are needed"
