"""The same input and seed give the same clusters however the data is partitioned."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, InvalidParamError, edges_from_matrix, similarity_matrix
from spark_ap.prepare import noise
from tests.conftest import assignment_rows


@pytest.fixture
def shuffle_partitions(spark):
    before = spark.conf.get("spark.sql.shuffle.partitions")
    yield lambda n: spark.conf.set("spark.sql.shuffle.partitions", str(n))
    spark.conf.set("spark.sql.shuffle.partitions", before)


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # graphframes: a fixed 4 iterations
@pytest.mark.parametrize(
    "engine, points, partitions, iterations", [("blocks", 70, (1, 16), 200), ("graphframes", 20, (1, 8), 4)]
)
def test_one_and_many_shuffle_partitions_agree(spark, shuffle_partitions, engine, points, partitions, iterations):
    X, _ = make_blobs(points, centers=4, random_state=2)
    S = similarity_matrix(X)
    outcomes = []
    for n in partitions:
        shuffle_partitions(n)
        edges = edges_from_matrix(spark, S).repartition(n)
        result = AffinityPropagation(seed=3, engine=engine, maxIter=iterations, convergenceIter=5).run(edges)
        outcomes.append(
            (
                assignment_rows(result),
                result.numIterations,
                [tuple(r) for r in result.history.itertuples(index=False)],
                sorted(tuple(m) for m in result.messages.collect()),
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


def test_sklearn_noise_is_sklearns_matrix_entry_for_each_edge(spark, monkeypatch):
    # Blocks of 3 rows (of 7): the legacy generator's stream must go on across blocks.
    monkeypatch.setattr(noise, "_BLOCK", 3 * 7)
    ids = ["b", "a", "g", "c", "f", "e", "d"]  # positions in id order: a=0, b=1, ...
    rng = np.random.RandomState(4)
    pairs = [(i, k) for i in range(7) for k in range(7) if i == k or rng.rand() < 0.5]
    edges = spark.createDataFrame(
        [(ids[i], ids[k], -1.0) for i, k in pairs], "src string, dst string, similarity double"
    )
    expected = np.random.RandomState(12).standard_normal((7, 7))
    position = {name: p for p, name in enumerate(sorted(ids))}
    got = {(row.src, row.dst): row.z for row in noise.sklearn_normals(edges, 12).collect()}
    assert len(got) == len(pairs)
    for (src, dst), z in got.items():
        assert z == expected[position[src], position[dst]]


def test_sklearn_noise_refuses_graphs_too_big_to_draw_on_the_driver(spark, monkeypatch):
    monkeypatch.setattr(noise, "SKLEARN_MAX_VERTICES", 3)
    edges = edges_from_matrix(spark, -np.arange(16.0).reshape(4, 4))
    with pytest.raises(InvalidParamError, match="4 vertices, more than 3.*noise='edge'"):
        AffinityPropagation(noise="sklearn").run(edges)
