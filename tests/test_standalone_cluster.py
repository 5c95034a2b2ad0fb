"""On a real standalone cluster the job gives the local result: with GraphFrames from --packages, and when a worker
dies mid-run."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_matrix, similarity_matrix
from spark_ap.session import submit_arguments
from tests.conftest import CHILD_JVM_OPTIONS, assignment_rows, saves, wait_for_save, written_rows
from tests.standalone import StandaloneCluster

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and two workers for this module's jobs; the last test kills one."""
    daemons = {"SPARK_DAEMON_JAVA_OPTS": CHILD_JVM_OPTIONS}
    with StandaloneCluster(workers=2, tmp=tmp_path_factory.mktemp("cluster"), env=daemons) as running:
        yield running


def submit(cluster: StandaloneCluster, *args: str, log: Path, extra: list[str] = ()) -> subprocess.Popen:
    sink = log.open("w")
    return subprocess.Popen(
        [str(BIN / "spark-submit"), *cluster.submit_args(), *extra]
        + ["--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4"]
        + ["--conf", f"spark.executor.extraJavaOptions={CHILD_JVM_OPTIONS}"]
        + [str(ROOT / "scripts" / "spark_ap_job.py"), *args],
        stdout=sink,
        stderr=subprocess.STDOUT,
    )


def test_the_graphframes_engine_runs_on_executors_that_got_the_package_from_spark_submit(spark, cluster, tmp_path):
    X, _ = make_blobs(16, centers=3, random_state=5)
    edges = edges_from_matrix(spark, similarity_matrix(X))
    edges.write.parquet(str(tmp_path / "edges.parquet"))
    # A fixed 4 iterations, with a preference that has exemplars by then: every message
    # passes through the executors either way.
    with pytest.warns(UserWarning, match="did not converge"):
        local = AffinityPropagation(seed=4, maxIter=4, convergenceIter=5, preference="quantile:0.75").run(edges)
    assert local.exemplars.count() > 1

    out, log = tmp_path / "run", tmp_path / "job.log"
    args = ["--input", str(tmp_path / "edges.parquet"), "--output", str(out), "--seed", "4", "--engine", "graphframes"]
    args += ["--preference", "quantile:0.75", "--max-iter", "4", "--convergence-iter", "5"]
    # What the README's spark-submit line passes: --packages and --repositories; one
    # executor is enough to show that the package reached it.
    extra = [*submit_arguments(), "--total-executor-cores", "1"]
    job = submit(cluster, *args, log=log, extra=extra)
    assert job.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert written_rows(out) == assignment_rows(local)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == local.numIterations
    assert "with the graphframes engine" in log.read_text()


def test_a_standalone_cluster_losing_a_worker_gives_the_local_result(spark, cluster, tmp_path):
    X, _ = make_blobs(40, centers=3, random_state=11)
    edges = edges_from_matrix(spark, similarity_matrix(X))
    edges.write.parquet(str(tmp_path / "edges.parquet"))
    local = AffinityPropagation(damping=0.8, seed=2).run(edges)
    assert local.numIterations >= 20  # the kill below, at iteration 12, lands mid-run

    out, log = tmp_path / "run", tmp_path / "job.log"
    args = ["--input", str(tmp_path / "edges.parquet"), "--output", str(out), "--damping", "0.8", "--seed", "2"]
    job = submit(cluster, *args, "--checkpoint-interval", "10", "--engine", "blocks", log=log)
    try:
        # Past a save, with the newest iterations held only in executor memory:
        # the kill takes the local checkpoint the next iteration reads.
        wait_for_save(out / "state", 10, job)
        deadline = time.time() + 120
        while "iteration 12/" not in log.read_text():
            assert job.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        cluster.kill_worker(0)  # and with it its executor, its shuffle files and local checkpoints
        job.wait(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert cluster.alive_workers() == 1
    text = log.read_text()
    assert job.returncode == 0, text[-3000:]

    assert written_rows(out) == assignment_rows(local)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == local.numIterations and summary["converged"] == local.converged
    assert not saves(out / "state")
    # When the lost executor held part of the state (most runs), the next
    # iteration failed and the run went back to its newest save; when it held
    # none, Spark recomputed what it lost. Either way, the same result.
    assert "Lost executor" in text
