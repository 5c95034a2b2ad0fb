"""scikit-learn's own AffinityPropagation tests (sklearn/cluster/tests/test_affinity_propagation.py),
ported to spark-ap on complete graphs with ``noise="sklearn"``, on every engine.

scikit-learn is the oracle: each case runs it on the same similarities and compares every point's
exemplar, not only the numbers its test asserts. Cases that test scikit-learn's API alone (sparse
input, ``copy``, the shape check of a dense matrix, ``predict`` before ``fit``) have no spark-ap
counterpart and are left out.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.cluster import AffinityPropagation as SklearnAP
from sklearn.cluster import affinity_propagation
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.metrics import euclidean_distances

from spark_ap import AffinityPropagation, ConvergenceWarning, MultiLevelAffinityPropagation, edges_from_matrix
from tests.conftest import feature_frame

# The local engine in `make test`; the Spark engines, whose every run costs seconds, in `make test-slow`.
ENGINES = ["local", pytest.param("blocks", marks=pytest.mark.slow), pytest.param("graphframes", marks=pytest.mark.slow)]

# The module's data: three blobs of 20 points around (11, 11), (9, 9), (11, 9).
CENTERS = np.array([[1, 1], [-1, -1], [1, -1]]) + 10
X, _ = make_blobs(n_samples=60, n_features=2, centers=CENTERS, cluster_std=0.4, shuffle=True, random_state=0)


def exemplar_per_point(result, n: int) -> np.ndarray:
    """Each point's exemplar (-1 for none), points 0..n-1."""
    by_id = {row.id: row.exemplar for row in result.assignments.collect()}
    return np.array([-1 if by_id[i] is None else by_id[i] for i in range(n)])


