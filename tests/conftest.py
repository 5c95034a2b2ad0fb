"""One local SparkSession for the whole suite, small and quiet."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

# The JVMs that tests start of their own (spark-submit jobs, the DAG's tasks, the streaming
# job, a standalone cluster's daemons and executors) live for seconds, on a few dozen points.
# With the client compiler alone they warm up on about 40% less CPU, and CPU is what the
# suite waits for on two cores. Results are the same: Java's arithmetic is strict. The
# suite's own session runs for the whole suite and keeps both compilers (C1 alone made it
# slower). spark-submit passes SPARK_SUBMIT_OPTS to the driver's JVM.
CHILD_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
SUBMIT_OPTS = os.environ.get("SPARK_SUBMIT_OPTS", "")
os.environ["SPARK_SUBMIT_OPTS"] = f"{SUBMIT_OPTS} {CHILD_JVM_OPTIONS}".strip()
# py4j logs at interpreter exit, after pytest has closed the streams.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from spark_ap import spark_session

    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPARK_SUBMIT_OPTS", SUBMIT_OPTS)  # see CHILD_JVM_OPTIONS
        session = spark_session(
            master="local[2]",
            **{
                "spark.sql.shuffle.partitions": "4",
                "spark.default.parallelism": "2",
                "spark.ui.enabled": "false",
                "spark.driver.memory": "3g",
                # Every iteration is a few SQL executions; keep the driver's record of
                # them short so a long suite does not fill the heap with plan text.
                "spark.sql.ui.retainedExecutions": "20",
                "spark.ui.retainedJobs": "50",
                "spark.ui.retainedStages": "50",
                "spark.ui.retainedTasks": "1000",
                "spark.sql.session.timeZone": "UTC",
                # The tests' HDFS (tests.support.hdfs) has its DataNode on 127.0.0.1: an executor on
                # the same address reads its blocks node-local. On the machine's host name instead,
                # a stage over a cached HDFS scan waited forever for a node-local slot.
                "spark.driver.host": "127.0.0.1",
            },
        )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


def feature_frame(spark, X, ids=None):
    """``id long, features array<double>``: the rows of ``X``, with ids 0..n-1 or ``ids``."""
    ids = range(len(X)) if ids is None else ids
    rows = [(int(i), [float(v) for v in x]) for i, x in zip(ids, X, strict=True)]
    return spark.createDataFrame(rows, "id long, features array<double>")


def dense_messages(result, n: int, ids=None) -> tuple[np.ndarray, np.ndarray]:
    """The run's r and a as n x n matrices, NaN where there is no edge."""
    index = {v: i for i, v in enumerate(range(n) if ids is None else ids)}
    R = np.full((n, n), np.nan)
    A = np.full((n, n), np.nan)
    for row in result.messages.select("src", "dst", "r", "a").collect():
        R[index[row.src], index[row.dst]] = row.r
        A[index[row.src], index[row.dst]] = row.a
    return R, A


def labels_of(result, ids) -> np.ndarray:
    """Cluster per id, in the order of ``ids``."""
    by_id = {row.id: row.cluster for row in result.assignments.collect()}
    return np.array([by_id[i] for i in ids])


def exemplars_of(result) -> list:
    return sorted(row.exemplar for row in result.exemplars.collect())


def assignment_rows(result) -> list[tuple]:
    """The run's (id, cluster, exemplar) rows, sorted."""
    return sorted(tuple(row) for row in result.assignments.collect())


def written_rows(folder: Path) -> list[tuple]:
    """The (id, cluster, exemplar) rows of a run folder's assignments.parquet, sorted."""
    import pandas as pd

    return sorted(pd.read_parquet(folder / "assignments.parquet").itertuples(index=False, name=None))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, failing if it is not one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def saves(folder: Path) -> list[int]:
    """Iterations of the complete state saves in ``folder`` (see spark_ap.run.state)."""
    if not folder.is_dir():
        return []
    done = [p for p in folder.glob("iteration-*") if (p / "_spark_ap_state.json").exists()]
    return sorted(int(p.name.split("-")[1]) for p in done)


def wait_for_save(folder: Path, iteration: int, process=None, timeout: float = 300) -> None:
    """Block until ``folder`` holds a save of ``iteration`` or later, failing if ``process`` ends first."""
    import time

    deadline = time.time() + timeout
    while not [i for i in saves(folder) if i >= iteration]:
        if process is not None:
            assert process.poll() is None, f"the job ended ({process.returncode}) before iteration {iteration}"
        assert time.time() < deadline, f"no save of iteration {iteration} in {folder} within {timeout} s"
        time.sleep(0.1)


def kill_job_after_save(root: Path, iteration: int, done, killed: list, pattern: str = "*") -> None:
    """SIGKILL the spark-ap job's processes (JVM and Python driver) once a run folder ``root/<pattern>`` saved
    ``iteration``; ``killed`` gets their pids. For a thread: it returns after the kill or once ``done`` is set."""
    import psutil

    from spark_ap.session import job_script

    # The job runs from the checkout's scripts/spark_ap_job.py or the installed package's file.
    job_files = ("spark_ap_job.py", job_script())
    while not done.is_set():
        for folder in root.glob(pattern):
            # A feature table's run saves each level's state in state/level-N.
            states = [folder / "state", *folder.glob("state/level-*")]
            if any(i >= iteration for state in states for i in saves(state)):
                for process in psutil.process_iter(["cmdline"]):
                    command = " ".join(process.info["cmdline"] or [])
                    if any(name in command for name in job_files) and str(folder) in command:
                        process.kill()
                        killed.append(process.pid)
                return
        time.sleep(0.1)
