"""The job on a standalone cluster whose executors share nothing with the driver but HDFS, and whose Python
has numpy, pandas and pyarrow but not spark-ap: the job ships its own code (``--py-files``)."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, __version__, edges_from_matrix, similarity_matrix
from spark_ap.session import job_script, submit_arguments
from tests.conftest import CHILD_JVM_OPTIONS, assignment_rows
from tests.support.hdfs import HdfsCluster
from tests.support.standalone import StandaloneCluster

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ARGS = ["--damping", "0.7", "--seed", "4", "--engine", "blocks", "--checkpoint-interval", "3"]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A second virtualenv: the suite's packages (pyspark's, numpy, pandas, pyarrow) but not spark-ap,
    whose editable install a plain path in a .pth file does not bring along."""
    venv = tmp_path_factory.mktemp("executors") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (packages,) = (venv / "lib").glob("python3*/site-packages")
    (packages / "suite.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = str(venv / "bin" / "python")
    probe = "import numpy, pandas, pyarrow\ntry:\n import spark_ap\nexcept ImportError: print('no spark_ap')"
    found = subprocess.run([python, "-c", probe], cwd=venv, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "no spark_ap", found.stdout + found.stderr
    return python


@pytest.fixture(scope="module")
def hdfs(tmp_path_factory):
    with HdfsCluster(tmp_path_factory.mktemp("hdfs")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    daemons = {"SPARK_DAEMON_JAVA_OPTS": CHILD_JVM_OPTIONS}
    with StandaloneCluster(workers=2, cores=1, tmp=tmp_path_factory.mktemp("cluster"), env=daemons) as running:
        yield running


def _submit(cluster, bare_python: str, options: list[str], args: list[str], log: Path) -> int:
    command = [str(BIN / "spark-submit"), *cluster.submit_args(), *options]
    command += [
        "--conf",
        f"spark.pyspark.python={bare_python}",
        "--conf",
        f"spark.pyspark.driver.python={sys.executable}",
    ]
    command += ["--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4"]
    command += ["--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0"]
    command += ["--conf", f"spark.executor.extraJavaOptions={CHILD_JVM_OPTIONS}", job_script(), *args]
    with log.open("w") as sink:
        return subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=900).returncode


def test_the_job_ships_its_code_to_executors_without_spark_ap(spark, hdfs, cluster, bare_python, tmp_path):
    X, _ = make_blobs(30, centers=3, random_state=5)
    edges = edges_from_matrix(spark, similarity_matrix(X))
    hdfs.write("/data/edges.csv", edges.toPandas().to_csv(index=False).encode())
    local = AffinityPropagation(damping=0.7, seed=4).run(edges)
    job = ["--input", hdfs.url("/data/edges.csv"), *ARGS]

    # Without the code: the executors' Python cannot import spark-ap, and the job fails saying so.
    log = tmp_path / "unshipped.log"
    assert _submit(cluster, bare_python, [], [*job, "--output", hdfs.url("/runs/unshipped")], log) != 0
    assert "No module named 'spark_ap'" in log.read_text()

    # With what submit_arguments gives (the zip of spark_ap, --py-files): the local run's result.
    options = submit_arguments(code=tmp_path / "dist")
    assert options[-2:] == ["--py-files", str(tmp_path / "dist" / f"spark_ap-{__version__}.zip")]
    log = tmp_path / "shipped.log"
    out = hdfs.url("/runs/shipped")
    assert _submit(cluster, bare_python, options, [*job, "--output", out], log) == 0, log.read_text()[-4000:]
    assert sorted(tuple(r) for r in spark.read.parquet(f"{out}/assignments.parquet").collect()) == (
        assignment_rows(local)
    )
    assert json.loads(hdfs.read("/runs/shipped/summary.json"))["iterations"] == local.numIterations
    # The executors ran in the workers' own folders, and wrote nothing beside the driver's temporary files.
    assert not [p for p in tmp_path.rglob("*") if "hdfs" in p.name]
