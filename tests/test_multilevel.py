"""Feature tables at scale: approximate k-NN graphs, sampled preferences, levels, and the search for K."""

import json
import logging
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import AffinityPropagation as SkAffinityPropagation
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from spark_ap import MultiLevelAffinityPropagation, similarity_matrix
from spark_ap.app.job import main
from spark_ap.multilevel import neighbors
from spark_ap.multilevel.levels import next_level
from spark_ap.multilevel.search import _between, search_preference
from spark_ap.prepare.preference import sampled_similarities, statistic
from tests.conftest import BIN


def feature_table(spark, X):
    return spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])


def points_of(spark, X):
    return spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "x"])


def labels(result, n):
    rows = result.assignments.toPandas().set_index("id").sort_index()
    assert list(rows.index) == list(range(n))
    return rows["cluster"].to_numpy(), rows["exemplar"].to_numpy()


def test_sampled_preference_is_close_to_the_dense_median(spark):
    X, _ = make_blobs(1500, n_features=5, centers=8, random_state=1)
    S = similarity_matrix(X)
    dense_median = np.median(S[np.triu_indices(len(X), 1)])
    points = points_of(spark, X)
    estimate = statistic(sampled_similarities(points, similarity_matrix, sample=400, seed=3), "median")
    assert abs(estimate - dense_median) < 0.05 * abs(dense_median)
    # A sample as large as the data is all pairs: the exact value.
    everything = sampled_similarities(points, similarity_matrix, sample=2000)
    assert everything.size == 1500 * 1499 // 2
    assert statistic(everything, "quantile:0.3") == pytest.approx(
        np.quantile(S[np.triu_indices(len(X), 1)], 0.3), rel=1e-12
    )


def test_approximate_neighbours_against_exact_ones(spark):
    X, _ = make_blobs(3000, n_features=6, centers=20, random_state=2)
    k = 5
    points = points_of(spark, X)
    found = neighbors.knn_candidates(points, k, trees=4, leaf_size=200, seed=1).toPandas()
    assert found.groupby("src").size().max() == k and found["src"].nunique() == 3000
    assert not found.duplicated(["src", "dst"]).any() and (found["src"] != found["dst"]).all()
    np.testing.assert_allclose(
        found["d2"], ((X[found["src"]] - X[found["dst"]]) ** 2).sum(axis=1), rtol=1e-12, atol=1e-12
    )
    # The truth from scikit-learn, on every point.
    _, exact = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    truth = {(i, j) for i, row in enumerate(exact[:, 1:]) for j in row}
    true_recall = len(truth & set(zip(found["src"], found["dst"], strict=True))) / len(truth)
    assert true_recall > 0.9
    measured = neighbors.recall(points, spark.createDataFrame(found), k, queries=300, seed=0)
    assert abs(measured - true_recall) < 0.05


def test_levels_recover_blobs_far_larger_than_a_neighbourhood(spark):
    X, y = make_blobs(1200, n_features=6, centers=5, cluster_std=1.0, center_box=(-30, 30), random_state=4)
    ap = MultiLevelAffinityPropagation(numNeighbors=5, exactBelow=150, leafSize=200, damping=0.7, seed=2)
    result = ap.run(feature_table(spark, X))
    clusters, _ = labels(result, len(X))
    assert adjusted_rand_score(y, clusters) > 0.99
    levels = result.levels
    # Level 0 cannot make clusters of 240 points out of 6 neighbours each: the levels above do.
    assert levels["graph"].iloc[0] == "k-NN" and levels["clusters"].iloc[0] > 5 * 10
    assert len(levels) >= 3 and levels["clusters"].iloc[-1] == levels["clusters"].iloc[-2] == 5
    assert result.recall > 0.9
    # The preference is estimated from the pairs of a sample, not from the (near) edges.
    dense_median = np.median(similarity_matrix(X)[np.triu_indices(len(X), 1)])
    assert abs(result.preference - dense_median) < 0.05 * abs(dense_median)
    assert "sampled points" in result.preferenceSource
    # Every point follows its exemplar through the levels.
    chosen = result.levelAssignments.toPandas()
    follow = dict(zip(chosen.loc[chosen.level == 0, "id"], chosen.loc[chosen.level == 0, "exemplar"], strict=True))
    for level in range(1, len(levels)):
        step = chosen[chosen.level == level].set_index("id")["exemplar"]
        follow = {i: step[e] for i, e in follow.items()}
    _, exemplars = labels(result, len(X))
    assert [follow[i] for i in range(len(X))] == list(exemplars)


