"""The exact quantile behind median and quantile:Q preferences, against Spark's own percentile;
the self-edges that carry the preferences, against counts made in Python."""

from collections import Counter

import numpy as np
import pytest
from pyspark.sql import functions as F

from spark_ap.prepare.preference import add_self_edges, exact_quantile, vertex_table

QS = [0.0, 0.1, 0.25, 0.5, 0.77, 0.9, 1.0]


def _column(spark, values):
    return spark.createDataFrame([(float(v),) for v in values], "s double").localCheckpoint()


def _spark_percentiles(frame) -> list[float]:
    return frame.agg(F.percentile("s", QS)).first()[0]


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).normal(-40, 15, 5000),  # continuous
        np.random.default_rng(1).integers(-9, 1, 3000),  # ten values, heavy ties
        -np.random.default_rng(2).exponential(3.0, 4000),  # skewed: most values in a few buckets
        np.full(50, -2.5),  # all equal
        [-7.0],
        [-1.0, -3.0],
        [1e-300, -1e-300, 0.0, 5e-324, -5e-324],  # tiny range
    ],
    ids=["normal", "ties", "skewed", "equal", "one", "two", "tiny"],
)
def test_the_quantile_is_sparks_percentile_bit_for_bit(spark, values):
    frame = _column(spark, values)
    for q, expected in zip(QS, _spark_percentiles(frame), strict=True):
        got = exact_quantile(frame, "s", q)
        assert got == expected, q
        # numpy's linear interpolation rounds its own way, but to within an ulp or two of the same value.
        assert got == pytest.approx(np.quantile(np.asarray(values, dtype=float), q), rel=1e-12, abs=1e-300)


def test_narrowing_and_split_ranks_give_the_same_values(spark):
    values = np.concatenate([np.random.default_rng(3).normal(0, 1, 3000), np.linspace(5, 6, 7)])
    frame = _column(spark, values)
    for q, expected in zip(QS, _spark_percentiles(frame), strict=True):
        # Four buckets and at most 10 values collected force every path: narrowing, ranks split
        # over two buckets, a bucket small enough to sort.
        assert exact_quantile(frame, "s", q, buckets=4, collect_below=10) == expected, q


def test_nulls_are_ignored_and_no_values_give_none(spark):
    frame = spark.createDataFrame([(None,), (-3.0,), (None,), (-1.0,)], "s double")
    assert exact_quantile(frame, "s", 0.5) == _spark_percentiles(frame)[QS.index(0.5)] == -2.0
    assert exact_quantile(_column(spark, []), "s", 0.5) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_every_vertex_gets_one_self_edge_and_its_in_degree_counts_it(spark, seed):
    rng = np.random.default_rng(seed)
    # String ids, some vertices with a self-edge already, a few known only from the vertices table.
    pairs = {(f"v{i}", f"v{j}") for i, j in rng.integers(0, 30, size=(120, 2))}
    rows = [(i, j, float(-rng.random() * 10)) for i, j in sorted(pairs)]
    extra = ["v30", "v31", "v0"]
    edges = spark.createDataFrame(rows, "src string, dst string, similarity double")
    ids = spark.createDataFrame([(v,) for v in extra], "id string")

    found = {row.id: (row.into, row.looped) for row in vertex_table(edges, ids).collect()}
    vertices = {v for pair in pairs for v in pair} | set(extra)
    looped = {i for i, j in pairs if i == j}
    into = Counter(j for _, j in pairs)
    assert found == {v: (into[v] + (v not in looped), v in looped) for v in vertices}
    assert 0 < len(looped) < len(vertices)

    table = spark.createDataFrame([(v, *found[v]) for v in sorted(found)], "id string, into long, looped boolean")
    graph, value = add_self_edges(edges, table, -4.5)
    assert value == -4.5
    got = Counter((row.src, row.dst) for row in graph.collect())
    assert got == Counter(pairs) + Counter((v, v) for v in vertices - looped)
    # The in-degrees are those of the graph with its self-edges.
    assert Counter(j for _, j in got.elements()) == {v: found[v][0] for v in vertices}
