"""Edge tables from matrices and feature tables."""

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors
from sklearn.metrics.pairwise import cosine_similarity, euclidean_distances

from spark_ap import InvalidInputError, edges_from_features, edges_from_matrix, similarity_matrix


def test_similarity_matrix_matches_sklearn():
    X = np.random.RandomState(0).normal(size=(20, 3))
    np.testing.assert_allclose(similarity_matrix(X), -euclidean_distances(X, squared=True), atol=1e-10)
    np.testing.assert_allclose(similarity_matrix(X, "cosine"), cosine_similarity(X), atol=1e-12)


def test_matrix_edges_skip_diagonal_and_missing(spark):
    S = np.array([[0.0, -1.0, -np.inf], [-2.0, 0.0, -3.0], [np.nan, -4.0, 0.0]])
    rows = sorted(tuple(r) for r in edges_from_matrix(spark, S).collect())
    assert rows == [(0, 1, -1.0), (1, 0, -2.0), (1, 2, -3.0), (2, 1, -4.0)]
    with_diag = edges_from_matrix(spark, S, ids=["a", "b", "c"], diagonal=True)
    assert ("a", "a", 0.0) in [tuple(r) for r in with_diag.collect()]


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("as_vector", [False, True])
def test_feature_edges_equal_dense_similarities(spark, metric, as_vector):
    X = np.random.RandomState(1).normal(size=(8, 3))
    rows = [(i, Vectors.dense(x) if as_vector else [float(v) for v in x]) for i, x in enumerate(X)]
    features = spark.createDataFrame(rows, ["id", "features"])
    S = similarity_matrix(X, metric)
    got = {(r.src, r.dst): r.similarity for r in edges_from_features(features, metric=metric).collect()}
    assert len(got) == 8 * 7
    for (i, k), s in got.items():
        assert s == pytest.approx(S[i, k], abs=1e-9)


def test_feature_column_must_be_numeric_array(spark):
    features = spark.createDataFrame([(0, "x"), (1, "y")], ["id", "features"])
    with pytest.raises(InvalidInputError, match="'features' has type string"):
        edges_from_features(features)
