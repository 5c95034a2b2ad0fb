"""Dense numpy reference of Affinity Propagation, for tests and benchmarks.

This is scikit-learn's update loop (``sklearn/cluster/_affinity_propagation.py``)
written out once more, with three differences that make it a usable oracle:

* the degeneracy noise is optional (``random_state=None`` turns it off), so
  messages can be compared to the last bit that floating point allows;
* missing edges may be given as ``-inf``: the equations then carry no message
  along them, which is what the sparse Spark engine computes;
* it returns the messages ``R`` and ``A`` and the per-iteration history.

It holds N x N matrices, so it is only for small inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DenseResult:
    """What :func:`affinity_propagation_dense` returns."""

    exemplars: np.ndarray  # sorted indices of the exemplars
    labels: np.ndarray  # cluster index per point (-1 when there is no exemplar)
    n_iter: int
    converged: bool
    R: np.ndarray
    A: np.ndarray
    S: np.ndarray  # the similarities used, preferences and noise included
    history: list[tuple[int, int, int]]  # (iteration, exemplars, changed)


def affinity_propagation_dense(
    S: np.ndarray,
    preference: float | np.ndarray,
    *,
    damping: float = 0.5,
    max_iter: int = 200,
    convergence_iter: int = 15,
    random_state: np.random.RandomState | None = None,
    stop_early: bool = True,
    capacity: int | None = None,
) -> DenseResult:
    """Run Affinity Propagation on a dense similarity matrix.

    Parameters
    ----------
    S : ndarray of shape (n, n)
        Similarities; ``-inf`` marks a missing edge. The diagonal is ignored.
    preference : float or ndarray of shape (n,)
        Placed on the diagonal.
    damping, max_iter, convergence_iter
        As in scikit-learn.
    random_state : RandomState or None
        When given, scikit-learn's degeneracy noise is added with it, drawn in
        the same order as scikit-learn draws it; None adds no noise.
    stop_early : bool
        False runs exactly ``max_iter`` iterations whatever the convergence test
        says, for comparing messages after a fixed number of iterations.
    capacity : int or None
        Capacitated AP's availabilities (:func:`capacitated_availabilities`):
        at most ``capacity`` points per cluster. The final assignment here
        stays the nearest exemplar's.
    """
    S = np.array(S, dtype=float)
    n = S.shape[0]
    S.flat[:: n + 1] = preference
    if random_state is not None:
        finite = np.isfinite(S)
        noise = (np.finfo(float).eps * S + np.finfo(float).tiny * 100) * random_state.standard_normal((n, n))
        S[finite] += noise[finite]

    A = np.zeros((n, n))
    R = np.zeros((n, n))
    window = np.zeros((n, convergence_iter), dtype=bool)
    rows = np.arange(n)
    history = []
    previous = np.zeros(n, dtype=bool)
    converged = False

    for it in range(max_iter):
        # Responsibilities: r(i,k) = s(i,k) - max_{k' != k} (a(i,k') + s(i,k'))
        AS = A + S
        I = np.argmax(AS, axis=1)
        Y = AS[rows, I]
        AS[rows, I] = -np.inf
        Y2 = np.max(AS, axis=1)
        Rnew = S - Y[:, None]
        Rnew[rows, I] = S[rows, I] - Y2
        R = damping * R + (1 - damping) * Rnew

        # Availabilities: a(i,k) = min(0, r(k,k) + sum_{i' not in {i,k}} max(0, r(i',k)))
        #                 a(k,k) = sum_{i' != k} max(0, r(i',k))
        if capacity is None:
            Rp = np.maximum(R, 0)
            Rp.flat[:: n + 1] = R.flat[:: n + 1]
            Anew = np.sum(Rp, axis=0) - Rp
            dA = np.diag(Anew).copy()
            Anew = np.minimum(Anew, 0)
            Anew.flat[:: n + 1] = dA
        else:
            Anew = capacitated_availabilities(R, capacity)
        A = damping * A + (1 - damping) * Anew

        E = (np.diag(A) + np.diag(R)) > 0
        history.append((it + 1, int(E.sum()), int((E != previous).sum())))
        previous = E
        window[:, it % convergence_iter] = E
        if stop_early and it >= convergence_iter:
            se = window.sum(axis=1)
            if np.all((se == convergence_iter) | (se == 0)) and E.sum() > 0:
                converged = True
                break

    exemplars, labels = assign_dense(S, np.flatnonzero(E))
    return DenseResult(exemplars, labels, it + 1, converged, R, A, S, history)


def capacitated_availabilities(R: np.ndarray, capacity: int) -> np.ndarray:
    """Capacitated AP's availabilities before damping, column by column from a dense R.

    For column k, with v_1 >= v_2 >= ... the positive r(i',k), i' != k (ties: the
    smaller i' first), the capacity L keeps v_1 .. v_{L-1}; for i != k

        a(i,k) = min(r(k,k) + sum of the L-2 largest v other than i's,
                     -(the (L-1)-th largest v other than i's))

    (0 for a missing v; the sum over the kept terms is a column sum in row
    order, as plain AP's, with the terms left out set to 0), and a(k,k) is the
    sum of the L-1 largest v. See docs/capacity.md for the derivation.
    """
    n = R.shape[0]
    if capacity == 1:  # nobody may join another
        Anew = np.full((n, n), -np.inf)
        Anew.flat[:: n + 1] = 0.0
        return Anew
    diagonal = np.eye(n, dtype=bool)
    Rp = np.maximum(R, 0)
    Rp.flat[:: n + 1] = R.flat[:: n + 1]
    kept = np.zeros((n, n), dtype=bool)
    last = np.zeros(n)  # v_{L-1} per column, 0 when there are fewer
    beyond = np.zeros(n)  # v_L per column
    has_last = np.zeros(n, dtype=bool)
    for k in range(n):
        ranked = sorted((i for i in range(n) if i != k and R[i, k] > 0), key=lambda i: (-R[i, k], i))
        kept[ranked[: capacity - 1], k] = True
        if len(ranked) >= capacity - 1 and capacity >= 2:
            last[k], has_last[k] = R[ranked[capacity - 2], k], True
        if len(ranked) >= capacity:
            beyond[k] = R[ranked[capacity - 1], k]
    dropped = (R > 0) & ~diagonal & ~kept
    W = np.sum(np.where(dropped, 0.0, Rp), axis=0)
    others = np.where(kept | diagonal | ~has_last[None, :], Rp, last[None, :])
    bound = np.where(kept, beyond[None, :], last[None, :])
    Anew = np.where(bound > 0, np.minimum(W - others, -bound), np.minimum(W - others, 0))
    Anew.flat[:: n + 1] = (W - Rp).flat[:: n + 1]
    return Anew


def assign_dense(S: np.ndarray, exemplars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's final assignment and exemplar refinement."""
    n = S.shape[0]
    I = np.array(exemplars, dtype=int)
    K = I.size
    if K == 0:
        return np.array([], dtype=int), np.full(n, -1)
    c = np.argmax(S[:, I], axis=1)
    c[I] = np.arange(K)
    for k in range(K):
        ii = np.flatnonzero(c == k)
        I[k] = ii[np.argmax(np.sum(S[ii[:, None], ii], axis=0))]
    c = np.argmax(S[:, I], axis=1)
    c[I] = np.arange(K)
    labels = I[c]
    centers = np.unique(labels)
    return centers, np.searchsorted(centers, labels)


class SparseReference:
    """Affinity Propagation on an edge list with numpy, one core: the sparse engine's oracle.

    The same equations as :func:`affinity_propagation_dense`, along the given
    edges only, vectorised over edges sorted by source (``np.maximum.reduceat``
    per source, ``np.bincount`` per target). The per-target sums add the edges
    in source order, as the dense column sum and the Spark engine do, so all
    three compute the same messages bit for bit.

    Parameters
    ----------
    src, dst : ndarray of int
        Vertex indices 0..n-1; every vertex needs a self-edge (its preference).
    s : ndarray of float
        Similarities, noise included if any.
    """

    def __init__(self, src: np.ndarray, dst: np.ndarray, s: np.ndarray) -> None:
        order = np.lexsort((dst, src))
        self.src, self.dst, self.s = src[order], dst[order], np.asarray(s, dtype=float)[order]
        self.n = int(max(self.src.max(), self.dst.max())) + 1
        self.starts = np.flatnonzero(np.r_[True, self.src[1:] != self.src[:-1]])
        self.self_edge = np.flatnonzero(self.src == self.dst)
        if self.starts.size != self.n or self.self_edge.size != self.n:
            raise ValueError("every vertex 0..n-1 needs an outgoing edge and a self-edge")
        self.r = np.zeros_like(self.s)
        self.a = np.zeros_like(self.s)
        self._positions = np.arange(self.s.size)

    def step(self, damping: float) -> np.ndarray:
        """One iteration; returns the exemplar decision per vertex."""
        src, s, starts = self.src, self.s, self.starts
        # r(i,k) = s(i,k) - max_{k' != k} (a(i,k') + s(i,k')); ties go to the smallest k', as argmax does.
        as_ = self.a + s
        largest = np.maximum.reduceat(as_, starts)
        first = np.minimum.reduceat(np.where(as_ == largest[src], self._positions, s.size), starts)
        masked = as_.copy()
        masked[first] = -np.inf
        second = np.maximum.reduceat(masked, starts)
        computed = s - largest[src]
        computed[first] = s[first] - second
        self.r = damping * self.r + (1 - damping) * computed
        # a(i,k) = min(0, r(k,k) + sum_{i' not in {i,k}} max(0, r(i',k))), a(k,k) = sum_{i' != k} max(0, r(i',k))
        own = np.maximum(self.r, 0)
        own[self.self_edge] = self.r[self.self_edge]
        total = np.bincount(self.dst, weights=own, minlength=self.n)[self.dst]
        computed = np.minimum(total - own, 0)
        computed[self.self_edge] = (total - own)[self.self_edge]
        self.a = damping * self.a + (1 - damping) * computed
        return (self.r + self.a)[self.self_edge] > 0


def affinity_propagation_sparse(
    src: np.ndarray,
    dst: np.ndarray,
    s: np.ndarray,
    *,
    damping: float = 0.5,
    max_iter: int = 200,
    convergence_iter: int = 15,
) -> tuple[SparseReference, int, bool, list[tuple[int, int, int]]]:
    """Iterate :class:`SparseReference` with scikit-learn's convergence test.

    Returns the reference (its ``r`` and ``a`` per sorted edge), the number of
    iterations, whether it converged, and the history (iteration, exemplars, changed).
    """
    ref = SparseReference(src, dst, s)
    window = np.zeros((ref.n, convergence_iter), dtype=bool)
    previous = np.zeros(ref.n, dtype=bool)
    history = []
    converged = False
    for it in range(max_iter):
        E = ref.step(damping)
        history.append((it + 1, int(E.sum()), int((E != previous).sum())))
        previous = E
        window[:, it % convergence_iter] = E
        if it >= convergence_iter:
            se = window.sum(axis=1)
            if np.all((se == convergence_iter) | (se == 0)) and E.sum() > 0:
                converged = True
                break
    return ref, it + 1, converged, history
