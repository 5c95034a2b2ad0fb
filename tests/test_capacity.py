"""Capacitated AP: at most L points per cluster, from Givoni and Frey's binary model."""

import itertools
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import AffinityPropagation as SklearnAP
from sklearn.datasets import make_blobs

from spark_ap import (
    AffinityPropagation,
    MultiLevelAffinityPropagation,
    edges_from_matrix,
    similarity_matrix,
)
from spark_ap.app.job import main
from spark_ap.engines.blocks.kernel import Chunk, Top
from spark_ap.engines.capacity import CapacityWarning, merge_within, place, placed_and_refined, warn_unplaced
from spark_ap.multilevel import levels as levels_module
from spark_ap.testing.reference import affinity_propagation_dense, capacitated_availabilities
from tests.conftest import assignment_rows, dense_messages, exemplars_of
from tests.test_sklearn_parity import blobs, random_asymmetric, wine


def brute_force_availability(R: np.ndarray, i: int, k: int, capacity: int) -> float:
    """The max-sum message from column k's constraint to c(i,k), by enumerating the column.

    A column is valid when nobody chooses k, or k chooses itself and at most ``capacity``
    points (k included) choose k. The message is the best total of the other points'
    responsibilities with c(i,k) = 1 less the best with c(i,k) = 0.
    """
    n = R.shape[0]
    others = [j for j in range(n) if j != i]

    def best(ik: int) -> float:
        values = []
        for chosen in itertools.product((0, 1), repeat=len(others)):
            column = dict(zip(others, chosen, strict=True))
            column[i] = ik
            size = sum(column.values())
            if size and (not column[k] or size > capacity):
                continue
            values.append(sum(R[j, k] for j in others if column[j]))
        return max(values, default=-np.inf)  # no valid column: c(i,k) = 1 is impossible

    return best(1) - best(0)


@pytest.mark.parametrize("seed", range(12))
def test_the_availability_is_the_max_sum_message_of_the_capacity_constraint(seed):
    # Up to 7 points: every column configuration is enumerated. The closed form adds the same
    # terms in another order, so the two agree up to float rounding (relative 1e-12).
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 8))
    R = rng.normal(size=(n, n)) * rng.choice([0.1, 1, 10])
    if seed % 3 == 0:
        R[rng.random((n, n)) < 0.3] = 1.0  # equal responsibilities: ties at the capacity's edge
    for capacity in range(1, n + 2):
        A = capacitated_availabilities(R, capacity)
        for i, k in itertools.product(range(n), repeat=2):
            assert A[i, k] == pytest.approx(brute_force_availability(R, i, k, capacity), rel=1e-12, abs=1e-12)


def chunk_of(S: np.ndarray) -> Chunk:
    n = S.shape[0]
    i, j = np.nonzero(np.ones((n, n), dtype=bool))
    return Chunk.from_arrays({"i": i, "j": j, "s": S[i, j].copy()})