def sklearn_exemplars(centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.where(labels >= 0, np.asarray(centers)[np.maximum(labels, 0)] if len(centers) else -1, -1)


def run(spark, S, engine, **params):
    """spark-ap on the complete graph of ``S`` (the diagonal left out: ``preference`` gives it)."""
    return AffinityPropagation(noise="sklearn", engine=engine, **params).run(edges_from_matrix(spark, S))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", [0, 42])
def test_affinity_propagation(spark, engine, seed):
    S = -euclidean_distances(X, squared=True)
    preference = float(np.median(S) * 10)
    centers, labels = affinity_propagation(S, preference=preference, random_state=seed)

    result = run(spark, S, engine, preference=preference, seed=seed)

    assert len(centers) == 3 and result.exemplars.count() == 3
    np.testing.assert_array_equal(exemplar_per_point(result, 60), sklearn_exemplars(centers, labels))


@pytest.mark.parametrize("engine", ENGINES)
def test_affinity_propagation_precomputed(spark, engine):
    # scikit-learn: the precomputed matrix and the features give the same labels. spark-ap: the
    # complete graph of that matrix, and the feature table through the multi-level estimator (one
    # all-pairs level), give scikit-learn's.
    S = -euclidean_distances(X, squared=True)
    preference = float(np.median(S) * 10)
    sk = SklearnAP(preference=preference, affinity="precomputed", random_state=28).fit(S)
    expected = sklearn_exemplars(sk.cluster_centers_indices_, sk.labels_)

    from_matrix = run(spark, S, engine, preference=preference, seed=28)
    from_features = MultiLevelAffinityPropagation(preference=preference, noise="sklearn", seed=28, engine=engine).run(
        feature_frame(spark, X)
    )

    np.testing.assert_array_equal(exemplar_per_point(from_matrix, 60), expected)
    assert from_features.exemplars.count() == len(sk.cluster_centers_indices_) == 3
    assert sorted(r.exemplar for r in from_features.exemplars.collect()) == sorted(sk.cluster_centers_indices_)


def test_affinity_propagation_predict(spark):
    # fit_predict and predict agree: the model assigns the points it was fit on to their clusters.
    model = MultiLevelAffinityPropagation(noise="sklearn", seed=0).fit(feature_frame(spark, X))
    fitted = {row.id: row.cluster for row in model.summary.assignments.collect()}
    predicted = {row.id: row.cluster for row in model.transform(feature_frame(spark, X)).collect()}
    assert predicted == fitted


@pytest.mark.parametrize("engine", ENGINES)
def test_affinity_propagation_fit_non_convergence(spark, engine):
    # One iteration cannot converge: no cluster, every point labelled -1, and a warning.
    points = np.array([[0, 0], [1, 1], [-2, -2]], dtype=float)
    S = -euclidean_distances(points, squared=True)
    sk = SklearnAP(preference=-10, max_iter=1, random_state=82)
    with pytest.warns(SklearnConvergenceWarning):
        sk.fit(points)

    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = run(spark, S, engine, preference=-10.0, maxIter=1, seed=82)

    assert list(sk.labels_) == [-1, -1, -1]
    assert sorted(r.cluster for r in result.assignments.collect()) == [-1, -1, -1]
    assert result.exemplars.count() == 0 and not result.converged


@pytest.mark.parametrize("engine", ENGINES)
def test_affinity_propagation_equal_mutual_similarities(spark, engine):
    points = np.array([[-1, 1], [1, -1]], dtype=float)
    S = -euclidean_distances(points, squared=True)

    # A preference above the similarity: every point is an exemplar; below: the first one.
    for preference, expected in ((0.0, [0, 1]), (-10.0, [0, 0])):
        with pytest.warns(UserWarning, match="mutually equal"):
            centers, labels = affinity_propagation(S, preference=preference)
        with pytest.warns(UserWarning, match="mutually equal"):
            result = run(spark, S, engine, preference=preference)
        assert list(sklearn_exemplars(centers, labels)) == expected
        assert list(exemplar_per_point(result, 2)) == expected

    # Different preferences (per vertex): no shortcut, no warning; the higher one is the exemplar.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        centers, labels = affinity_propagation(S, preference=[-20, -10], random_state=37)
        vertices = spark.createDataFrame([(0, -20.0), (1, -10.0)], "id long, preference double")
        result = AffinityPropagation(noise="sklearn", seed=37, engine=engine).run(edges_from_matrix(spark, S), vertices)
    assert list(sklearn_exemplars(centers, labels)) == [1, 1]
    assert list(exemplar_per_point(result, 2)) == [1, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_affinity_propagation_non_convergence_regressiontest(spark, engine):
    points = np.array([[1, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0], [0, 0, 1, 0, 0, 1]], dtype=float)
    S = -euclidean_distances(points, squared=True)
    sk = SklearnAP(affinity="euclidean", max_iter=2, random_state=34)
    with pytest.warns(SklearnConvergenceWarning, match="did not converge"):
        sk.fit(points)

    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = run(spark, S, engine, preference=float(np.median(S)), maxIter=2, seed=34, endOn="last")

    assert list(sk.labels_) == [0, 0, 0]
    np.testing.assert_array_equal(
        exemplar_per_point(result, 3), sklearn_exemplars(sk.cluster_centers_indices_, sk.labels_)
    )


@pytest.mark.parametrize(
    "points, preference, shortcut",
    [
        ([[0, 0], [1, 1], [-2, -2]], 0.0, False),  # unequal similarities
        ([[0, 0], [1, 1]], [0.0, 1.0], False),  # equal similarities, different preferences
        ([[0, 0], [1, 1]], [0.0, 0.0], True),  # equal similarities and preferences
        ([[0, 0], [1, 1]], 0.0, True),
    ],
)
def test_equal_similarities_and_preferences(spark, points, preference, shortcut):
    # scikit-learn's _equal_similarities_and_preferences, through the shortcut it decides: with
    # it, a warning and no iteration.
    S = -euclidean_distances(np.array(points, dtype=float), squared=True)
    n = len(S)
    edges = edges_from_matrix(spark, S)
    if isinstance(preference, list):
        vertices = spark.createDataFrame(list(enumerate(preference)), "id long, preference double")
        ap, args = AffinityPropagation(noise="sklearn"), (edges, vertices)
    else:
        ap, args = AffinityPropagation(noise="sklearn", preference=preference), (edges,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ap.run(*args)
    warned = any("mutually equal" in str(w.message) for w in caught)
    assert warned == shortcut
    assert (result.numIterations == 0) == shortcut
    sk_centers, sk_labels = affinity_propagation(S, preference=preference, random_state=0)
    np.testing.assert_array_equal(exemplar_per_point(result, n), sklearn_exemplars(sk_centers, sk_labels))


@pytest.mark.parametrize("engine", ENGINES)
def test_affinity_propagation_random_state(spark, engine):
    # After two iterations the exemplars depend on the noise: seeds 0 and 76 disagree, and each is
    # exactly scikit-learn's with that random_state.
    X300, _ = make_blobs(n_samples=300, centers=[[1, 1], [-1, -1], [1, -1]], cluster_std=0.5, random_state=0)
    S = -euclidean_distances(X300, squared=True)
    preference = float(np.median(S))  # scikit-learn's default: the median of S, diagonal included
    per_seed = {}
    for seed in (0, 76):
        sk = SklearnAP(convergence_iter=1, max_iter=2, random_state=seed).fit(X300)
        result = run(spark, S, engine, preference=preference, maxIter=2, convergenceIter=1, seed=seed)
        assert result.numIterations == sk.n_iter_
        mine = exemplar_per_point(result, 300)
        np.testing.assert_array_equal(mine, sklearn_exemplars(sk.cluster_centers_indices_, sk.labels_))
        per_seed[seed] = mine
    assert (per_seed[0] != per_seed[76]).any()


@pytest.mark.parametrize("engine", ENGINES)
def test_correct_clusters(spark, engine):
    S = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=float)
    sk = SklearnAP(preference=1, affinity="precomputed", random_state=0).fit(S)

    result = run(spark, S, engine, preference=1.0, seed=0)

    assert list(sk.labels_) == [0, 1, 1, 2]
    assert sorted(r.cluster for r in result.assignments.collect()) == [0, 1, 1, 2]
    np.testing.assert_array_equal(
        exemplar_per_point(result, 4), sklearn_exemplars(sk.cluster_centers_indices_, sk.labels_)
    )


def test_affinity_propagation_equal_points(spark):
    # Equal points are one cluster, not several.
    points = np.zeros((8, 1))
    sk = SklearnAP(affinity="euclidean", damping=0.5, random_state=42).fit(points)
    with pytest.warns(UserWarning, match="mutually equal"):
        result = MultiLevelAffinityPropagation(noise="sklearn", seed=42).run(feature_frame(spark, points))
    assert set(sk.labels_) == {0}
    assert {r.cluster for r in result.assignments.collect()} == {0}
