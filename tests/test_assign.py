"""Cluster numbering: exemplars numbered from 0 in id order, however they are partitioned."""

import functools

import numpy as np
import pytest

from spark_ap.engines import RunFacts, assign
from spark_ap.engines.assign import cluster_numbers
from spark_ap.engines.blocks import pack
from spark_ap.engines.blocks.engine import BlockEngine


@pytest.mark.parametrize("id_type", ["long", "string"])
@pytest.mark.parametrize("count", [None, 2300], ids=["by-partition", "on-the-driver"])
def test_clusters_are_numbered_in_exemplar_order_across_partitions(spark, count, id_type):
    # count: none known, or a bound (the rows: at most one cluster each), which numbers them on the driver.
    # String ids are ordered by code point ("v10" < "v9" < "vé"), as Python orders them.
    rng = np.random.RandomState(3)
    exemplars = [int(e) for e in rng.choice(10_000, size=300, replace=False)]
    if id_type == "string":
        exemplars = [f"v{e}" for e in exemplars[:-1]] + ["vé"]
    rows = [(i, exemplars[rng.randint(len(exemplars))]) for i in range(2000)] + [(e, e) for e in exemplars]
    if id_type == "string":
        rows = [(str(i), e) for i, e in rows]
    assigned = spark.createDataFrame(rows, f"id {id_type}, exemplar {id_type}").repartition(7)

    numbered = {row.exemplar: row.cluster for row in cluster_numbers(assigned, count).collect()}

    expected = {e: k for k, e in enumerate(sorted(exemplars))}
    assert numbered == expected


def test_no_exemplars_no_numbers(spark):
    assert cluster_numbers(spark.createDataFrame([], "id long, exemplar long")).count() == 0


def _sparse_graph(seed: int, n: int = 40):
    """A sparse graph with integer similarities (many ties) and self-edges, its edges sorted by
    (i, j), string ids in number order, and random exemplar decisions."""
    rng = np.random.RandomState(seed)
    keep = rng.rand(n, n) < (0.15, 0.4, 1.0)[seed % 3]
    np.fill_diagonal(keep, True)
    i, j = np.nonzero(keep)
    s = rng.randint(-6, 0, size=i.size).astype(float)
    decided = rng.rand(n) < 0.2
    decided[rng.randint(n)] = True
    ids = np.array([f"v{k:02d}" for k in range(n)], dtype=object)
    return i, j, s, decided, ids


@functools.cache
def _dataframe_labels(spark, seed: int) -> frozenset:
    """(id, cluster, exemplar) of ``_sparse_graph(seed)`` by the DataFrame functions the graphframes
    engine uses; computed once per seed for both tests below."""
    i, j, s, decided, ids = _sparse_graph(seed)
    state = spark.createDataFrame(
        [(ids[a], ids[b], float(v)) for a, b, v in zip(i, j, s, strict=True)], "src string, dst string, s double"
    )
    exemplars = spark.createDataFrame([(ids[k],) for k in np.flatnonzero(decided)], "id string")
    vertices = spark.createDataFrame([(v,) for v in ids], "id string")
    refined = assign.refine(state, assign.nearest_exemplar(state, exemplars))
    rows = assign.label(state, vertices, refined).select("id", "cluster", "exemplar").collect()
    return frozenset(tuple(row) for row in rows)


@pytest.mark.parametrize("seed", range(3))
def test_the_driver_assigns_as_the_dataframe_functions_do(spark, seed):
    # The local engine's numpy labels against the DataFrame functions the graphframes engine uses.
    i, j, s, decided, ids = _sparse_graph(seed)
    expected = {row[0]: row[2] for row in _dataframe_labels(spark, seed)}

    chosen = assign.label_on_driver(i, j, s, decided)

    assert {ids[k]: ids[e] for k, e in enumerate(chosen)} == expected


@pytest.mark.parametrize("seed, exchange", [(0, "driver"), (1, "routed")])
def test_the_blocks_engine_assigns_on_its_chunks_as_the_dataframe_functions_do(spark, monkeypatch, seed, exchange):
    # Chunks of about 40 edges over two partitions: every per-source maximum is merged
    # across chunks and partitions (by the driver, or by the vertices' owners), every
    # target's sum is its chunk's.
    monkeypatch.setattr(pack, "CHUNK_EDGES", 40)
    i, j, s, decided, ids = _sparse_graph(seed)
    expected = _dataframe_labels(spark, seed)
    # An edge state whose self-edges decide as ``decided`` does: r(k,k) + a(k,k) is 1 or -1.
    r = np.where((i == j) & decided[i], 1.0, -1.0)
    rows = [
        (ids[a], ids[b], float(v), float(v), float(x), 0.0, False, 1, False)
        for a, b, v, x in zip(i, j, s, r, strict=True)
    ]
    state = spark.createDataFrame(
        rows,
        "src string, dst string, similarity double, s double, r double, a double, e boolean, run int, changed boolean",
    )
    engine = BlockEngine(RunFacts(spark, 0.5, state.select("src", "dst", "similarity"), exchange=exchange))

    finished = engine.finish(engine.start(state))

    assert finished.found and {tuple(row) for row in finished.labels.collect()} == expected


def test_the_driver_finds_no_clusters_without_decisions():
    i = j = np.arange(3)
    assert assign.label_on_driver(i, j, np.zeros(3), np.zeros(3, dtype=bool)) is None
