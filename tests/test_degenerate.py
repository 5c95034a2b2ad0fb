"""Small and degenerate graphs, where the answer is known without running AP."""

import numpy as np
import pytest
from sklearn.cluster import AffinityPropagation as SklearnAP

from spark_ap import (
    AffinityPropagation,
    ConvergenceWarning,
    MultiLevelAffinityPropagation,
    edges_from_matrix,
    similarity_matrix,
)
from tests.conftest import exemplars_of, labels_of


def test_one_point(spark):
    edges = spark.createDataFrame([(7, 7, -1.0)], "src long, dst long, similarity double")
    with pytest.warns(UserWarning, match="equal similarities"):
        result = AffinityPropagation().run(edges)
    assert [tuple(r) for r in result.assignments.collect()] == [(7, 0, 7)]
    assert result.numIterations == 0 and result.converged
    assert result.netSimilarity == -1.0


@pytest.mark.parametrize("preference, expected", [(-10.0, [0, 0]), (-0.5, [0, 1])])
def test_two_points_follow_sklearn(spark, preference, expected):
    S = np.array([[0.0, -1.0], [-2.0, 0.0]])
    sk = SklearnAP(affinity="precomputed", preference=preference, random_state=0).fit(S)
    result = AffinityPropagation(preference=preference).run(edges_from_matrix(spark, S))
    assert list(labels_of(result, [0, 1])) == list(sk.labels_) == expected


@pytest.mark.parametrize("preference, n_clusters", [(-5.0, 1), (-0.5, 6)])
def test_all_similarities_equal(spark, preference, n_clusters):
    # As scikit-learn: every point is an exemplar when the preference is above the
    # common similarity, otherwise all join the first point.
    S = np.full((6, 6), -1.0)
    sk = SklearnAP(affinity="precomputed", preference=preference, random_state=0)
    with pytest.warns(UserWarning):
        sk.fit(S)
    with pytest.warns(UserWarning, match="equal similarities"):
        result = AffinityPropagation(preference=preference).run(edges_from_matrix(spark, S))
    assert len(sk.cluster_centers_indices_) == n_clusters
    assert exemplars_of(result) == sorted(sk.cluster_centers_indices_)
    assert list(labels_of(result, range(6))) == list(sk.labels_)
    assert result.numIterations == sk.n_iter_ == 0


def test_disconnected_components_cluster_separately(spark):
    # Two groups with no edge between them: the sparse graph of the two blocks of
    # a dense matrix whose cross-block entries are -inf.
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(0, 1, (12, 2)), rng.normal(0, 1, (10, 2)) + 50])
    S = similarity_matrix(X)
    S[:12, 12:] = -np.inf
    S[12:, :12] = -np.inf
    result = AffinityPropagation(preference=-100.0).run(edges_from_matrix(spark, S))
    labels = labels_of(result, range(22))
    assert result.converged
    assert set(labels[:12]).isdisjoint(labels[12:])
    # With a preference far below every similarity, each component is one cluster.
    assert len(set(labels[:12])) == 1 and len(set(labels[12:])) == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_duplicate_points_do_not_split_or_tie(spark, seed):
    # Duplicates have exactly equal similarities; the noise must still settle on
    # one exemplar per group, as scikit-learn does.
    X = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 5, axis=0)
    S = similarity_matrix(X)
    sk = SklearnAP(affinity="precomputed", preference=-10.0, random_state=seed).fit(S)
    result = AffinityPropagation(preference=-10.0, seed=seed).run(edges_from_matrix(spark, S))
    labels = labels_of(result, range(15))
    assert result.converged
    assert list(labels) == list(sk.labels_) == [0] * 5 + [1] * 5 + [2] * 5
    exemplars = exemplars_of(result)
    assert [e // 5 for e in exemplars] == [0, 1, 2]


def test_vertex_without_edge_to_any_exemplar_is_its_own_cluster(spark):
    # 0, 1, 2 are close and pick one exemplar; 3 points only at 0 and 1 with a
    # similarity so low it never becomes a member... and 4 has no edges at all.
    edges = spark.createDataFrame(
        [
            (0, 1, -1.0),
            (1, 0, -1.0),
            (0, 2, -1.0),
            (2, 0, -1.0),
            (1, 2, -1.5),
            (2, 1, -1.5),
            (3, 1, -1000.0),
        ],
        "src long, dst long, similarity double",
    )
    vertices = spark.createDataFrame([(4,)], "id long")
    result = AffinityPropagation(preference=-2.0).run(edges, vertices)
    rows = {r.id: (r.cluster, r.exemplar) for r in result.assignments.collect()}
    # 0 is the exemplar of 0, 1, 2; 3's only edge leads to 1, which is not an exemplar, so 3 is
    # a singleton; 4 has no edge at all. Clusters are numbered in the order of their exemplars'
    # ids, as scikit-learn numbers them by index.
    assert rows == {0: (0, 0), 1: (0, 0), 2: (0, 0), 3: (1, 3), 4: (2, 4)}
    assert result.exemplars.count() == 3
    assert result.netSimilarity == pytest.approx(-1.0 + -1.0 + -2.0 + -2.0 + -2.0)


def test_convergence_warnings_name_the_callers_line(spark):
    # However deep in spark-ap (or in pyspark.ml's fit) a warning is raised, it points at the user's code.
    X = np.random.RandomState(2).randn(12, 2)
    features = spark.createDataFrame([(i, x.tolist()) for i, x in enumerate(X)], "id long, features array<double>")
    calls = [
        lambda: AffinityPropagation(maxIter=2, convergenceIter=3).run(edges_from_matrix(spark, similarity_matrix(X))),
        lambda: MultiLevelAffinityPropagation(maxIter=2, convergenceIter=3).fit(features),
    ]
    for call in calls:
        with pytest.warns(ConvergenceWarning) as record:
            call()
        assert [w.filename for w in record if w.category is ConvergenceWarning] == [__file__]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("engine, ids", [("local", None), ("local", "strings"), ("blocks", None)])
def test_a_run_without_exemplars_has_no_clusters(spark, engine, ids):
    # One iteration at a preference far below every similarity: no point decides to be an exemplar.
    S = similarity_matrix(np.random.RandomState(4).randn(10, 2))
    sk = SklearnAP(affinity="precomputed", preference=-1000.0, max_iter=1, random_state=0).fit(S)
    names = [f"p{k}" for k in range(10)] if ids else None
    with pytest.warns(ConvergenceWarning, match="there are no clusters"):
        result = AffinityPropagation(preference=-1000.0, maxIter=1, engine=engine).run(
            edges_from_matrix(spark, S, ids=names)
        )
    assert list(sk.labels_) == [-1] * 10
    assert sorted(tuple(r) for r in result.assignments.collect()) == sorted((v, -1, None) for v in names or range(10))
    assert result.exemplars.count() == 0 and result.netSimilarity is None
