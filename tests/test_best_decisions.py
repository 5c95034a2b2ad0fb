"""A run that does not converge ends on the best decisions it saw, not on its last iteration's.

The oracle is the numpy reference (:mod:`spark_ap.testing.reference`) run iteration by
iteration: each iteration's exemplar decisions (r(k,k) + a(k,k) > 0), labelled by the reference's
assignment, their net similarity summed by brute force over the dense matrix and, with a bound,
the points placed around those exemplars by an integer program (``scipy.optimize.milp``) over
every assignment of the other points.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from spark_ap import AffinityPropagation, edges_from_matrix
from spark_ap.app.export import export_run
from spark_ap.run.best import REMEMBERED, Decisions
from spark_ap.run.loop import Settings, iterate_on_driver
from spark_ap.testing.reference import affinity_propagation_dense, assign_dense

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def blobs(seed: int, n: int = 12) -> tuple[np.ndarray, float]:
    """Squared distances of ``n`` normal points, negated, and their median as the preference."""
    X = np.random.default_rng(seed).normal(size=(n, 2))
    S = -((X[:, None] - X[None]) ** 2).sum(-1)
    return S, float(np.median(S[~np.eye(n, dtype=bool)]))


def decisions_at(S, preference, t, damping, capacity=None) -> tuple[np.ndarray, np.ndarray]:
    """The reference's exemplar decisions after exactly ``t`` iterations, and its S (preferences on
    the diagonal)."""
    ref = affinity_propagation_dense(S, preference, damping=damping, max_iter=t, stop_early=False, capacity=capacity)
    return np.flatnonzero(np.diag(ref.A) + np.diag(ref.R) > 0), ref.S


def net(Sd: np.ndarray, exemplar: np.ndarray) -> float:
    """Frey and Dueck's objective: each point's similarity to its exemplar, an exemplar's own its preference."""
    return float(Sd[np.arange(exemplar.size), exemplar].sum())


def nearest(Sd: np.ndarray, exemplars: np.ndarray) -> np.ndarray:
    """Each point's exemplar as the reference assigns them."""
    centres, cluster = assign_dense(Sd, exemplars)
    return centres[cluster]


def best_placement_net(Sd: np.ndarray, centres: np.ndarray, capacity: int) -> float:
    """The largest net similarity with exemplars ``centres``, each cluster at most ``capacity``
    points: every other point to exactly one exemplar, by an integer program; -inf when they
    cannot hold every point (a placement that leaves points out ranks below one that does not)."""
    n = Sd.shape[0]
    if centres.size * capacity < n:
        return -np.inf
    others = np.setdiff1d(np.arange(n), centres)
    point, k = (a.ravel() for a in np.meshgrid(np.arange(others.size), np.arange(centres.size), indexing="ij"))
    gain = Sd[others[point], centres[k]]
    pairs = np.arange(point.size)
    rows = sparse.csr_matrix((np.ones(point.size), (point, pairs)), shape=(others.size, point.size))
    columns = sparse.csr_matrix((np.ones(point.size), (k, pairs)), shape=(centres.size, point.size))
    solved = milp(
        -gain,
        constraints=[LinearConstraint(rows, 1, 1), LinearConstraint(columns, 0, capacity - 1)],
        integrality=np.ones(point.size),
        bounds=Bounds(0, 1),
    )
    assert solved.status == 0, solved.message
    return -solved.fun + float(Sd[centres, centres].sum())


def exemplar_per_point(result, n: int) -> np.ndarray:
    by_id = {row.id: row.exemplar for row in result.assignments.collect()}
    return np.array([by_id[i] for i in range(n)])


def run(spark, S, preference, **params):
    return AffinityPropagation(preference=preference, noise=False, **params).run(edges_from_matrix(spark, S))


