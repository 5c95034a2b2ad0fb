"""The job, its saves, its lock and its run folder on a real HDFS: every path a URI, nothing on the local disk.

Hadoop's own NameNode and DataNode (tests.support.hdfs) hold the input, the output and the state;
the oracle is the same job on local folders, and the library's run on the same graph.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, AffinityPropagationModel, edges_from_matrix, similarity_matrix
from spark_ap.app.job import main
from spark_ap.lock import FolderLock
from tests.conftest import assignment_rows, written_rows
from tests.support.hdfs import HdfsCluster

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARAMS = ["--damping", "0.7", "--seed", "4", "--preference", "median"]


@pytest.fixture(scope="module")
def hdfs(tmp_path_factory):
    with HdfsCluster(tmp_path_factory.mktemp("hdfs")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def blobs(spark):
    X, _ = make_blobs(36, centers=3, random_state=5)
    return edges_from_matrix(spark, similarity_matrix(X)).toPandas()


def _put(hdfs: HdfsCluster, path: str, frame: pd.DataFrame) -> str:
    hdfs.write(path, frame.to_csv(index=False).encode())
    return hdfs.url(path)


def _hdfs_rows(spark, uri: str) -> list[tuple]:
    return sorted(tuple(row) for row in spark.read.parquet(uri).collect())


def _no_folder_named_after_a_scheme(*roots: Path) -> None:
    """What the job once made of hdfs://host/x with pathlib: local folders hdfs:/host/x, hdfs%3A/..."""
    for root in roots:
        found = [p for p in (root.iterdir() if root == Path.cwd() else root.rglob("*")) if "hdfs" in p.name]
        assert not found, f"local folders named after the URI: {found}"


def test_the_job_reads_writes_and_saves_on_hdfs_as_it_does_locally(spark, hdfs, blobs, tmp_path):
    local_input = tmp_path / "edges.csv"
    blobs.to_csv(local_input, index=False)
    local_out = tmp_path / "local"
    assert main(["--input", str(local_input), "--output", str(local_out), *PARAMS, "--checkpoint-interval", "2"]) == 0

    uri_input = _put(hdfs, "/data/edges.csv", blobs)
    out = hdfs.url("/runs/x")
    # The state is saved every 2 iterations in out/state on HDFS (the default state dir), and cleared at the end.
    assert main(["--input", uri_input, "--output", out, *PARAMS, "--checkpoint-interval", "2"]) == 0

    assert _hdfs_rows(spark, f"{out}/assignments.parquet") == written_rows(local_out)
    expected = AffinityPropagation(damping=0.7, seed=4).run(spark.createDataFrame(blobs))
    assert written_rows(local_out) == assignment_rows(expected)
    names = hdfs.ls("/runs/x")
    assert {"assignments.parquet", "exemplars.csv", "history.csv", "summary.json", "convergence.png"} <= set(names)
    assert "state" not in names and not [n for n in names if n.startswith(".staging")]
    summary = json.loads(hdfs.read("/runs/x/summary.json"))
    local_summary = json.loads((local_out / "summary.json").read_text())
    assert summary["iterations"] == local_summary["iterations"] == expected.numIterations
    assert summary["files"]["exemplars.csv"] == local_summary["files"]["exemplars.csv"]
    assert any(name.startswith("assignments.parquet/part-") for name in summary["files"])
    _no_folder_named_after_a_scheme(Path.cwd(), tmp_path)

    # A rerun with --skip-existing trusts the finished folder after checking its files on HDFS.
    assert main(["--input", uri_input, "--output", out, *PARAMS, "--skip-existing"]) == 0
    assert hdfs.read("/runs/x/summary.json") == json.dumps(summary, indent=2).encode() + b"\n"


