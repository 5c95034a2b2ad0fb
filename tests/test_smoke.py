"""What every supported Spark line and a Spark Connect session must do, against scikit-learn.

The full suite covers all of it on the Spark 4.1 line (``make test``); ``make test-matrix``
runs these alone on each other Spark line (a venv per line, pinned by constraints/spark-X.Y.txt)
and in a Spark Connect session (``SPARK_AP_TEST_SESSION=connect``). In a Connect session the
classic-only features must refuse in one line naming themselves; everything else must give
scikit-learn's answer there too.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import AffinityPropagation as SklearnAP
from sklearn.datasets import make_blobs

from spark_ap import (
    AffinityPropagation,
    AffinityPropagationModel,
    ClassicSessionRequiredError,
    GraphFramesUnavailableError,
    MultiLevelAffinityPropagation,
    edges_from_matrix,
    similarity_matrix,
)
from tests.conftest import feature_frame

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONNECT = os.environ.get("SPARK_AP_TEST_SESSION") == "connect"

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def session(request):
    """The suite's classic session, or a Spark Connect session to a local server of its own."""
    if not CONNECT:
        yield request.getfixturevalue("spark")
        return
    from pyspark.sql import SparkSession

    connect = SparkSession.builder.remote("local[2]").config("spark.sql.shuffle.partitions", "4").getOrCreate()
    assert type(connect).__module__.startswith("pyspark.sql.connect")
    yield connect
    connect.stop()


def sklearn_fit(S: np.ndarray, convergence_iter: int = 15) -> SklearnAP:
    """scikit-learn on the complete graph ``S`` with the median preference: the oracle."""
    preference = float(np.median(S[~np.eye(len(S), dtype=bool)]))
    return SklearnAP(
        affinity="precomputed", preference=preference, convergence_iter=convergence_iter, random_state=0
    ).fit(S)


def same_partition(a, b) -> bool:
    """Equal labels up to renaming the clusters."""
    pairs = set(zip(list(a), list(b), strict=True))
    return len(pairs) == len(set(a)) == len(set(b))


def clusters_of(result, n: int) -> tuple[list, list]:
    """(cluster, exemplar) per point 0..n-1."""
    by_id = {row.id: (row.cluster, row.exemplar) for row in result.assignments.collect()}
    return [by_id[i][0] for i in range(n)], [by_id[i][1] for i in range(n)]


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


# Convergence after 5 unchanged iterations, not 15: 9 iterations rather than 19 on this graph,
# where each of the graphframes engine's costs a second.
CONVERGENCE_ITER = 5


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(40, centers=3, cluster_std=1.5, random_state=2)
    S = similarity_matrix(X)
    return S, sklearn_fit(S, CONVERGENCE_ITER)


@pytest.mark.parametrize("engine", ["auto", "local", "blocks", "graphframes"])
def test_every_engine_gives_scikit_learns_clusters(session, blobs, engine):
    S, sk = blobs
    ap = AffinityPropagation(preference="median", noise="sklearn", convergenceIter=CONVERGENCE_ITER, engine=engine)
    edges = edges_from_matrix(session, S)
    if CONNECT and engine == "blocks":
        with pytest.raises(ClassicSessionRequiredError) as error:
            ap.run(edges)
        assert one_line(error).startswith("engine='blocks' needs a classic SparkSession")
        return
    if CONNECT and engine == "graphframes":
        # This Connect server has no GraphFrames plugin: the run says so and how to add it.
        with pytest.raises(GraphFramesUnavailableError) as error:
            ap.run(edges)
        assert "graphframes-connect-spark4_2.13" in one_line(error)
        return
    result = ap.run(edges)
    assert result.numIterations == sk.n_iter_ and result.converged
    clusters, exemplars = clusters_of(result, len(S))
    assert sorted(set(exemplars)) == list(sk.cluster_centers_indices_)
    assert same_partition(clusters, sk.labels_)


def test_multi_level_on_a_small_table_is_scikit_learns(session):
    X, _ = make_blobs(50, n_features=3, centers=4, random_state=5)
    sk = sklearn_fit(similarity_matrix(X))
    result = MultiLevelAffinityPropagation(noise="sklearn").run(feature_frame(session, X))
    clusters, exemplars = clusters_of(result, len(X))
    assert sorted(set(exemplars)) == list(sk.cluster_centers_indices_)
    assert same_partition(clusters, sk.labels_)


def test_a_saved_model_loads_and_assigns_new_points_as_scikit_learn_predicts(session, tmp_path):
    X, _ = make_blobs(45, n_features=2, centers=3, random_state=11)
    new, _ = make_blobs(20, n_features=2, centers=3, random_state=12)
    sk = sklearn_fit(similarity_matrix(X))
    MultiLevelAffinityPropagation(noise="sklearn").fit(feature_frame(session, X)).save(str(tmp_path / "model"))

    model = AffinityPropagationModel.load(str(tmp_path / "model"))
    got = {row.id: row.exemplar for row in model.transform(feature_frame(session, new, ids=range(100, 120))).collect()}
    # scikit-learn's predict: the nearest of its cluster centers.
    centers = X[sk.cluster_centers_indices_]
    nearest = np.argmin(((new[:, None, :] - centers[None, :, :]) ** 2).sum(-1), axis=1)
    assert [got[100 + i] for i in range(len(new))] == [int(sk.cluster_centers_indices_[c]) for c in nearest]


def test_a_rerun_resumes_from_its_save_to_scikit_learns_end(session, blobs, tmp_path):
    S, sk = blobs
    ap = AffinityPropagation(
        preference="median",
        noise="sklearn",
        convergenceIter=CONVERGENCE_ITER,
        stateDir=str(tmp_path),
        checkpointInterval=4,
    )
    edges = edges_from_matrix(session, S)
    if CONNECT:
        with pytest.raises(ClassicSessionRequiredError) as error:
            ap.run(edges)
        assert one_line(error).startswith("stateDir (saves and resumes) needs a classic SparkSession")
        return
    first = ap.run(edges)
    again = ap.run(edges)
    assert first.resumedFrom is None and again.resumedFrom == sk.n_iter_ // 4 * 4 > 0
    for result in (first, again):
        assert result.numIterations == sk.n_iter_
        clusters, exemplars = clusters_of(result, len(S))
        assert sorted(set(exemplars)) == list(sk.cluster_centers_indices_)
        assert same_partition(clusters, sk.labels_)


@pytest.mark.skipif(CONNECT, reason="the job makes its own classic session, as spark-submit does")
def test_the_job_on_the_bundled_example_finds_scikit_learns_exemplars(tmp_path):
    out = tmp_path / "run"
    command = [str(BIN / "spark-ap"), "--input", str(ROOT / "examples/blobs_400.csv"), "--kind", "features"]
    command += ["--noise", "sklearn", "--output", str(out), "--master", "local[2]"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    X = pd.read_csv(ROOT / "examples/blobs_400.csv")[["x", "y"]].to_numpy()
    sk = sklearn_fit(similarity_matrix(X))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == sk.n_iter_
    written = pd.read_parquet(out / "assignments.parquet").sort_values("id")
    assert sorted(written["exemplar"].unique()) == list(sk.cluster_centers_indices_)
    assert same_partition(written["cluster"].tolist(), sk.labels_)
