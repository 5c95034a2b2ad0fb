"""One local SparkSession for the whole suite, small and quiet."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from spark_ap import spark_session

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
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


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