def test_a_rerun_resumes_every_level_from_its_saves(spark, tmp_path, caplog):
    X, _ = make_blobs(400, n_features=4, centers=3, center_box=(-25, 25), random_state=9)
    features = feature_table(spark, X)
    ap = MultiLevelAffinityPropagation(numNeighbors=5, exactBelow=100, stateDir=str(tmp_path), checkpointInterval=5)
    # The first run stops after level 0, as a run killed during level 1 would have.
    first = ap.copy({ap.maxLevels: 1}).run(features)
    assert len(first.levels) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["level-0"]
    with caplog.at_level(logging.INFO, logger="spark_ap"):
        again = ap.run(features)
    assert f"resuming from the state of iteration 50 saved in {tmp_path}/level-0" in caplog.text
    assert again.resumedFrom == 50 and again.levels["resumed_from"].iloc[0] == 50

    # Level 0 resumed where it had ended (its choices unchanged); the levels above ran on.
    def level_zero(result):
        chosen = result.levelAssignments.filter("level = 0").toPandas()
        return chosen.sort_values("id")["exemplar"].tolist()

    assert level_zero(again) == level_zero(first)
    assert again.exemplars.count() == 3 and len(again.levels) >= 2


def test_a_small_table_is_exact_affinity_propagation(spark):
    X, _ = make_blobs(60, n_features=3, centers=4, random_state=5)
    result = MultiLevelAffinityPropagation(noise=False).run(feature_table(spark, X))
    S = similarity_matrix(X)
    preference = np.median(S[~np.eye(len(X), dtype=bool)])
    expected = SkAffinityPropagation(affinity="precomputed", preference=preference, random_state=0).fit(S)
    clusters, exemplars = labels(result, len(X))
    assert list(result.levels["graph"]) == ["all pairs"] and result.recall is None
    assert result.preference == pytest.approx(preference, rel=1e-12)
    np.testing.assert_array_equal(np.unique(exemplars), expected.cluster_centers_indices_)
    assert adjusted_rand_score(expected.labels_, clusters) == 1.0
    # Frey and Dueck's objective, from the dense matrix: s(i, exemplar) off the exemplars, the preference on them.
    points = np.arange(len(X))
    net = S[points, exemplars][exemplars != points].sum() + preference * len(np.unique(exemplars))
    assert result.netSimilarity == pytest.approx(net, rel=1e-9)


def test_search_for_a_number_of_clusters(spark):
    X, _ = make_blobs(150, n_features=4, centers=6, center_box=(-15, 15), random_state=7)
    ap = MultiLevelAffinityPropagation(numClusters=3, clusterTolerance=0, damping=0.8, seed=1)
    result = ap.run(feature_table(spark, X))
    clusters, _ = labels(result, len(X))
    assert len(np.unique(clusters)) == 3
    assert result.attempts["clusters"].iloc[-1] == 3 and len(result.attempts) > 1
    # scikit-learn at the preference found agrees (the graph is complete here).
    S = similarity_matrix(X)
    sk = SkAffinityPropagation(
        affinity="precomputed", preference=result.preference, damping=0.8, random_state=0, max_iter=200
    ).fit(S)
    assert len(sk.cluster_centers_indices_) == 3


@dataclass
class Scripted:
    """A run the search reads: a made-up cluster count per preference range."""

    preference: float
    clusters: int
    converged: bool


def scripted(ranges):
    """run(p, attempt) from ``ranges``: (lowest preference, clusters, converged), highest range first."""

    def run(p, attempt):
        low, clusters, converged = next(r for r in ranges if p >= r[0])
        return Scripted(p, clusters, converged)

    return run


SIMILARITIES = np.array([-10.0, -5.0, -0.1])  # floor -10, largest -0.1


def test_search_goes_up_from_a_preference_too_low_to_converge():
    # Below every similarity AP oscillates and may label every point an exemplar (scikit-learn too):
    # that many clusters must not send the search lower still.
    run = scripted([(-1, 20, True), (-3, 5, True), (-10, 2, True), (-np.inf, 100, False)])
    best, attempts = search_preference(run, 5, 0, 20, SIMILARITIES, start=-50.0, weight=100)
    assert attempts[0] == (-50.0, 100) and best.clusters == 5 and -3 <= best.preference < -1
    assert all(p > -50.0 for p, _ in attempts[1:])


def test_search_treats_more_clusters_below_a_converged_run_as_oscillation():
    # Above the floor, a run that does not converge and finds more clusters than a converged run
    # at a higher preference is the oscillation, not the data: the search must go up from it.
    run = scripted([(-1.5, 8, True), (-4, 4, True), (-np.inf, 60, False)])
    best, attempts = search_preference(run, 4, 0, 20, SIMILARITIES, start=-1.0, weight=100)
    assert best.clusters == 4 and -4 <= best.preference < -1.5, attempts


