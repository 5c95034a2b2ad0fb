"""On a real standalone cluster the job gives the local result, even when a worker dies mid-run."""

import json
import subprocess
import sys
import time
from pathlib import Path

from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_matrix, similarity_matrix
from tests.conftest import assignment_rows, saves, wait_for_save, written_rows
from tests.standalone import StandaloneCluster

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_a_standalone_cluster_losing_a_worker_gives_the_local_result(spark, tmp_path):
    X, _ = make_blobs(40, centers=3, random_state=11)
    edges = edges_from_matrix(spark, similarity_matrix(X))
    edges.write.parquet(str(tmp_path / "edges.parquet"))
    local = AffinityPropagation(damping=0.9, seed=2).run(edges)

    out = tmp_path / "run"
    log = tmp_path / "job.log"
    with StandaloneCluster(workers=2, tmp=tmp_path / "cluster") as cluster, log.open("w") as sink:
        job = subprocess.Popen(
            [str(BIN / "spark-submit"), *cluster.submit_args()]
            + ["--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4"]
            + [str(ROOT / "scripts" / "spark_ap_job.py"), "--input", str(tmp_path / "edges.parquet")]
            + ["--output", str(out), "--damping", "0.9", "--seed", "2", "--checkpoint-interval", "10"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
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