def test_a_run_that_does_not_converge_ends_on_the_best_decisions_it_saw(spark):
    S, preference = blobs(11)
    n, iterations, damping = S.shape[0], 20, 0.5
    assert not affinity_propagation_dense(S, preference, damping=damping, max_iter=iterations).converged
    seen = []  # (net, iteration, each point's exemplar), per iteration with an exemplar
    for t in range(1, iterations + 1):
        exemplars, Sd = decisions_at(S, preference, t, damping)
        if exemplars.size:
            exemplar = nearest(Sd, exemplars)
            seen.append((net(Sd, exemplar), t, exemplar))
    top = max(value for value, _, _ in seen)
    best = [(t, exemplar) for value, t, exemplar in seen if value >= top - 1e-9][-1]  # of equals, the latest
    last = seen[-1]
    assert last[1] == iterations and last[0] < top - 0.1  # the instance: its last decisions are not its best

    # Plain AP, and a bound of n points (plain AP's messages and labels bit for bit).
    for bound in (0, n):
        result = run(spark, S, preference, engine="local", damping=damping, maxIter=iterations, maxClusterSize=bound)

        assert not result.converged and result.numIterations == iterations
        assert result.endedOn == "best"
        assert result.endedOnIteration == best[0]
        np.testing.assert_array_equal(exemplar_per_point(result, n), best[1])
        assert result.netSimilarity == pytest.approx(top, abs=1e-9)

    # endOn="last", scikit-learn's: the last iteration's decisions.
    result = run(spark, S, preference, engine="local", damping=damping, maxIter=iterations, endOn="last")
    assert (result.endedOn, result.endedOnIteration) == ("last", iterations)
    np.testing.assert_array_equal(exemplar_per_point(result, n), last[2])


def test_on_the_driver_a_run_that_does_not_converge_ends_on_the_best_decisions_it_saw():
    S, preference = blobs(11)
    n, iterations, damping = S.shape[0], 20, 0.5
    seen = []
    for t in range(1, iterations + 1):
        exemplars, Sd = decisions_at(S, preference, t, damping)
        if exemplars.size:
            exemplar = nearest(Sd, exemplars)
            seen.append((net(Sd, exemplar), t, exemplar))
    top = max(value for value, _, _ in seen)
    t_best, best = [(t, exemplar) for value, t, exemplar in seen if value >= top - 1e-9][-1]
    i, j = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    s = np.where(i == j, preference, S[i, j])
    settings = Settings(damping=damping, max_iter=iterations, noise="none", engine="local")

    exemplar, progress, ended_on, ended_at = iterate_on_driver(i, j, s, settings)
    last, _, ended_last, at_last = iterate_on_driver(i, j, s, replace(settings, end_on="last"))

    assert progress.t == iterations and not progress.converged(settings)
    assert (ended_on, ended_at) == ("best", t_best)
    np.testing.assert_array_equal(exemplar, best)
    assert (ended_last, at_last) == ("last", iterations)
    np.testing.assert_array_equal(last, seen[-1][2])


@pytest.mark.slow  # a capacitated run on two engines: make test-slow
def test_a_capacitated_run_that_does_not_converge_ends_on_decisions_placed_at_least_as_well_as_the_best_seen(spark):
    S, preference = blobs(15)
    n, iterations, damping, capacity = S.shape[0], 20, 0.5, 4
    assert not affinity_propagation_dense(
        S, preference, damping=damping, max_iter=iterations, capacity=capacity
    ).converged
    placed = []  # per iteration with an exemplar: the best net of a placement around its exemplars
    for t in range(1, iterations + 1):
        exemplars, Sd = decisions_at(S, preference, t, damping, capacity)
        if exemplars.size:
            exemplar = nearest(Sd, exemplars)
            fits = np.bincount(exemplar).max() <= capacity
            placed.append(net(Sd, exemplar) if fits else best_placement_net(Sd, np.unique(exemplar), capacity))
    top = max(placed)

    params = dict(damping=damping, maxIter=iterations, maxClusterSize=capacity)
    best = run(spark, S, preference, engine="local", **params)
    blocks = run(spark, S, preference, engine="blocks", **params)
    last = run(spark, S, preference, engine="blocks", endOn="last", **params)

    for result in (best, blocks, last):
        exemplar = exemplar_per_point(result, n)
        assert (exemplar >= 0).all() and np.bincount(exemplar).max() <= capacity
    assert best.endedOn == "best" and 1 <= best.endedOnIteration <= iterations
    # The placement is exact and the exemplars' refinement only adds: at least the best seen.
    assert best.netSimilarity >= top - 1e-9
    # The blocks engine ends on the same decisions, with the same placement.
    assert (blocks.endedOn, blocks.endedOnIteration) == (best.endedOn, best.endedOnIteration)
    np.testing.assert_array_equal(exemplar_per_point(blocks, n), exemplar_per_point(best, n))
    # Its last iteration's decisions fall short of it here.
    assert last.endedOn == "last" and last.endedOnIteration == iterations
    assert last.netSimilarity < top - 0.1