def test_search_halves_a_wide_bracket_on_a_log_scale():
    # From the median down to a floor thousands of times further from the largest similarity,
    # the next attempt is the geometric mean of the two distances, not the midpoint.
    assert _between(-10_000.0, -1.0, 0.0) == pytest.approx(-100.0)
    assert _between(-3.0, -1.0, 0.0) == pytest.approx(-2.0)
    assert _between(-3.0, 0.0, 0.0) == pytest.approx(-1.5)  # hi at the top: no log scale


def test_a_complete_graph_searches_on_the_driver_as_spark_would(spark, tmp_path, caplog):
    # The driver's attempts (no stateDir) against the same search through Spark's levels (a
    # stateDir keeps the runs there): the same preferences, counts and assignments, bit for bit.
    X, _ = make_blobs(120, n_features=2, centers=5, center_box=(-10, 10), random_state=2)
    table = feature_table(spark, X)
    with caplog.at_level(logging.INFO, logger="spark_ap"):
        driver = MultiLevelAffinityPropagation(numClusters=5).run(table)
    assert "on the driver" in caplog.text
    spark_run = MultiLevelAffinityPropagation(numClusters=5, stateDir=str(tmp_path)).run(table)
    assert (tmp_path / "attempt-0" / "level-0").is_dir()
    pd.testing.assert_frame_equal(driver.attempts, spark_run.attempts)
    assert driver.preference == spark_run.preference and driver.exemplars.count() == 5
    pd.testing.assert_frame_equal(
        driver.assignments.toPandas().sort_values("id", ignore_index=True),
        spark_run.assignments.toPandas().sort_values("id", ignore_index=True),
    )
    assert driver.netSimilarity == pytest.approx(spark_run.netSimilarity, rel=1e-12)  # summed in another order
    # and scikit-learn at the preference found (without noise: the clusters, not the bits).
    sk = SkAffinityPropagation(affinity="precomputed", preference=driver.preference, random_state=0)
    assert len(sk.fit(similarity_matrix(X)).cluster_centers_indices_) == 5


def test_search_keeps_the_closest_run_when_none_is_exact(spark):
    X, _ = make_blobs(40, n_features=2, centers=2, center_box=(-50, 50), random_state=3)
    ap = MultiLevelAffinityPropagation(numClusters=7, clusterTolerance=0, maxAttempts=3, damping=0.8)
    result = ap.run(feature_table(spark, X))
    attempts = result.attempts
    assert len(attempts) == 3
    best = attempts.loc[(attempts["clusters"] - 7).abs().idxmin()]
    assert result.exemplars.count() == best["clusters"] and result.preference == best["preference"]


def test_the_command_clusters_a_large_feature_table_by_levels(spark, tmp_path):
    X, y = make_blobs(600, n_features=4, centers=3, center_box=(-25, 25), random_state=9)
    table = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    table.insert(0, "id", np.arange(len(X)))
    csv = tmp_path / "points.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "run"
    # In-process, on the suite's session: the spark-ap command is this function
    # (tests/test_job.py runs it, and spark-submit, as processes of their own).
    command = ["--input", str(csv), "--output", str(out), "--kind", "features"]
    assert main([*command, "--num-neighbors", "5", "--exact-below", "100", "--damping", "0.7"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clusters"] == 3 and summary["params"]["numNeighbors"] == 5
    assert "sampled points" in summary["preference_source"] and summary["graph_recall"] > 0.9
    levels = pd.read_csv(out / "levels.csv")
    assert list(levels["level"]) == list(range(len(levels))) and levels["graph"].iloc[0] == "k-NN"
    written = pd.read_parquet(out / "assignments.parquet").sort_values("id")
    assert adjusted_rand_score(y, written["cluster"]) == 1.0
    # Each level saved its state under state/level-N; a finished run keeps none of it.
    assert not (out / "state").exists()


def test_feature_options_are_refused_for_an_edge_table(tmp_path):
    csv = tmp_path / "edges.csv"
    csv.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    done = subprocess.run(
        [str(BIN / "spark-ap"), "--input", str(csv), "--output", str(tmp_path / "run"), "--num-clusters", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--num-clusters apply to feature tables (--kind features)" in done.stderr


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"numNeighbors": 0}, "numNeighbors must be >= 1"),
        ({"metric": "manhattan"}, "metric must be one of"),
        ({"preference": "mean"}, "preference must be"),
        ({"maxIter": 0}, "maxIter must be >= 1"),
    ],
)
def test_bad_params_are_refused(params, message):
    from spark_ap import InvalidParamError

    with pytest.raises(InvalidParamError, match=message):
        MultiLevelAffinityPropagation(**params)


def test_cosine_levels_on_directions(spark):
    rng = np.random.default_rng(0)
    directions = np.eye(4)[:3] * 10
    X = np.vstack([d + rng.standard_normal((150, 4)) for d in directions]) * rng.uniform(0.5, 3, (450, 1))
    y = np.repeat(np.arange(3), 150)
    ap = MultiLevelAffinityPropagation(metric="cosine", numNeighbors=5, exactBelow=100, damping=0.7)
    clusters, _ = labels(ap.run(feature_table(spark, X)), len(X))
    assert adjusted_rand_score(y, clusters) > 0.98


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))


