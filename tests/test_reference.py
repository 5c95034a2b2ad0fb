"""The dense numpy reference is scikit-learn's algorithm: it can serve as an oracle."""

import numpy as np
import pytest
from sklearn.cluster import AffinityPropagation as SklearnAP
from sklearn.datasets import make_blobs

from spark_ap import similarity_matrix
from spark_ap.lib.reference import affinity_propagation_dense


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
