"""Cluster numbering: exemplars numbered from 0 in id order, however they are partitioned."""

import numpy as np

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
