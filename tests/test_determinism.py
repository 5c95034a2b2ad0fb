"""The same input and seed give the same clusters however the data is partitioned."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_matrix, similarity_matrix
from tests.conftest import assignment_rows


@pytest.fixture
def shuffle_partitions(spark):
    before = spark.conf.get("spark.sql.shuffle.partitions")
    yield lambda n: spark.conf.set("spark.sql.shuffle.partitions", str(n))
    spark.conf.set("spark.sql.shuffle.partitions", before)


def test_one_and_sixteen_shuffle_partitions_agree(spark, shuffle_partitions):
    X, _ = make_blobs(70, centers=4, random_state=2)
    S = similarity_matrix(X)
    outcomes = []
    for n in (1, 16):
        shuffle_partitions(n)
        edges = edges_from_matrix(spark, S).repartition(n)
        result = AffinityPropagation(seed=3).run(edges)
        outcomes.append(
            (
                assignment_rows(result),
                result.numIterations,
                [tuple(r) for r in result.history.itertuples(index=False)],
            )
        )
    assert outcomes[0] == outcomes[1]


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # fixed iteration counts
def test_noise_is_a_function_of_seed_and_edge(spark, shuffle_partitions):
    S = -np.arange(16, dtype=float).reshape(4, 4)
    by_partitions = []
    for n in (1, 8):
        shuffle_partitions(n)
        result = AffinityPropagation(maxIter=1, seed=9, preference=-1.0).run(edges_from_matrix(spark, S).repartition(n))
        by_partitions.append(sorted((r.src, r.dst, r.s) for r in result.messages.collect()))
    assert by_partitions[0] == by_partitions[1]
    other_seed = AffinityPropagation(maxIter=1, seed=10, preference=-1.0).run(edges_from_matrix(spark, S))
    assert sorted((r.src, r.dst, r.s) for r in other_seed.messages.collect()) != by_partitions[0]
    # The noise is tiny: relative size around machine epsilon.
    for src, dst, s in by_partitions[0]:
        original = -1.0 if src == dst else S[src, dst]
        assert abs(s - original) <= 1e-14 * max(1.0, abs(original))