def test_a_feature_run_on_hdfs_saves_a_model_that_loads_from_hdfs(spark, hdfs, tmp_path):
    X, _ = make_blobs(40, centers=3, random_state=8)
    points = pd.DataFrame({"id": np.arange(40), "x": X[:, 0], "y": X[:, 1]})
    out = hdfs.url("/runs/features")
    assert main(["--input", _put(hdfs, "/data/points.csv", points), "--output", out, "--kind", "features"]) == 0
    local_out = tmp_path / "local"
    points.to_csv(tmp_path / "points.csv", index=False)
    assert main(["--input", str(tmp_path / "points.csv"), "--output", str(local_out), "--kind", "features"]) == 0

    assert _hdfs_rows(spark, f"{out}/assignments.parquet") == written_rows(local_out)
    assert hdfs.read("/runs/features/clusters.png")[:8] == b"\x89PNG\r\n\x1a\n"
    model = AffinityPropagationModel.load(f"{out}/model")
    features = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    assert sorted(tuple(r) for r in model.transform(features).select("id", "cluster", "exemplar").collect()) == (
        written_rows(local_out)
    )
    _no_folder_named_after_a_scheme(Path.cwd(), tmp_path)


def test_a_second_writer_on_an_hdfs_output_folder_is_refused(spark, hdfs, blobs, capsys):
    uri_input = _put(hdfs, "/data/edges-locked.csv", blobs)
    out = hdfs.url("/runs/locked")
    with FolderLock(out, "the first writer", spark):
        assert hdfs.exists("/runs/locked/.spark-ap.lock")
        assert main(["--input", uri_input, "--output", out, *PARAMS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{out} is in use by process {os.getpid()}" in err and "(the first writer)" in err
    assert not hdfs.exists("/runs/locked")  # let go; made only for the lock, removed


def test_a_killed_job_resumes_from_its_saves_on_hdfs(spark, hdfs, blobs):
    uri_input = _put(hdfs, "/data/edges-killed.csv", blobs)
    out = hdfs.url("/runs/killed")
    args = ["--input", uri_input, "--output", out, *PARAMS, "--checkpoint-interval", "2", "--engine", "blocks"]
    uninterrupted = AffinityPropagation(damping=0.7, seed=4, engine="blocks").run(spark.createDataFrame(blobs))
    job = subprocess.Popen(
        [str(BIN / "spark-submit"), "--master", "local[2]", "--conf", "spark.driver.host=127.0.0.1"]
        + [str(ROOT / "scripts" / "spark_ap_job.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while not [n for n in _saves(hdfs, "/runs/killed/state") if n >= 4]:
            assert job.poll() is None, f"the job ended ({job.returncode}) before its save of iteration 4"
            assert time.time() < deadline, "no save of iteration 4 on HDFS within 300 s"
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    killed_at = _saves(hdfs, "/runs/killed/state")[-1]
    assert not hdfs.exists("/runs/killed/summary.json") and killed_at < uninterrupted.numIterations

    # The rerun, on the suite's session, takes over the killed job's lock (its process is gone) and resumes.
    assert main(args) == 0
    summary = json.loads(hdfs.read("/runs/killed/summary.json"))
    assert summary["resumed_from_iteration"] >= killed_at
    assert summary["iterations"] == uninterrupted.numIterations
    assert _hdfs_rows(spark, f"{out}/assignments.parquet") == assignment_rows(uninterrupted)
    assert not hdfs.exists("/runs/killed/state")


def _saves(hdfs: HdfsCluster, folder: str) -> list[int]:
    """Iterations of the complete saves in ``folder`` on HDFS (see spark_ap.run.state)."""
    if not hdfs.exists(folder):
        return []
    names = hdfs.ls(folder)
    done = [n for n in names if n.startswith("iteration-") and hdfs.exists(f"{folder}/{n}/_spark_ap_state.json")]
    return sorted(int(n.split("-")[1]) for n in done)


def test_refusals_on_hdfs_are_one_line(spark, hdfs, blobs, capsys):
    uri_input = _put(hdfs, "/data/edges-refused.csv", blobs)
    hdfs.mkdirs("/readonly", mode=0o555)
    assert main(["--input", uri_input, "--output", hdfs.url("/readonly/x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Permission denied" in err and "/readonly/x" in err, err

    done = hdfs.url("/runs/done")
    assert main(["--input", uri_input, "--output", done, *PARAMS]) == 0
    capsys.readouterr()
    assert main(["--input", uri_input, "--output", done, *PARAMS]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"spark-ap: error: The output folder {done} already holds a finished run; choose a new one"

    assert main(["--input", hdfs.url("/data/missing.csv"), "--output", hdfs.url("/runs/none")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"The input {hdfs.url('/data/missing.csv')} does not exist")
    assert not hdfs.exists("/runs/none")


def test_the_stream_reads_its_model_from_hdfs_and_swaps_to_a_newer_one_published_there(spark, hdfs, tmp_path):
    from spark_ap import MultiLevelAffinityPropagation
    from spark_ap.app.pipeline import publish_latest
    from tests.conftest import feature_frame
    from tests.support.kafka import KafkaBroker
    from tests.test_stream import _expected, _good, _produce, _read

    def publish(name: str, X):
        model = MultiLevelAffinityPropagation().fit(feature_frame(spark, X))
        model.save(hdfs.url(f"/published/{name}/model"))
        hdfs.write(f"/published/{name}/summary.json", b"{}")
        publish_latest(hdfs.url(f"/published/{name}"))
        return model

    X1, _ = make_blobs(60, n_features=2, centers=3, random_state=1)
    X2, _ = make_blobs(60, n_features=2, centers=5, random_state=2)
    new, _ = make_blobs(40, n_features=2, centers=5, random_state=3)
    model1 = publish("run-1", X1)
    assert json.loads(hdfs.read("/published/latest.json"))["folder"] == "run-1"
    with KafkaBroker(tmp_path / "kafka") as broker:
        broker.create_topics("points", "points-assigned", "points-dead")
        # The output root on HDFS: its latest.json names the model's run folder; the checkpoint is there too.
        command = [str(BIN / "spark-ap"), "stream", "--bootstrap-servers", broker.bootstrap_servers]
        command += ["--input-topic", "points", "--output-topic", "points-assigned", "--dead-letter-topic"]
        command += ["points-dead", "--model", hdfs.url("/published"), "--checkpoint-location"]
        command += [hdfs.url("/checkpoints/points"), "--master", "local[2]", "--available-now"]
        env = {**os.environ, "SPARK_LOCAL_HOSTNAME": "127.0.0.1", "SPARK_LOCAL_IP": "127.0.0.1"}

        _produce(broker, "points", _good(range(0, 20), new[0:20]))
        assert subprocess.run(command, env=env, timeout=600).returncode == 0
        first = _read(broker, "points-assigned", lambda r: len(r) >= 20)
        assert {value["model_version"] for _, value, _ in first} == {"run-1"}
        assert {v["id"]: (v["cluster"], v["exemplar"]) for _, v, _ in first} == _expected(
            model1, spark, new[0:20], range(0, 20)
        )

        model2 = publish("run-2", X2)
        _produce(broker, "points", _good(range(20, 40), new[20:40]))
        assert subprocess.run(command, env=env, timeout=600).returncode == 0
        second = _read(broker, "points-assigned", lambda r: len(r) >= 40)[20:]
        assert {value["model_version"] for _, value, _ in second} == {"run-2"}
        assert {v["id"]: (v["cluster"], v["exemplar"]) for _, v, _ in second} == _expected(
            model2, spark, new[20:40], range(20, 40)
        )
    # Each micro-batch's model is pinned in the checkpoint on HDFS.
    assert hdfs.ls("/checkpoints/points/models")
    _no_folder_named_after_a_scheme(Path.cwd(), tmp_path)
