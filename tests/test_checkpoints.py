"""Lineage stays bounded however many iterations run; durable checkpoints land where asked."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_matrix, similarity_matrix
from tests.conftest import assignment_rows


def plan_size(df) -> int:
    """Number of operators in the optimized plan (one per line of its tree string)."""
    return len(df._jdf.queryExecution().optimizedPlan().toString().strip().splitlines())


@pytest.fixture(scope="module")
def edges(spark):
    X, _ = make_blobs(20, centers=2, random_state=0)
    return edges_from_matrix(spark, similarity_matrix(X)).cache()


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")
@pytest.mark.parametrize("engine, longer", [("blocks", 12), ("graphframes", 6)])
def test_plan_does_not_grow_with_iterations(edges, engine, longer):
    sizes = []
    for iterations in (2, longer):
        ap = AffinityPropagation(maxIter=iterations, convergenceIter=100, checkpointInterval=-1, engine=engine)
        result = ap.run(edges)
        assert result.numIterations == iterations
        sizes.append(plan_size(result.messages))
    assert sizes[0] == sizes[1] < 5


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 4 iterations
def test_reliable_checkpoints_are_written(spark, edges):
    directory = spark.sparkContext.getCheckpointDir()
    before = set(_files(spark, directory))
    # The last iteration is a checkpoint the result holds on to, so Spark's
    # cleaner cannot have removed its files by the time they are looked for.
    ap = AffinityPropagation(checkpointInterval=2, checkpointKind="reliable", maxIter=4, convergenceIter=10)
    result = ap.run(edges)
    assert result.numIterations == 4
    assert set(_files(spark, directory)) - before
    assert result.messages.count() == edges.count() + 20


def _files(spark, directory: str) -> list[str]:
    import os

    path = directory.removeprefix("file:")
    return [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]


def test_many_iterations_with_frequent_checkpoints(spark):
    # Checkpointed every 3 iterations or never: the same answer. (scripts/soak.py runs 500.)
    S = -np.random.RandomState(1).rand(8, 8)
    base = dict(maxIter=45, convergenceIter=100, damping=0.9, preference=-0.5)
    with pytest.warns(UserWarning):
        a = AffinityPropagation(checkpointInterval=3, checkpointKind="reliable", **base).run(
            edges_from_matrix(spark, S)
        )
    with pytest.warns(UserWarning):
        b = AffinityPropagation(checkpointInterval=-1, **base).run(edges_from_matrix(spark, S))
    assert a.numIterations == b.numIterations == 45
    assert assignment_rows(a) == assignment_rows(b)