def test_the_coarse_graph_is_what_the_members_gain(spark):
    # s'(i, k) = weight * sum over i's members m of (s(m, k) - s(m, i)), brute force from the points.
    X = np.random.RandomState(0).randn(40, 3)
    exemplars = [0, 7, 19, 33]
    owner = {m: exemplars[int(np.argmin(((X[exemplars] - X[m]) ** 2).sum(1)))] for m in range(len(X))}
    points = spark.createDataFrame([(m, X[m].tolist()) for m in range(len(X))], "id long, x array<double>")
    mapping = spark.createDataFrame(list(owner.items()), "id long, exemplar long")

    def gain(i, k):
        return sum(((X[m] - X[i]) ** 2).sum() - ((X[m] - X[k]) ** 2).sum() for m in owner if owner[m] == i)

    # All pairs on the driver, then the pairs of a k-NN graph in Spark: one formula, both ways.
    for level_exact_below, pairs in ((10, 12), (0, None)):
        ap = MultiLevelAffinityPropagation(levelExactBelow=level_exact_below, numNeighbors=2)
        ids, edges = next_level(ap._config(), points, mapping, len(exemplars), 0.5)
        assert sorted(r.id for r in ids.collect()) == exemplars
        rows = edges.collect()
        assert rows and (pairs is None or len(rows) == pairs)
        for r in rows:
            assert r.src != r.dst and r.similarity == pytest.approx(0.5 * gain(r.src, r.dst), rel=1e-9)


@pytest.mark.slow
def test_a_job_killed_in_the_middle_of_a_level_resumes_to_the_uninterrupted_result(spark, tmp_path):
    import os
    import signal

    from tests.conftest import ROOT, saves, wait_for_save, written_rows

    X, _ = make_blobs(400, n_features=4, centers=3, center_box=(-25, 25), random_state=9)
    table = tmp_path / "points.csv"
    pd.DataFrame(X, columns=["a", "b", "c", "d"]).rename_axis("id").reset_index().to_csv(table, index=False)
    # Level 0 on a k-NN graph (20 iterations), then all-pairs levels of 200 iterations that cannot
    # converge: long enough to be killed in the middle of level 1.
    args = ["--input", str(table), "--kind", "features", "--num-neighbors", "5", "--exact-below", "100"]
    args += ["--knn-max-iter", "20", "--max-iter", "200", "--convergence-iter", "1000", "--checkpoint-interval", "5"]
    assert main([*args, "--output", str(tmp_path / "uninterrupted")]) == 0

    out = tmp_path / "run"
    job = subprocess.Popen(
        [str(BIN / "spark-submit"), "--master", "local[2]", str(ROOT / "scripts" / "spark_ap_job.py"), *args,
         "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_save(out / "state" / "level-1", 10, job)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    killed_at = saves(out / "state" / "level-1")[-1]
    assert 10 <= killed_at < 200 and not (out / "summary.json").exists()

    assert main([*args, "--output", str(out)]) == 0  # the rerun, on the suite's session
    resumed, whole = (json.loads((folder / "summary.json").read_text()) for folder in (out, tmp_path / "uninterrupted"))
    levels = pd.DataFrame(resumed["levels"])
    assert levels["resumed_from"].iloc[0] == 20 and levels["resumed_from"].iloc[1] >= killed_at
    assert written_rows(out) == written_rows(tmp_path / "uninterrupted")
    assert [(r["clusters"], r["iterations"]) for r in resumed["levels"]] == [
        (r["clusters"], r["iterations"]) for r in whole["levels"]
    ]


def test_the_driver_runs_scikit_learns_iterations_under_its_noise(spark):
    # Integer points: Spark's similarities are scikit-learn's to the bit, and many of them tie, so
    # the noise decides; with noise="sklearn" the driver's run is scikit-learn's, iteration for iteration.
    X = np.random.default_rng(0).integers(0, 4, size=(30, 2)).astype(float)  # a 4 x 4 grid
    X = np.unique(X, axis=0)
    S = similarity_matrix(X)
    preference = float(np.median(S[~np.eye(len(X), dtype=bool)]))
    ap = MultiLevelAffinityPropagation(noise="sklearn", seed=3, preference=preference, damping=0.6)
    result = ap.run(feature_table(spark, X))
    sk = SkAffinityPropagation(affinity="precomputed", preference=preference, damping=0.6, random_state=3).fit(S)
    _, exemplars = labels(result, len(X))
    assert result.levels["iterations"].iloc[0] == sk.n_iter_
    np.testing.assert_array_equal(exemplars, sk.cluster_centers_indices_[sk.labels_])
