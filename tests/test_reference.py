"""The dense numpy reference is scikit-learn's algorithm: it can serve as an oracle."""

import numpy as np
import pytest
from sklearn.cluster import AffinityPropagation as SklearnAP
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_matrix, similarity_matrix
from spark_ap.testing.reference import SparseReference, affinity_propagation_dense, affinity_propagation_sparse


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("damping", [0.5, 0.9])
def test_reference_equals_sklearn_with_the_same_noise(seed, damping):
    X, _ = make_blobs(80, centers=5, random_state=seed)
    S = similarity_matrix(X)
    pref = np.median(S)
    sk = SklearnAP(affinity="precomputed", preference=pref, damping=damping, random_state=seed).fit(S)
    ref = affinity_propagation_dense(S, pref, damping=damping, random_state=np.random.RandomState(seed))
    assert ref.n_iter == sk.n_iter_
    np.testing.assert_array_equal(ref.exemplars, sk.cluster_centers_indices_)
    np.testing.assert_array_equal(ref.labels, sk.labels_)


def test_reference_without_noise_gives_the_same_clusters():
    X, _ = make_blobs(60, centers=3, random_state=3)
    S = similarity_matrix(X)
    pref = np.median(S)
    sk = SklearnAP(affinity="precomputed", preference=pref, random_state=0).fit(S)
    ref = affinity_propagation_dense(S, pref)
    np.testing.assert_array_equal(ref.labels, sk.labels_)
    assert ref.n_iter == sk.n_iter_


def _sparse_graph(n: int, keep: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random asymmetric sparse graph: the dense matrix (-inf where no edge) and its edge arrays."""
    rng = np.random.RandomState(seed)
    S = -rng.rand(n, n) * 10
    S[rng.rand(n, n) > keep] = -np.inf
    np.fill_diagonal(S, -5.0)  # the preferences, as self-edges
    src, dst = np.nonzero(np.isfinite(S))
    return S, src, dst, S[src, dst]


def test_sparse_reference_computes_the_dense_messages_bit_for_bit():
    S, src, dst, s = _sparse_graph(60, 0.3, seed=4)
    dense = affinity_propagation_dense(S, -5.0, damping=0.7, max_iter=9, stop_early=False)
    sparse = SparseReference(src, dst, s)
    for _ in range(9):
        sparse.step(0.7)
    np.testing.assert_array_equal(sparse.r, dense.R[sparse.src, sparse.dst])
    np.testing.assert_array_equal(sparse.a, dense.A[sparse.src, sparse.dst])


def test_sparse_reference_converges_like_the_dense_one():
    S, src, dst, s = _sparse_graph(50, 0.5, seed=5)
    dense = affinity_propagation_dense(S, -5.0, damping=0.8)
    _, n_iter, converged, history = affinity_propagation_sparse(src, dst, s, damping=0.8)
    assert (n_iter, converged, history) == (dense.n_iter, dense.converged, dense.history)


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 6 iterations
def test_spark_engine_computes_the_sparse_reference_messages(spark):
    S, src, dst, s = _sparse_graph(40, 0.4, seed=6)
    sparse = SparseReference(src, dst, s)
    for _ in range(6):
        sparse.step(0.6)
    result = AffinityPropagation(maxIter=6, convergenceIter=7, damping=0.6, noise=False, engine="blocks").run(
        edges_from_matrix(spark, S, diagonal=True)
    )
    got = sorted((row.src, row.dst, row.r, row.a) for row in result.messages.collect())
    assert got == sorted(
        zip(sparse.src.tolist(), sparse.dst.tolist(), sparse.r.tolist(), sparse.a.tolist(), strict=True)
    )
