"""The job with its input, output, saves and lock on an S3 API server (tests.support.s3), through s3a://.

The suite's session has no hadoop-aws, so the job runs in a child process (the ``__main__`` block
below) with a session of its own; the oracle is the same job on local folders in this process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_blobs

from spark_ap import edges_from_matrix, similarity_matrix
from spark_ap.app.job import main
from tests.conftest import CHILD_JVM_OPTIONS, ROOT, written_rows

pytestmark = pytest.mark.slow

PARAMS = ["--damping", "0.7", "--seed", "4", "--preference", "median", "--checkpoint-interval", "2"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from tests.support.s3 import S3Server

    with S3Server(tmp_path_factory.mktemp("s3"), bucket="lake", jvm_options=[CHILD_JVM_OPTIONS]) as server:
        yield server


def _rows(s3, prefix: str) -> list[tuple]:
    """The (id, cluster, exemplar) rows of the Parquet part files under ``prefix``, read without Spark."""
    parts = [key for key in s3.ls(prefix) if key.rsplit("/", 1)[-1].startswith("part-")]
    assert parts, f"no part files under {prefix}"
    rows = []
    for key in parts:
        table = pq.read_table(io.BytesIO(s3.read(key))).to_pydict()
        rows += zip(*table.values(), strict=True)
    return sorted(rows)


def test_the_job_on_s3_writes_what_it_writes_locally_and_refuses_a_second_writer(spark, s3, tmp_path):
    X, _ = make_blobs(36, centers=3, random_state=5)
    edges = edges_from_matrix(spark, similarity_matrix(X)).toPandas()
    edges.to_csv(tmp_path / "edges.csv", index=False)
    assert main(["--input", str(tmp_path / "edges.csv"), "--output", str(tmp_path / "local"), *PARAMS]) == 0
    s3.put("edges.csv", edges.to_csv(index=False).encode())

    report = tmp_path / "report.json"
    child = subprocess.run(
        [sys.executable, "-m", "tests.test_s3", json.dumps(s3.spark_conf()), str(report)],
        cwd=tmp_path,  # the local disk the job must leave alone
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-5000:]
    seen = json.loads(report.read_text())

    assert seen["job"] == 0
    assert _rows(s3, "s3a://lake/runs/x/assignments.parquet/") == written_rows(tmp_path / "local")
    summary = json.loads(s3.read("s3a://lake/runs/x/summary.json"))
    local = json.loads((tmp_path / "local" / "summary.json").read_text())
    assert summary["iterations"] == local["iterations"] and summary["clusters"] == local["clusters"]
    assert not [key for key in s3.ls("s3a://lake/runs/x/") if "/state/" in key or "/.staging" in key]
    assert seen["skip_existing"] == 0  # the finished folder, checked file by file on S3, is trusted

    # A second writer, while the first holds the folder's lock (a conditional create on S3).
    assert seen["second_writer"] == 2
    assert len(seen["refusal"].strip().splitlines()) == 1
    assert "s3a://lake/runs/locked is in use by process" in seen["refusal"] and "(the first writer)" in seen["refusal"]
    # Nothing on the local disk: no folder named after the URI.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.csv", "local", "report.json"]


def _child(conf: dict[str, str], out: Path) -> None:
    """The job and a second writer on S3, in a session with hadoop-aws; what happened, as JSON in ``out``."""
    from spark_ap import spark_session
    from spark_ap.lock import FolderLock

    settings = {"spark.driver.host": "127.0.0.1", "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"}
    spark = spark_session(master="local[2]", **conf, **settings)
    job = ["--input", "s3a://lake/edges.csv", "--output", "s3a://lake/runs/x", *PARAMS]
    seen = {"job": main(job), "skip_existing": main([*job, "--skip-existing"])}
    err = io.StringIO()
    with FolderLock("s3a://lake/runs/locked", "the first writer", spark), contextlib.redirect_stderr(err):
        seen["second_writer"] = main(["--input", "s3a://lake/edges.csv", "--output", "s3a://lake/runs/locked"])
    seen["refusal"] = err.getvalue()
    out.write_text(json.dumps(seen))


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]), Path(sys.argv[2]))
