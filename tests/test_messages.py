"""Every r and a the engine computes, against hand-computed and dense reference values."""

import numpy as np
import pytest

from spark_ap import AffinityPropagation, edges_from_matrix
from spark_ap.testing.reference import affinity_propagation_dense
from tests.conftest import dense_messages, exemplars_of, labels_of

TOL = 1e-9


def fixed_iterations(t: int, **params) -> AffinityPropagation:
    """An estimator that runs exactly t iterations with no noise."""
    return AffinityPropagation(maxIter=t, convergenceIter=t + 1, noise=False, **params)


def test_three_points_by_hand(spark):
    # s(i,k) off the diagonal, preference -3, damping 0.5, one iteration from r = a = 0.
    S = np.array([[0.0, -1.0, -4.0], [-1.0, 0.0, -2.0], [-4.0, -2.0, 0.0]])
    # Row 0: a+s = [-3, -1, -4]: max -1 (k=1), second -3.
    #   r(0,0) = -3+1 = -2, r(0,1) = -1+3 = 2, r(0,2) = -4+1 = -3
    # Row 1: [-1, -3, -2]: max -1 (k=0), second -2 -> r = [1, -2, -1]
    # Row 2: [-4, -2, -3]: max -2 (k=1), second -3 -> r = [-2, 1, -1]
    # Damped by 0.5 from zero:
    R = np.array([[-1.0, 1.0, -1.5], [0.5, -1.0, -0.5], [-1.0, 0.5, -0.5]])
    # Column 0: r(0,0) = -1, positive others 0.5 (i'=1):
    #   a(0,0) = 0.5, a(1,0) = min(0, -1 + 0) = -1, a(2,0) = min(0, -1 + 0.5) = -0.5
    # Column 1: r(1,1) = -1, positive others 1 (i'=0) and 0.5 (i'=2):
    #   a(1,1) = 1.5, a(0,1) = min(0, -1 + 0.5) = -0.5, a(2,1) = min(0, -1 + 1) = 0
    # Column 2: r(2,2) = -0.5, no positive others: a(2,2) = 0, a(0,2) = a(1,2) = -0.5
    A = 0.5 * np.array([[0.5, -0.5, -0.5], [-1.0, 1.5, -0.5], [-0.5, 0.0, 0.0]])
    with pytest.warns(UserWarning):
        result = fixed_iterations(1, preference=-3.0).run(edges_from_matrix(spark, S))
    got_R, got_A = dense_messages(result, 3)
    np.testing.assert_allclose(got_R, R, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_A, A, rtol=0, atol=1e-12)
    # r(k,k) + a(k,k) = -0.75, -0.25, -0.5: no exemplar yet, so no cluster.
    assert result.history.to_dict("records") == [{"iteration": 1, "exemplars": 0, "changed": 0}]
    assert {row.cluster for row in result.assignments.collect()} == {-1}


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # fixed iteration counts
@pytest.mark.parametrize("t", [1, 7])
def test_messages_equal_dense_reference_on_an_asymmetric_complete_graph(spark, t):
    rng = np.random.RandomState(5)
    S = -rng.rand(25, 25) * 10  # asymmetric
    pref = float(np.median(S[~np.eye(25, dtype=bool)]))
    ref = affinity_propagation_dense(S, pref, damping=0.7, max_iter=t, stop_early=False)
    result = fixed_iterations(t, damping=0.7).run(edges_from_matrix(spark, S))
    assert result.preference == pytest.approx(pref, abs=1e-12)
    got_R, got_A = dense_messages(result, 25)
    np.testing.assert_allclose(got_R, ref.R, rtol=0, atol=TOL)
    np.testing.assert_allclose(got_A, ref.A, rtol=0, atol=TOL)


def sparse_matrix(n: int, density: float, seed: int) -> np.ndarray:
    """Random asymmetric similarities with missing entries as -inf; every row keeps an edge."""
    rng = np.random.RandomState(seed)
    S = -rng.rand(n, n) * 10
    missing = rng.rand(n, n) > density
    np.fill_diagonal(missing, False)
    S[missing] = -np.inf
    return S


def test_sparse_messages_and_clusters_equal_dense_reference_with_minus_inf(spark):
    S = sparse_matrix(30, 0.4, seed=11)
    off = np.isfinite(S) & ~np.eye(30, dtype=bool)
    assert off.sum(axis=1).min() > 0
    pref = float(np.median(S[off]))
    ref = affinity_propagation_dense(S, pref, max_iter=300)
    assert ref.converged
    result = AffinityPropagation(maxIter=300, noise=False).run(edges_from_matrix(spark, S))

    # The reference's messages after the same number of iterations, on existing edges.
    assert result.numIterations == ref.n_iter
    got_R, got_A = dense_messages(result, 30)
    edge = np.isfinite(S)
    edge[np.diag_indices(30)] = True
    np.testing.assert_allclose(got_R[edge], ref.R[edge], rtol=0, atol=TOL)
    np.testing.assert_allclose(got_A[edge], ref.A[edge], rtol=0, atol=TOL)
    assert np.isnan(got_R[~edge]).all()

    # Every point has an edge to its reference exemplar, so the sparse rules agree.
    ref_exemplar = ref.exemplars[ref.labels]
    assert np.isfinite(ref.S[np.arange(30), ref_exemplar]).all()
    assert exemplars_of(result) == list(ref.exemplars)
    np.testing.assert_array_equal(labels_of(result, range(30)), ref.labels)


def test_bit_for_bit_equal_to_dense_reference_on_the_same_noisy_similarities(spark):
    # Duplicate points: exact ties that only the noise and the order of the sums
    # break. Given the engine's own noisy similarities, the dense reference must
    # reproduce every message exactly, and with it the clusters.
    X = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 4, axis=0)
    S = -((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    result = AffinityPropagation(preference=-10.0, seed=5).run(edges_from_matrix(spark, S))
    noisy = np.zeros_like(S)
    for row in result.messages.collect():
        noisy[row.src, row.dst] = row.s
    ref = affinity_propagation_dense(noisy, np.diag(noisy).copy())
    got_R, got_A = dense_messages(result, 12)
    assert result.numIterations == ref.n_iter
    np.testing.assert_array_equal(got_R, ref.R)
    np.testing.assert_array_equal(got_A, ref.A)
    np.testing.assert_array_equal(labels_of(result, range(12)), ref.labels)