@pytest.mark.parametrize("engine", ["local", pytest.param("blocks", marks=pytest.mark.slow)])
def test_a_converged_run_ends_on_its_converged_decisions(spark, engine):
    S, preference = blobs(3)
    reference = affinity_propagation_dense(S, preference)
    assert reference.converged

    result = run(spark, S, preference, engine=engine)

    assert result.converged and result.numIterations == reference.n_iter
    assert result.endedOn == "converged" and result.endedOnIteration == reference.n_iter
    np.testing.assert_array_equal(exemplar_per_point(result, S.shape[0]), reference.exemplars[reference.labels])


@pytest.mark.parametrize(
    "engine, end_on",
    [
        ("blocks", "best"),
        pytest.param("graphframes", "best", marks=pytest.mark.slow),  # 20 iterations of it: make test-slow
        pytest.param("blocks", "last", marks=pytest.mark.slow),
        pytest.param("graphframes", "last", marks=pytest.mark.slow),
    ],
)
def test_a_run_that_does_not_converge_ends_on_the_same_decisions_on_every_engine(spark, engine, end_on):
    S, preference = blobs(11)
    n = S.shape[0]
    local, other = (run(spark, S, preference, engine=e, maxIter=20, endOn=end_on) for e in ("local", engine))

    assert (local.endedOn, local.endedOnIteration < 20) == (end_on, end_on == "best")
    assert (other.endedOn, other.endedOnIteration) == (local.endedOn, local.endedOnIteration)
    np.testing.assert_array_equal(exemplar_per_point(other, n), exemplar_per_point(local, n))


@pytest.mark.slow  # three whole runs: make test-slow
def test_string_ids_end_on_the_same_best_decisions_on_every_engine(spark):
    # Decisions are remembered by id: ids whose order is not their numbers' (p10 < p2).
    S, preference = blobs(11)
    n = S.shape[0]
    name = [f"p{k}" for k in range(n)]
    rows = [(name[a], name[b], float(S[a, b])) for a in range(n) for b in range(n) if a != b]
    edges = spark.createDataFrame(rows, "src string, dst string, similarity double")
    results = {
        engine: AffinityPropagation(preference=preference, noise=False, engine=engine, maxIter=20).run(edges)
        for engine in ("local", "blocks", "graphframes")
    }

    ended = {engine: (r.endedOn, r.endedOnIteration) for engine, r in results.items()}
    assert len(set(ended.values())) == 1 and ended["local"][0] == "best", ended
    labels = {engine: sorted(tuple(row) for row in r.assignments.collect()) for engine, r in results.items()}
    assert labels["blocks"] == labels["local"] == labels["graphframes"]


def test_the_summary_records_what_the_run_ended_on(spark, tmp_path):
    S, preference = blobs(11)
    result = run(spark, S, preference, engine="local", maxIter=20, maxClusterSize=S.shape[0])

    summary = json.loads((Path(export_run(result, tmp_path / "run")) / "summary.json").read_text())

    assert summary["converged"] is False
    assert summary["ended_on"] == "best" == result.endedOn
    assert summary["ended_on_iteration"] == result.endedOnIteration


def test_a_run_remembers_the_latest_distinct_exemplar_sets_each_at_its_latest_iteration():
    decisions = Decisions()
    sets = [np.array([k, k + 1]) for k in range(REMEMBERED + 10)]
    for t, exemplars in enumerate(sets, start=1):
        decisions.remember(t, exemplars)
    decisions.remember(len(sets) + 1, sets[-REMEMBERED])  # decided again: now the latest
    decisions.remember(len(sets) + 2, np.array([], dtype=int))  # no exemplar: nothing to end on

    remembered = decisions.candidates()

    assert len(remembered) == REMEMBERED
    assert [t for t, _ in remembered] == [*range(len(sets) - REMEMBERED + 2, len(sets) + 1), len(sets) + 1]
    kept = {tuple(exemplars) for _, exemplars in remembered}
    assert kept == {tuple(exemplars) for exemplars in sets[-REMEMBERED:]}


def test_a_resumed_run_ends_on_the_best_decisions_the_uninterrupted_run_saw(spark, tmp_path):
    S, preference = blobs(11)
    params = dict(maxIter=20, stateDir=str(tmp_path), checkpointInterval=5)
    first = run(spark, S, preference, engine="local", **params)
    assert first.endedOn == "best" and first.endedOnIteration < 20

    # Another engine resumes from the save of iteration 20, the last: the decisions are kept by id.
    again = run(spark, S, preference, engine="blocks", **params)

    assert again.resumedFrom == 20
    assert (again.endedOn, again.endedOnIteration) == (first.endedOn, first.endedOnIteration)
    np.testing.assert_array_equal(exemplar_per_point(again, S.shape[0]), exemplar_per_point(first, S.shape[0]))
