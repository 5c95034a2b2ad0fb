"""The package's layout: imports run down the layers and never in a circle.

Read from the source (every ``import``, at module level or inside a function),
so the test needs neither Spark nor the modules' dependencies.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
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
        "spark_ap.compat",
    ],
    ["spark_ap.session", "spark_ap.lineage", "spark_ap.files", "spark_ap.lock"],
    ["spark_ap.prepare"],
    ["spark_ap.engines"],
    ["spark_ap.run"],
    ["spark_ap.estimators"],
    ["spark_ap.multilevel"],
    ["spark_ap.app"],
    # Oracles and baselines for the tests and benchmarks: they may use any of it, nothing uses them.
    ["spark_ap.testing"],
]


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imported_names(module: str) -> set[str]:
    """Every absolute name ``module`` imports: ``from a import b`` counts as ``a.b`` when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def _imports(module: str) -> set[str]:
    """The spark_ap modules ``module`` imports."""
    return {name for name in _imported_names(module) if name in MODULES and name != module}


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
    launchers = ("kafka", "standalone", "airflow_stack", "hdfs", "s3", "processes")
    assert not [m for m in MODULES if m.endswith(launchers)]


def _distribution(requirement: str) -> str:
    """The normalized distribution name a requirement string starts with."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def _third_party_imports() -> dict[str, set[str]]:
    """The top-level modules beyond the standard library that spark_ap imports, and which of its modules do."""
    found: dict[str, set[str]] = {}
    for module in MODULES:
        tops = {name.split(".")[0] for name in _imported_names(module)}
        for top in tops - set(sys.stdlib_module_names) - {"spark_ap"}:
            found.setdefault(top, set()).add(module)
    return found


def test_every_module_spark_ap_imports_is_a_declared_dependency():
    # A fresh `pip install .` must be able to import the library: what it imports comes from
    # a dependency in pyproject.toml (or from one of theirs, as py4j from pyspark); the
    # application's optional parts (the DAG's tasks) may come from an extra instead.
    requirements = metadata.requires("spark-ap")
    base = {_distribution(r) for r in requirements if "extra ==" not in r}
    extras = {_distribution(r) for r in requirements if "extra ==" in r}

    def with_theirs(names: set[str]) -> set[str]:
        return names | {
            _distribution(r) for name in names for r in metadata.requires(name) or [] if "extra ==" not in r
        }

    library, application = with_theirs(base), with_theirs(base | extras)
    providers = metadata.packages_distributions()
    missing = []
    for top, importers in sorted(_third_party_imports().items()):
        allowed = application if all(m.startswith("spark_ap.app") for m in importers) else library
        if not {_distribution(d) for d in providers.get(top, [])} & allowed:
            missing.append(f"{top} (imported by {sorted(importers)[0]})")
    assert not missing, f"imported but not declared in pyproject.toml's dependencies: {missing}"


# The classic API (a SparkContext, the driver's JVM, RDDs, broadcasts) is reached only by these
# modules, each behind a gate that refuses a Spark Connect session in one line (spark_ap.compat):
# the blocks engine at its construction, Hadoop files and the state store at theirs, lineage's
# release where a DataFrame has a JVM twin, the session module and the job for the classic
# sessions they make themselves.
CLASSIC_ONLY = {
    "spark_ap.compat",
    "spark_ap.lineage",
    "spark_ap.engines.blocks",
    "spark_ap.files.hadoop",
    "spark_ap.run.state",
    "spark_ap.session",
    "spark_ap.app.job",
}


def _classic_calls(module: str) -> list[str]:
    """The lines of ``module`` that reach the classic API, comments and docstrings aside."""
    found = []
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("sparkContext", "_jvm", "_jsc", "_jrdd", "rdd"):
            found.append(f"{module}:{node.lineno} .{node.attr}")
    return found


def test_only_the_classic_only_modules_reach_the_classic_api():
    outside = [
        line
        for module in MODULES
        if not any(module == allowed or module.startswith(allowed + ".") for allowed in CLASSIC_ONLY)
        for line in _classic_calls(module)
    ]
    assert not outside, f"reach the SparkContext outside spark_ap.compat's gates: {outside}"


def test_the_classic_api_check_sees_a_sparkcontext():
    assert _classic_calls("spark_ap.engines.blocks.finish"), "the check finds nothing where the blocks engine has it"