@pytest.mark.parametrize("capacity", [2, 3, 5, 40])
def test_the_kernel_computes_the_references_capacitated_messages_bit_for_bit(capacity):
    rng = np.random.default_rng(capacity)
    X = rng.normal(size=(40, 2))
    S = -((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    preference = float(np.median(S))
    np.fill_diagonal(S, preference)
    chunk = chunk_of(S)
    for iterations in range(1, 30):
        chunk.step(Top.over(40, lambda: [chunk]), 0.7, capacity)
        ref = affinity_propagation_dense(
            S, preference, damping=0.7, max_iter=iterations, stop_early=False, capacity=capacity
        )
        np.testing.assert_array_equal(chunk.r, ref.R.ravel())
        np.testing.assert_array_equal(chunk.a, ref.A.ravel())


def test_a_capacity_of_n_or_more_is_plain_ap_bit_for_bit():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3))
    S = -((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    plain = affinity_propagation_dense(S, np.median(S), damping=0.6, max_iter=60, stop_early=False)
    for capacity in (30, 31, 1000):
        capped = affinity_propagation_dense(
            S, np.median(S), damping=0.6, max_iter=60, stop_early=False, capacity=capacity
        )
        np.testing.assert_array_equal(capped.R, plain.R)
        np.testing.assert_array_equal(capped.A, plain.A)
    # and one below n changes them: the test can tell.
    capped = affinity_propagation_dense(S, np.median(S), damping=0.6, max_iter=60, stop_early=False, capacity=8)
    assert not np.array_equal(capped.A, plain.A)


def brute_force_placement(S: np.ndarray, centres: list[int], capacity: int) -> tuple[int, float]:
    """The most points the exemplars ``centres`` can take (exemplars kept, no cluster above
    ``capacity``, a point only along a finite ``S``), then the best total similarity of the placed
    others to their exemplars; by trying every choice, -1 (left out) included."""
    others = [i for i in range(S.shape[0]) if i not in centres]
    best = (-1, -np.inf)
    for choice in itertools.product([-1, *centres], repeat=len(others)):
        sizes = Counter(choice)
        if any(sizes[c] + 1 > capacity for c in centres):
            continue
        pairs = [(i, c) for i, c in zip(others, choice, strict=True) if c >= 0]
        if all(np.isfinite(S[i, c]) for i, c in pairs):
            best = max(best, (len(pairs), sum(S[i, c] for i, c in pairs)))
    return best


def placement_case(seed: int):
    """A random placement: up to 8 points, 2 or 3 exemplars, some edges missing (-inf) on odd
    seeds, and on every third seed a capacity too small for every point."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 9))
    S = -rng.random((n, n)) * 10
    if seed % 4 == 0:
        S = np.round(S)  # equal similarities: ties between placements
    centres = sorted(rng.choice(n, size=int(rng.integers(2, 4)), replace=False).tolist())
    capacity = int(np.ceil(n / len(centres))) + int(rng.integers(0, 2))
    if seed % 3 == 0:
        capacity = max(2, capacity - 1 - int(rng.integers(0, 2)))
    if seed % 2:
        S[rng.random((n, n)) < 0.3] = -np.inf
    return S, centres, capacity


def place_on(S: np.ndarray, centres: list[int], capacity: int) -> np.ndarray:
    n = S.shape[0]
    i, j = np.nonzero(~np.eye(n, dtype=bool) & np.isin(np.arange(n), centres)[None, :] & np.isfinite(S))
    return place(i, j, S[i, j], np.array(centres), n, capacity)


@pytest.mark.parametrize("seed", range(24))
def test_the_placement_places_the_most_points_then_the_best_total_within_the_capacity(seed):
    S, centres, capacity = placement_case(seed)
    n = S.shape[0]
    chosen = place_on(S, centres, capacity)
    placed = chosen >= 0
    assert np.all(np.bincount(chosen[placed], minlength=n) <= capacity) and np.all(chosen[centres] == centres)
    assert all(np.isfinite(S[p, chosen[p]]) for p in np.flatnonzero(placed) if p not in centres)
    total = sum(S[p, chosen[p]] for p in np.flatnonzero(placed) if p not in centres)
    count, best = brute_force_placement(S, centres, capacity)
    assert int(placed.sum()) - len(centres) == count
    assert total == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_the_placement_cases_reach_a_missing_edge_and_a_capacity_too_small():
    # The cases above are the ones the placement test needs: some leave points out for want of an
    # edge (every exemplar has room), some for want of places (K x L < n).
    no_edge = too_few = 0
    for seed in range(24):
        S, centres, capacity = placement_case(seed)
        chosen = place_on(S, centres, capacity)
        if (chosen < 0).any():
            too_few += len(centres) * capacity < S.shape[0]
            no_edge += len(centres) * capacity >= S.shape[0]
    assert no_edge and too_few


def test_the_placement_gives_up_similarity_to_place_one_more_point():
    # Points 2 and 3 both prefer exemplar 0 (capacity 2: one other each); 3 has no edge to 1. The most
    # similar choice (2 -> 0, 3 left out) places one point; the exact placement places both.
    S = np.full((4, 4), -np.inf)
    S[2, 0], S[2, 1], S[3, 0] = -1.0, -50.0, -9.0
    np.testing.assert_array_equal(place_on(S, [0, 1], 2), [0, 1, 1, 0])


def test_refining_moves_the_exemplars_to_the_best_ones_for_their_count():
    # Six points on a line, exemplars 0 and 4 (AP's), capacity 4: placing keeps them, refining moves
    # the first cluster's exemplar to its middle. The result is the best pair of exemplars by brute
    # force over every pair and every placement.
    x = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 11.0])
    S = -(np.subtract.outer(x, x) ** 2)
    i, j = np.nonzero(~np.eye(6, dtype=bool))
    chosen = placed_and_refined(i, j, S[i, j], np.array([0, 4]), 6, 4)
    placed_only = place_on(S, [0, 4], 4)
    assert not np.array_equal(chosen, placed_only)  # refining changed something
    total = sum(S[p, chosen[p]] for p in range(6) if chosen[p] != p)
    best = max(brute_force_placement(S, list(pair), 4)[1] for pair in itertools.combinations(range(6), 2))
    assert total == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_refined_exemplars_are_each_the_best_member_of_their_cluster(seed):
    # After refining, no cluster has a member every other member has an edge to whose similarities
    # from the rest sum higher than the exemplar's (checked member by member), and the refined total
    # is no worse than the placement's.
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(24, 2))
    S = -((X[:, None] - X[None]) ** 2).sum(-1)
    S[rng.random(S.shape) < 0.1] = -np.inf
    centres = np.sort(rng.choice(24, size=4, replace=False))
    i, j = np.nonzero(~np.eye(24, dtype=bool) & np.isfinite(S))
    chosen = placed_and_refined(i, j, S[i, j], centres, 24, 7)
    before = place_on(S, centres.tolist(), 7)

    def score(c):
        return (c >= 0).sum(), sum(S[p, c[p]] for p in range(24) if c[p] >= 0 and c[p] != p)

    assert score(chosen) >= score(before)
    for e in np.unique(chosen[chosen >= 0]):
        cluster = np.flatnonzero(chosen == e)
        assert len(cluster) <= 7
        for m in cluster:
            rest = cluster[cluster != m]
            if np.isfinite(S[rest, m]).all():
                assert S[rest, m].sum() <= S[cluster[cluster != e], e].sum() + 1e-9


def test_points_beyond_the_places_there_are_are_reported():
    # 2 exemplars of capacity 3 hold 6 of 8 points: 2 are left out, never a cluster over-filled.
    S = -np.abs(np.subtract.outer(np.arange(8.0), np.arange(8.0)))
    i, j = np.nonzero(~np.eye(8, dtype=bool) & np.isin(np.arange(8), [1, 6])[None, :])
    chosen = place(i, j, S[i, j], np.array([1, 6]), 8, 3)
    assert (chosen < 0).sum() == 2 and np.bincount(chosen[chosen >= 0]).max() == 3
    with pytest.warns(CapacityWarning, match="2 of 8 points"):
        warn_unplaced(chosen, 3)


def blobs_with_one_large(n_large=60, n_small=12, seed=0):
    X, _ = make_blobs([n_large, n_small, n_small], centers=[[0, 0], [12, 0], [0, 12]], random_state=seed)
    return X


@pytest.mark.parametrize(
    "engine",
    ["local", pytest.param("blocks", marks=pytest.mark.slow), pytest.param("graphframes", marks=pytest.mark.slow)],
)
@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # graphframes: 40 iterations of the messages
def test_a_capacitated_run_is_the_references_messages_and_respects_the_bound(spark, engine):
    X = blobs_with_one_large()
    n, capacity = len(X), 30
    S = similarity_matrix(X)
    # The graphframes engine's iterations cost a second each here: 40 of them compare its messages.
    steps = {"maxIter": 40} if engine == "graphframes" else {}
    result = AffinityPropagation(engine=engine, maxClusterSize=capacity, noise="none", preference=-60.0, **steps).run(
        edges_from_matrix(spark, S)
    )
    ref = affinity_propagation_dense(S, -60.0, max_iter=result.numIterations, stop_early=False, capacity=capacity)
    R, A = dense_messages(result, n)
    np.testing.assert_array_equal(R, ref.R)
    np.testing.assert_array_equal(A, ref.A)
    sizes = result.exemplars.toPandas()["size"]
    assert sizes.max() <= capacity and sizes.sum() == n
    # Plain AP at the same preference puts the large blob in one cluster above the bound (every engine
    # computes plain AP's messages bit for bit: tests/test_blocks.py, tests/test_graphframes.py).
    plain = AffinityPropagation(engine="local", noise="none", preference=-60.0).run(edges_from_matrix(spark, S))
    assert plain.exemplars.toPandas()["size"].max() > capacity


def test_a_bound_of_n_points_is_plain_ap_bit_for_bit(spark):
    X = blobs_with_one_large(30, 6)
    S = similarity_matrix(X)
    graph = edges_from_matrix(spark, S)
    plain = AffinityPropagation(seed=2).run(graph)
    bounded = AffinityPropagation(seed=2, maxClusterSize=len(X)).run(graph)
    np.testing.assert_array_equal(dense_messages(bounded, len(X))[1], dense_messages(plain, len(X))[1])
    assert assignment_rows(bounded) == assignment_rows(plain)


@pytest.mark.parametrize(
    "engine",
    ["local", pytest.param("blocks", marks=pytest.mark.slow), pytest.param("graphframes", marks=pytest.mark.slow)],
)
@pytest.mark.parametrize("capacity", [1, 3, 16])
def test_ties_at_the_capacity_give_the_references_messages_on_every_engine(spark, engine, capacity):
    # A 4 x 4 grid: equal responsibilities straddle the capacity's cut (test_the_grid_ties_at_the_cut);
    # every engine matches the reference bit for bit (16: plain AP). Which of the tied sources is kept
    # changes no message's value (docs/capacity.md), only the order in which the kept ones are added.
    X = np.array([(x, y) for x in range(4) for y in range(4)], dtype=float)
    S = similarity_matrix(X)
    ap = AffinityPropagation(engine=engine, maxClusterSize=capacity, noise="none", preference=-3.0)
    result = ap.setMaxIter(20).setConvergenceIter(21).run(edges_from_matrix(spark, S))
    ref = affinity_propagation_dense(S, -3.0, max_iter=20, stop_early=False, capacity=capacity)
    R, A = dense_messages(result, len(X))
    np.testing.assert_array_equal(R, ref.R)
    np.testing.assert_array_equal(A, ref.A)
    assert (result.exemplars.toPandas()["size"] <= capacity).all()


def test_the_grid_ties_at_the_cut():
    # The grid above reaches equal positive responsibilities at the (L-1)-th and L-th places of a
    # target's ranking (L = 3) within its 20 iterations: the case the engines must agree on.
    X = np.array([(x, y) for x in range(4) for y in range(4)], dtype=float)
    S = similarity_matrix(X)
    ties = 0
    for iterations in range(1, 21):
        R = affinity_propagation_dense(S, -3.0, max_iter=iterations, stop_early=False, capacity=3).R
        for k in range(16):
            v = np.sort(R[np.arange(16) != k, k])[::-1]
            ties += bool(v[2] > 0 and v[1] == v[2])
    assert ties > 0


def test_a_feature_table_is_bounded_on_the_driver_as_through_spark(spark, tmp_path):
    # MultiLevelAffinityPropagation on a complete graph: the driver's run (no stateDir) places the
    # points as a Spark run does (a stateDir keeps it there), and no cluster exceeds the bound.
    X = blobs_with_one_large()
    table = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    ap = MultiLevelAffinityPropagation(maxClusterSize=30, preference=-60.0)
    driver = ap.run(table)
    through_spark = ap.copy({ap.stateDir: str(tmp_path)}).run(table)
    assert assignment_rows(driver) == assignment_rows(through_spark)
    sizes = driver.exemplars.toPandas()["size"]
    assert sizes.max() <= 30 and sizes.sum() == len(X)


def test_a_merge_that_would_overfill_a_cluster_is_undone():
    # Level points standing for 30, 30, 30, 10 and 10 points; AP merged the first three (90 > 70).
    # By hand: 0 keeps itself (30), 1 joins it (60), 2 no longer fits and stays alone, 4 joins 3.
    chosen = np.array([0, 0, 0, 3, 3])
    size = np.array([30.0, 30.0, 30.0, 10.0, 10.0])
    members, exemplars, s = np.array([1, 2, 4, 0]), np.array([0, 0, 3, 3]), np.array([-1.0, -2.0, -1.0, -5.0])
    np.testing.assert_array_equal(merge_within(members, exemplars, s, size, chosen, 70), [0, 0, 2, 3, 3])
    assert merge_within(members, exemplars, s, size, chosen, 90) is chosen  # within the bound: unchanged


def test_only_the_merges_that_overfill_a_cluster_are_undone():
    # As above, and point 4 is more similar to exemplar 0 than to its own 3: its cluster (20 points)
    # is within the bound, so it stays with 3, though 0 has room for it once 2 is out.
    chosen = np.array([0, 0, 0, 3, 3])
    size = np.array([30.0, 30.0, 30.0, 10.0, 10.0])
    members, exemplars = np.array([1, 2, 4, 0, 4]), np.array([0, 0, 3, 3, 0])
    s = np.array([-1.0, -2.0, -5.0, -5.0, -0.5])
    np.testing.assert_array_equal(merge_within(members, exemplars, s, size, chosen, 70), [0, 0, 2, 3, 3])


@pytest.mark.slow
def test_levels_keep_the_bound_across_merges(spark, monkeypatch):
    # Above exactBelow the points go through levels: level 0 is capacitated AP on the k-NN graph,
    # later levels merge whole clusters, and no merged cluster may exceed the bound.
    X, _ = make_blobs(300, centers=[[0, 0], [8, 0], [0, 8]], cluster_std=1.0, random_state=3)
    table = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    params = {"exactBelow": 100, "levelExactBelow": 200, "seed": 1}
    plain = MultiLevelAffinityPropagation(**params).run(table)
    assert len(plain.levels) >= 2 and plain.exemplars.toPandas()["size"].max() > 60  # the test can tell
    # The bounded run's own levels must merge past the bound, and merge_within must undo it: each
    # call records whether AP's merges overfilled a cluster and whether the merges came back changed.
    calls = []

    def recorded(members, exemplars, s, size, chosen, capacity):
        merged = merge_within(members, exemplars, s, size, chosen, capacity)
        over = np.bincount(chosen, weights=size).max() > capacity
        calls.append((bool(over), not np.array_equal(merged, chosen)))
        return merged

    monkeypatch.setattr(levels_module, "merge_within", recorded)
    bounded = MultiLevelAffinityPropagation(maxClusterSize=60, **params).run(table)
    sizes = bounded.exemplars.toPandas()["size"]
    assert len(bounded.levels) >= 2 and sizes.max() <= 60 and sizes.sum() == len(X)
    assert (True, True) in calls, calls  # an overfilling merge, undone


def test_the_command_bounds_the_clusters_and_says_so(spark, tmp_path):
    X = blobs_with_one_large()
    csv = tmp_path / "points.csv"
    pd.DataFrame({"id": range(len(X)), "x": X[:, 0], "y": X[:, 1]}).to_csv(csv, index=False)
    out = tmp_path / "run"
    args = ["--input", str(csv), "--kind", "features", "--output", str(out), "--preference", "-60"]
    assert main([*args, "--max-cluster-size", "30"]) == 0
    sizes = pd.read_csv(out / "exemplars.csv")["size"]
    assert sizes.max() <= 30 and sizes.sum() == len(X)
    assert json.loads((out / "summary.json").read_text())["params"]["maxClusterSize"] == 30


@pytest.mark.parametrize("make", [blobs, wine, random_asymmetric])
def test_a_bound_of_n_gives_scikit_learns_results_on_the_parity_cases(spark, make):
    # tests/test_sklearn_parity.py's complete graphs with maxClusterSize = n: scikit-learn's
    # iterations and exemplars exactly, as plain AP gives them.
    S = make()
    n = len(S)
    pref = float(np.median(S[~np.eye(n, dtype=bool)]))
    sk = SklearnAP(affinity="precomputed", preference=pref, max_iter=200, random_state=0).fit(S)
    result = AffinityPropagation(noise="sklearn", maxClusterSize=n).run(edges_from_matrix(spark, S))
    assert result.numIterations == sk.n_iter_
    assert exemplars_of(result) == sorted(sk.cluster_centers_indices_)


def test_points_left_out_are_counted_in_the_summary_and_in_no_cluster(spark, tmp_path):
    X = blobs_with_one_large(30, 6)
    S = similarity_matrix(X)
    rows = [(i, j, S[i, j]) for i in range(len(X)) for j in range(len(X)) if i != j]
    csv = tmp_path / "edges.csv"
    pd.DataFrame(rows, columns=["src", "dst", "similarity"]).to_csv(csv, index=False)
    out = tmp_path / "run"
    # A preference this low leaves a few exemplars: fewer places than points under a bound of 5.
    args = ["--input", str(csv), "--output", str(out), "--preference", "-2000", "--damping", "0.9"]
    with pytest.warns(CapacityWarning):
        assert main([*args, "--max-cluster-size", "5"]) == 0
    assignments = pd.read_parquet(out / "assignments.parquet")
    summary = json.loads((out / "summary.json").read_text())
    left_out = int((assignments["cluster"] < 0).sum())
    assert left_out > 0 and summary["unassigned_points"] == left_out
    assert assignments.loc[assignments["cluster"] >= 0].groupby("cluster").size().max() <= 5
    assert summary["clusters"] == assignments.loc[assignments["cluster"] >= 0, "cluster"].nunique()


# Every estimator path on 42 points (blobs of 30, 6 and 6) at a preference so low, with damping 0.9,
# that AP ends with 7 exemplars: 7 x 5 = 35 places for 42 points under maxClusterSize=5.
FEW_PLACES = {"preference": -2000.0, "damping": 0.9, "maxClusterSize": 5}
LEFT_OUT_PATHS = {
    "AffinityPropagation": None,
    "features on the driver": {},
    "features through Spark": {"stateDir": True},
    # Above exactBelow: level 0 on a k-NN graph (every other point a neighbour), then a level above it.
    "features by levels": {"exactBelow": 20, "numNeighbors": 41, "knnMaxIter": 200},
}


@pytest.mark.parametrize(
    "path",
    [p if p in ("AffinityPropagation", "features on the driver") else pytest.param(p, marks=pytest.mark.slow)
     for p in LEFT_OUT_PATHS],
)  # fmt: skip
def test_points_beyond_the_places_are_left_out_with_a_warning_on_every_path(spark, tmp_path, path):
    # K exemplars hold at most K x L points: the others are cluster -1 with a null exemplar, in no
    # cluster's size, and a CapacityWarning counts them and names the exemplars needed, ceil(n / L).
    X = blobs_with_one_large(30, 6)
    n, capacity = len(X), FEW_PLACES["maxClusterSize"]
    extra = LEFT_OUT_PATHS[path]
    with pytest.warns(CapacityWarning) as caught:
        if extra is None:
            result = AffinityPropagation(**FEW_PLACES).run(edges_from_matrix(spark, similarity_matrix(X)))
        else:
            extra = {**extra, "stateDir": str(tmp_path)} if "stateDir" in extra else extra
            table = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
            result = MultiLevelAffinityPropagation(**FEW_PLACES, **extra).run(table)
    if path == "features by levels":
        assert len(result.levels) >= 2 and result.levels["graph"].iloc[0] == "k-NN"
    rows = result.assignments.toPandas()
    placed, out = rows[rows["cluster"] >= 0], rows[rows["cluster"] < 0]
    clusters = placed["exemplar"].nunique()
    assert clusters * capacity < n  # the case: too few places
    # Every exemplar has an edge from every point here: exactly K x L points are placed.
    assert len(out) == n - clusters * capacity and out["exemplar"].isna().all() and (out["cluster"] == -1).all()
    assert placed.groupby("cluster").size().max() <= capacity and placed["cluster"].nunique() == clusters
    sizes = result.exemplars.toPandas()
    assert (sizes["cluster"] >= 0).all() and sizes["size"].sum() == len(placed)
    messages = [str(w.message) for w in caught if issubclass(w.category, CapacityWarning)]
    expected = f"{len(out)} of {n} points could not be placed"
    assert any(expected in m and f"need at least {math.ceil(n / capacity)}" in m for m in messages), messages


def test_a_capacitated_run_that_finds_no_exemplar_ends_without_clusters(spark):
    # On a sparse k-NN graph at this preference AP ends with no exemplar: no cluster to bound, so the
    # placement is not run (it once was, around no exemplars, and failed) and every point is its own.
    X = blobs_with_one_large(30, 6)
    table = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    ap = MultiLevelAffinityPropagation(maxClusterSize=5, preference=-2000.0, damping=0.9, exactBelow=20, numNeighbors=8)
    result = ap.run(table)
    assert result.levels["graph"].iloc[0] == "k-NN" and result.history["exemplars"].iloc[-1] == 0
    rows = result.assignments.toPandas()
    assert (rows["id"] == rows["exemplar"]).all() and rows["cluster"].nunique() == len(X)
