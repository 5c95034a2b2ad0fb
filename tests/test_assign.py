"""Cluster numbering: exemplars numbered from 0 in id order, however they are partitioned."""

import numpy as np
import pytest

from spark_ap.lib import assign
from spark_ap.lib.assign import cluster_numbers


def test_clusters_are_numbered_in_exemplar_order_across_partitions(spark):
    rng = np.random.RandomState(3)
    exemplars = rng.choice(10_000, size=300, replace=False)
    rows = [(int(i), int(rng.choice(exemplars))) for i in range(2000)] + [(int(e), int(e)) for e in exemplars]
    assigned = spark.createDataFrame(rows, "id long, exemplar long").repartition(7)

    numbered = {row.exemplar: row.cluster for row in cluster_numbers(assigned).collect()}

    expected = {int(e): k for k, e in enumerate(sorted(exemplars))}
    assert numbered == expected


def test_no_exemplars_no_numbers(spark):
    assert cluster_numbers(spark.createDataFrame([], "id long, exemplar long")).count() == 0


@pytest.mark.parametrize("seed", range(3))
def test_the_driver_assigns_as_the_dataframe_functions_do(spark, seed):
    # Sparse graphs with integer similarities (many ties), random decisions, string ids:
    # the local engine's numpy labels against the DataFrame functions the other engines use.
    rng = np.random.RandomState(seed)
    n = 40
    keep = rng.rand(n, n) < (0.15, 0.4, 1.0)[seed % 3]
    np.fill_diagonal(keep, True)
    i, j = np.nonzero(keep)  # sorted by (i, j)
    s = rng.randint(-6, 0, size=i.size).astype(float)
    decided = rng.rand(n) < 0.2
    decided[rng.randint(n)] = True
    ids = np.array([f"v{k:02d}" for k in range(n)], dtype=object)  # numbers in id order
    state = spark.createDataFrame(
        [(ids[a], ids[b], float(v)) for a, b, v in zip(i, j, s, strict=True)], "src string, dst string, s double"
    )
    exemplars = spark.createDataFrame([(ids[k],) for k in np.flatnonzero(decided)], "id string")
    vertices = spark.createDataFrame([(v,) for v in ids], "id string")
    refined = assign.refine(state, assign.nearest_exemplar(state, exemplars))
    expected = {row.id: row.exemplar for row in assign.label(state, vertices, refined).collect()}

    chosen = assign.label_on_driver(i, j, s, decided)

    assert {ids[k]: ids[e] for k, e in enumerate(chosen)} == expected


def test_the_driver_finds_no_clusters_without_decisions():
    i = j = np.arange(3)
    assert assign.label_on_driver(i, j, np.zeros(3), np.zeros(3, dtype=bool)) is None
