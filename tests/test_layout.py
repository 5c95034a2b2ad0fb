"""The package's layout: imports run down the layers and never in a circle.

Read from the source (every ``import``, at module level or inside a function),
so the test needs neither Spark nor the modules' dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from spark_ap import engines, params

ROOT = Path(__file__).resolve().parent.parent / "spark_ap"

# Lower layers first. A module may import its own layer's modules and those of the layers below,
# never above. The package's root (spark_ap/__init__.py) is the public facade and imports lazily.
LAYERS = [
    [
        "spark_ap.errors",
        "spark_ap.params",
        "spark_ap.checksums",
        "spark_ap.paths",
        "spark_ap._workers",
        "spark_ap.testing",
    ],
    ["spark_ap.session", "spark_ap.lineage", "spark_ap.files", "spark_ap.lock"],
    ["spark_ap.prepare"],
    ["spark_ap.engines"],
    ["spark_ap.run"],
    ["spark_ap.estimators"],
    ["spark_ap.multilevel"],
    ["spark_ap.app"],
]


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """The spark_ap modules ``module`` imports: ``from a import b`` counts as ``a.b`` when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {name for name in found if name in MODULES and name != module}


def _layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: place it")


GRAPH = {module: _imports(module) for module in MODULES if module != "spark_ap"}


def test_every_module_has_a_layer():
    for module in GRAPH:
        _layer(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_layers(module):
    up = sorted(name for name in GRAPH[module] if name != "spark_ap" and _layer(name) > _layer(module))
    assert not up, f"{module} imports {up}, a layer above it"


def test_no_import_circle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for name in sorted(GRAPH.get(module, ())):
            if state.get(name) == "open":
                circle = path[path.index(name) :] if name in path else [name]
                raise AssertionError("import circle: " + " -> ".join([*circle, name]))
            if name not in state:
                visit(name, [*path, name])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_the_layout_test_sees_a_circle_and_an_arrow_up():
    # The checks above can fail: the assignment importing the local engine (which imports it),
    # and an engine importing the loop.
    saved = dict(GRAPH)
    try:
        GRAPH["spark_ap.engines.assign"] = {*GRAPH["spark_ap.engines.assign"], "spark_ap.engines.local"}
        with pytest.raises(AssertionError, match="import circle"):
            test_no_import_circle()
        GRAPH["spark_ap.engines.local"] = {*GRAPH["spark_ap.engines.local"], "spark_ap.run.loop"}
        with pytest.raises(AssertionError, match="a layer above"):
            test_imports_point_down_the_layers("spark_ap.engines.local")
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_the_engine_registry_names_every_engine_users_choose():
    assert set(engines.ENGINES) == set(params.ENGINES) - {"auto"}
    for name in engines.ENGINES:
        module, _, attribute = engines.ENGINES[name].partition(":")
        assert module in MODULES and f"class {attribute}" in MODULES[module].read_text()


def test_the_test_launchers_are_not_in_the_package():
    assert not [m for m in MODULES if m.endswith(("kafka", "standalone", "airflow_stack"))]
