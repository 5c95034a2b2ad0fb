"""Lineage stays bounded however many iterations run; durable checkpoints land where asked."""

import logging
import os
import re

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, DuplicateEdgeError, edges_from_matrix, similarity_matrix
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
    # A fixed plan: a checkpoint (graphframes), or the chunks turned into rows joined with the
    # similarities (blocks: the persisted graph, whose plan is the input's, its persisted vertex
    # table's and its self-edges': recomputed from the input if an executor is lost), whatever the
    # number of iterations.
    assert sizes[0] == sizes[1] < 100


class _Snapshots(logging.Handler):
    """The checkpoint directory's files when the engine logs an iteration, while that state is alive
    (Spark's cleaner deletes a checkpoint's files once nothing refers to it)."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory, self.files = directory, {}

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"iteration (\d+)/", record.getMessage())
        if found:
            self.files[int(found.group(1))] = set(_files(self.directory))


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 4 iterations
def test_reliable_checkpoints_are_written(spark, edges, caplog):
    snapshots = _Snapshots(spark.sparkContext.getCheckpointDir())
    before = set(_files(snapshots.directory))
    ap = AffinityPropagation(
        checkpointInterval=2, checkpointKind="reliable", maxIter=4, convergenceIter=10, engine="blocks"
    )
    logging.getLogger("spark_ap").addHandler(snapshots)
    try:
        with caplog.at_level(logging.INFO, logger="spark_ap"):
            result = ap.run(edges)
    finally:
        logging.getLogger("spark_ap").removeHandler(snapshots)
    assert result.numIterations == 4
    new = {t: files - before for t, files in snapshots.files.items()}
    assert not new[1] and new[2] and new[4]  # written at iterations 2 and 4 only
    assert result.messages.count() == edges.count() + 20


def _files(directory: str) -> list[str]:
    path = directory.removeprefix("file:")
    return [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]


def test_many_iterations_with_frequent_checkpoints(spark):
    # Checkpointed every 3 iterations or never: the same answer. (scripts/soak.py runs 500.)
    S = -np.random.RandomState(1).rand(8, 8)
    base = dict(maxIter=21, convergenceIter=100, damping=0.9, preference=-0.5, engine="blocks")
    with pytest.warns(UserWarning):
        a = AffinityPropagation(checkpointInterval=3, checkpointKind="reliable", **base).run(
            edges_from_matrix(spark, S)
        )
    with pytest.warns(UserWarning):
        b = AffinityPropagation(checkpointInterval=-1, **base).run(edges_from_matrix(spark, S))
    assert a.numIterations == b.numIterations == 21
    assert assignment_rows(a) == assignment_rows(b)


def _cached_tables(spark) -> set[int]:
    """The RDDs holding persisted DataFrames (Spark names them after their plans; checkpoints have no name)."""
    held = spark.sparkContext._jsc.getPersistentRDDs()
    return {int(key) for key in held.keySet() if held[key].name() is not None}


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 3 iterations
@pytest.mark.parametrize("engine", ["local", "graphframes", "blocks"])
def test_the_persisted_graph_is_released(spark, edges, engine):
    edges.count()  # the module's input, cached before the count of what the run adds
    before = _cached_tables(spark)
    result = AffinityPropagation(maxIter=3, convergenceIter=100, engine=engine).run(edges)
    # Only the blocks engine reads the graph after the run: the result's messages join its similarities.
    assert len(_cached_tables(spark) - before) == (engine == "blocks")
    result.unpersist()
    assert _cached_tables(spark) - before == set()
    # A run that fails (a repeated pair) releases it too.
    with pytest.raises(DuplicateEdgeError):
        AffinityPropagation(maxIter=3, engine=engine).run(edges.union(edges.limit(1)))
    assert _cached_tables(spark) - before == set()
