"""On a real standalone cluster (a master and four workers of one core) the job gives the local result: with
GraphFrames from --packages, with the routed exchange bit for bit, and when a worker dies mid-run."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_matrix, similarity_matrix
from spark_ap.session import submit_arguments
from tests.conftest import CHILD_JVM_OPTIONS, assignment_rows, saves, wait_for_save, written_rows
from tests.support.standalone import StandaloneCluster

# Minutes of real clusters: `make test-slow` runs them (CI too), `make test` leaves them out.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A master and four workers of one core for this module's jobs; the last test kills one."""
    daemons = {"SPARK_DAEMON_JAVA_OPTS": CHILD_JVM_OPTIONS}
    with StandaloneCluster(workers=4, cores=1, tmp=tmp_path_factory.mktemp("cluster"), env=daemons) as running:
        yield running


def submit(
    cluster: StandaloneCluster, *args: str, log: Path, extra: list[str] = (), script: Path | None = None
) -> subprocess.Popen:
    sink = log.open("w")
    return subprocess.Popen(
        [str(BIN / "spark-submit"), *cluster.submit_args(), *extra]
        + ["--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4"]
        # The first job waits for every executor: the blocks engine makes a partition per core.
        + ["--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0"]
        + ["--conf", f"spark.executor.extraJavaOptions={CHILD_JVM_OPTIONS}"]
        + [str(script or ROOT / "scripts" / "spark_ap_job.py"), *args],
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


# A driver program for the cluster: the routed exchange on every executor, chunks of 40 edges.
MESSAGES = """
import logging
import sys
from spark_ap import AffinityPropagation, spark_session
from spark_ap.engines.blocks import pack
pack.CHUNK_EDGES = 40
logging.basicConfig(level=logging.INFO)
spark = spark_session()
edges = spark.read.parquet(sys.argv[1])
ap = AffinityPropagation(engine="blocks", exchange="routed", seed=4, maxIter=4, convergenceIter=5)
result = ap.run(edges)
result.messages.write.parquet(sys.argv[2] + "/messages")
result.assignments.write.parquet(sys.argv[2] + "/assignments")
print("partitions", spark.sparkContext.defaultParallelism)
"""


def test_the_routed_exchange_on_four_executors_gives_the_local_messages_bit_for_bit(spark, cluster, tmp_path):
    import pandas as pd

    X, _ = make_blobs(40, centers=4, random_state=3)
    edges = edges_from_matrix(spark, similarity_matrix(X), ids=[f"p{k:02d}" for k in range(40)])
    edges.write.parquet(str(tmp_path / "edges.parquet"))
    with pytest.warns(UserWarning, match="did not converge"):  # a fixed 4 iterations
        local = AffinityPropagation(engine="local", seed=4, maxIter=4, convergenceIter=5).run(edges)
    script, log = tmp_path / "messages.py", tmp_path / "job.log"
    script.write_text(MESSAGES)
    job = submit(cluster, str(tmp_path / "edges.parquet"), str(tmp_path / "out"), log=log, script=script)
    assert job.wait(timeout=600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    # A partition per executor core, each merged through the owners of its sources, with no
    # task run away from its partition's files (that would have failed the run: no stateDir).
    assert "partitions 4" in text and "routed exchange" in text
    got = pd.read_parquet(tmp_path / "out" / "messages")
    columns = ["src", "dst", "similarity", "s", "r", "a"]
    assert sorted(got[columns].itertuples(index=False, name=None)) == sorted(
        tuple(row) for row in local.messages.select(*columns).collect()
    )
    assignments = pd.read_parquet(tmp_path / "out" / "assignments")
    assert sorted(assignments.itertuples(index=False, name=None)) == assignment_rows(local)


@contextmanager
def killed_if_left_running(job: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``job``, killed on the way out if it is still running (a failed assertion while it runs)."""
    try:
        yield job
    finally:
        if job.poll() is None:
            job.kill()


def until_logged(job: subprocess.Popen, log: Path, line: str, seconds: float, poll: float = 0.05) -> None:
    """Wait until the job's log has ``line``; fail with the log's end if the job ends first or it takes longer."""
    deadline = time.time() + seconds
    while line not in log.read_text():
        assert job.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(poll)


def test_a_standalone_cluster_losing_a_worker_gives_the_local_result(spark, cluster, tmp_path):
    X, _ = make_blobs(40, centers=3, random_state=11)
    edges = edges_from_matrix(spark, similarity_matrix(X))
    edges.write.parquet(str(tmp_path / "edges.parquet"))
    local = AffinityPropagation(convergenceIter=8, seed=2).run(edges)
    assert local.numIterations >= 10  # the kill below, at iteration 6, lands mid-run

    out, log = tmp_path / "run", tmp_path / "job.log"
    args = ["--input", str(tmp_path / "edges.parquet"), "--output", str(out), "--convergence-iter", "8"]
    args += ["--seed", "2", "--checkpoint-interval", "4", "--engine", "blocks", "--exchange", "routed"]
    job = submit(cluster, *args, log=log)
    with killed_if_left_running(job):
        # Past a save, with the newest iterations held only in the executors (each holds a
        # partition: its chunk files and its cached element): the kill takes one of them.
        wait_for_save(out / "state", 4, job)
        until_logged(job, log, "iteration 6/", 120)
        cluster.kill_worker(0)  # and with it its executor, its shuffle files and local checkpoints
        job.wait(timeout=600)
    assert cluster.alive_workers() == 3
    text = log.read_text()
    assert job.returncode == 0, text[-3000:]

    assert written_rows(out) == assignment_rows(local)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == local.numIterations and summary["converged"] == local.converged
    history = (out / "history.csv").read_text().splitlines()[1:]
    assert [tuple(int(x) for x in line.split(",")) for line in history] == [
        tuple(row) for row in local.history.itertuples(index=False)
    ]
    assert not saves(out / "state")
    # The lost executor held a partition, so an iteration failed and the run went on from its
    # newest save (of iteration 4).
    assert "Lost executor" in text
    assert "retrying from the state of iteration 4" in text


def _python_driver(job: subprocess.Popen) -> int:
    """The process id of the job's Python driver: the child spark-submit's JVM started for the script."""
    children = [
        int(pid) for task in Path(f"/proc/{job.pid}/task").iterdir() for pid in (task / "children").read_text().split()
    ]
    (python,) = [pid for pid in children if "python" in Path(f"/proc/{pid}/exe").resolve().name]
    return python


def test_a_worker_lost_during_the_final_assignment_is_recovered_from_saves_on_hdfs(spark, cluster, tmp_path):
    """The workers share no disk with the saves: they are on HDFS. A worker dies once the last iteration is
    done, with the state held in its executor's chunk files: the final assignment fails, and the run goes
    on from its newest save on HDFS to the uninterrupted result."""
    import os
    import signal

    from tests.support.hdfs import HdfsCluster

    X, _ = make_blobs(40, centers=3, random_state=11)
    edges = edges_from_matrix(spark, similarity_matrix(X))
    local = AffinityPropagation(convergenceIter=8, seed=2).run(edges)
    last = local.numIterations
    assert last % 4  # the newest save is of an earlier iteration: the recovery repeats iterations

    with HdfsCluster(tmp_path / "hdfs") as hdfs:
        edges.write.parquet(hdfs.url("/edges.parquet"))
        out, log = hdfs.url("/runs/x"), tmp_path / "job.log"
        args = ["--input", hdfs.url("/edges.parquet"), "--output", out, "--convergence-iter", "8", "--seed", "2"]
        args += ["--checkpoint-interval", "4", "--engine", "blocks", "--exchange", "routed"]
        extra = [f"--conf={key}={value}" for key, value in hdfs.hadoop_conf().items()]
        alive = cluster.alive_workers()
        job = submit(cluster, *args, log=log, extra=extra)
        with killed_if_left_running(job):
            until_logged(job, log, f"iteration {last}/", 300, poll=0.02)
            # The driver is held before it can finish, while a worker dies with its executor's chunk files.
            driver = _python_driver(job)
            os.kill(driver, signal.SIGSTOP)
            try:
                cluster.kill_worker(next(i for i, worker in enumerate(cluster._workers) if worker is not None))
                cluster.wait_for_workers(alive - 1)
            finally:
                os.kill(driver, signal.SIGCONT)
            job.wait(timeout=600)
        text = log.read_text()
        assert job.returncode == 0, text[-3000:]
        assert "the final assignment failed" in text, text[-3000:]
        assert f"retrying from the state of iteration {last // 4 * 4}" in text
        got = spark.read.parquet(f"{out}/assignments.parquet").collect()
        assert sorted(tuple(row) for row in got) == assignment_rows(local)
        assert not hdfs.exists("/runs/x/state")  # the finished run's saves are gone


def test_a_worker_lost_with_no_state_dir_costs_the_iterations_since_the_checkpoint_directory_on_hdfs(
    spark, cluster, tmp_path
):
    """No state dir: the session's checkpoint directory, on HDFS (the workers share no disk with it),
    holds every 4th state. A worker dies mid-run with its executor's chunk files and cached blocks; the
    run goes back to the newest state there, says how many iterations it repeats, and ends as the
    uninterrupted run."""
    from tests.support.hdfs import HdfsCluster

    X, _ = make_blobs(40, centers=3, random_state=11)
    edges = edges_from_matrix(spark, similarity_matrix(X))
    params = dict(convergenceIter=8, seed=2, checkpointInterval=4, engine="blocks", exchange="routed")
    local = AffinityPropagation(**{**params, "engine": "local", "checkpointInterval": 10}).run(edges)
    assert local.numIterations >= 10  # the kill below, after iteration 6, lands mid-run

    with HdfsCluster(tmp_path / "hdfs") as hdfs:
        edges.write.parquet(hdfs.url("/edges.parquet"))
        log = tmp_path / "job.log"
        args = [hdfs.url("/edges.parquet"), hdfs.url("/runs/x"), hdfs.url("/checkpoints")]
        args += [f"{key}={json.dumps(value)}" for key, value in params.items()]
        extra = [f"--conf={key}={value}" for key, value in hdfs.hadoop_conf().items()]
        alive = cluster.alive_workers()
        assert alive >= 2
        job = submit(cluster, *args, log=log, extra=extra, script=ROOT / "tests" / "support" / "run_without_saves.py")
        with killed_if_left_running(job):
            until_logged(job, log, "iteration 6/", 300)
            cluster.kill_worker(next(i for i, worker in enumerate(cluster._workers) if worker is not None))
            job.wait(timeout=600)
        text = log.read_text()
        assert job.returncode == 0, text[-3000:]
        assert cluster.alive_workers() == alive - 1
        # The lost executor held a partition: an iteration after the 6th failed and the run went back
        # to the state of iteration 4 in the checkpoint directory, repeating what it had done since.
        assert "Lost executor" in text
        (said,) = [line for line in text.splitlines() if "retrying from the reliable checkpoint of iteration 4" in line]
        failed = int(said.split("iteration ")[1].split(" failed")[0])
        assert failed >= 7 and f"repeating {failed - 1 - 4} iterations" in said
        got = spark.read.parquet(hdfs.url("/runs/x/assignments.parquet")).collect()
        assert sorted(tuple(row) for row in got) == assignment_rows(local)
        counts = json.loads(spark.read.text(hdfs.url("/runs/x/counts")).first()[0])
        assert counts["iterations"] == local.numIterations and counts["converged"] == local.converged
        assert [tuple(row) for row in counts["history"]] == [tuple(r) for r in local.history.itertuples(index=False)]
