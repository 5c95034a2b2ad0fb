"""The Airflow DAG: it imports, validates its params, and runs end to end on local Spark."""

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, InvalidInputError, edges_from_features
from spark_ap.app.job import main as job_main
from spark_ap.app.pipeline import check_input, job_arguments, run_folder
from spark_ap.params import dag_params
from tests.conftest import BIN, ROOT, assignment_rows, png_size, saves, written_rows


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory):
    """An Airflow of these tests' own: fresh SQLite metadata, our DAG folder, a
    spark_default connection to local Spark, its database migrated once (dag.test()
    needs it). Airflow reads its settings when first imported, which happens in
    these fixtures, after the environment below is in place."""
    home = tmp_path_factory.mktemp("airflow")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
            # The DAG leaves the delay between retries to Airflow's settings: a short one here.
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
            # SparkSubmitOperator finds spark-submit on PATH.
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }.items():
            env.setenv(key, value)
        done = subprocess.run([str(BIN / "airflow"), "db", "migrate"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        yield


@pytest.fixture
def dag(airflow_db):
    """The DAG, parsed afresh for each test: dag.test() runs tasks in this process and
    leaves the run's conf merged into the task objects' params, where the next run
    would read it as defaults."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag("spark_ap_pipeline")


def test_dag_folder_imports_with_the_pipeline(dag):
    assert sorted(t.task_id for t in dag.tasks) == ["cluster", "ingest", "report", "validate"]
    assert dag.get_task("cluster").upstream_task_ids == {"validate", "ingest"}
    assert [a.name for a in dag.get_task("report").outlets] == ["spark_ap_results"]
    assert dag.get_task("cluster")._conn_id == dag.get_task("validate")._conn_id == "spark_default"
    assert dag.get_task("cluster").retries >= 1 and dag.get_task("validate").retries == 0
    assert dag.get_task("cluster").retry_delay == timedelta(seconds=1)  # Airflow's setting, not the DAG's
    # The estimators' params with their defaults: the DAG carries no numbers of its own.
    assert {name: dag.params[name] for name in dag_params()} == {k: v["default"] for k, v in dag_params().items()}


def test_parsing_the_dag_file_imports_no_spark(airflow_db):
    # Airflow parses DAG files over and over: Spark, numpy, pandas and pyarrow load in the tasks.
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "print(sorted(m for m in ('pyspark', 'numpy', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "dags" / "spark_ap_pipeline.py")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "conf, message",
    [({"damping": 1.5}, "damping"), ({"max_iter": 0}, "max_iter"), ({"kind": "graph"}, "kind")],
)
def test_bad_params_are_refused_before_any_task_runs(dag, conf, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=message):
        dag.test(run_conf=conf)


def test_missing_input_fails_at_ingest(dag, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        check_input(str(tmp_path / "nope.csv"), "features")
    run = dag.test(run_conf={"input": str(tmp_path / "nope.csv"), "output_root": str(tmp_path / "runs")})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states["ingest"] == "failed" and states["cluster"] == "upstream_failed"
    assert not (tmp_path / "runs").exists()


def test_bad_data_fails_at_validation_and_writes_nothing(dag, tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("id,x,y\n0,1.0,2.0\n1,1.5,\n2,3.0,1.0\n")  # point 1 has no y
    run = dag.test(run_conf={"input": str(csv), "output_root": str(tmp_path / "runs")})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states["ingest"] == "success" and states["validate"] == "failed"
    assert states["cluster"] == "upstream_failed"
    assert not (tmp_path / "runs").exists()


def _kill_job_after_save(root: Path, iteration: int, done: threading.Event, killed: list) -> None:
    """SIGKILL the spark-ap job's processes (JVM and Python driver) once a run under ``root`` saved ``iteration``."""
    import psutil

    while not done.is_set():
        # A feature table's run saves each level's state in state/level-N.
        folders = [*root.glob("*/state"), *root.glob("*/state/level-*")]
        if any(i >= iteration for state in folders for i in saves(state)):
            for process in psutil.process_iter(["cmdline"]):
                command = " ".join(process.info["cmdline"] or [])
                if "spark_ap_job.py" in command and str(root) in command:
                    process.kill()
                    killed.append(process.pid)
            return
        time.sleep(0.1)


def test_end_to_end_through_a_killed_and_retried_cluster_task(dag, spark, tmp_path, capfd):
    # One DAG run, its cluster task SIGKILLed after a save and retried by Airflow: the retry
    # resumes, and the run ends as an uninterrupted one would, reported and published.
    X, _ = make_blobs(50, centers=3, random_state=3)
    # Params are data: a path that looks like a Jinja template reaches the job as it is.
    (tmp_path / "{{ 7 * 7 }}").mkdir()
    csv = tmp_path / "{{ 7 * 7 }}" / "points.csv"
    pd.DataFrame({"id": np.arange(50), "x": X[:, 0], "y": X[:, 1]}).to_csv(csv, index=False)
    root = tmp_path / "runs"
    # The blocks engine: iterations as slow as Spark makes them, so the kill lands mid-run.
    conf = {"input": str(csv), "output_root": str(root), "damping": 0.7, "checkpoint_interval": 2, "engine": "blocks"}

    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_job_after_save, args=(root, 4, done, killed), daemon=True)
    killer.start()
    capfd.readouterr()
    try:
        run = dag.test(run_conf=conf)
    finally:
        done.set()
        killer.join()
    printed = "".join(capfd.readouterr())
    assert killed, "the job was never killed"
    assert run.state == "success"
    cluster = next(ti for ti in run.get_task_instances() if ti.task_id == "cluster")
    assert cluster.try_number == 2
    # A quiet run: Airflow's lines, spark-ap's and Spark's warnings, not Spark's INFO log.
    lines = printed.splitlines()
    spark_info = [line for line in lines if re.search(r" INFO (Executor|TaskSetManager|DAGScheduler):", line)]
    assert spark_info == [] and len(lines) < 250, f"{len(lines)} lines, e.g. {(spark_info or lines)[:5]}"

    folder = run_folder(str(root), run.run_id)
    features = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    expected = AffinityPropagation(damping=0.7).run(edges_from_features(features))
    assert written_rows(folder) == assignment_rows(expected)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["resumed_from_iteration"] >= 4
    assert summary["iterations"] == expected.numIterations
    assert summary["clusters"] == expected.exemplars.count() > 1
    assert summary["params"]["input"] == str(csv)
    assert png_size(folder / "clusters.png") == (700, 700)
    assert png_size(folder / "convergence.png") == (800, 450)

    # Downstream DAGs find the run through the asset event.
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        event = session.query(AssetEvent).order_by(AssetEvent.id.desc()).first()
        extra = dict(event.extra)
    assert extra["folder"] == str(folder) and extra["clusters"] == summary["clusters"]
    assert extra["iterations"] == summary["iterations"]
    # The fitted model is in the run folder, and output_root/latest points at the run.
    assert extra["model"] == str(folder / "model") and (folder / "model" / "metadata").is_dir()
    assert (root / "latest").resolve() == folder.resolve()

    # A cluster task retried once more finds the finished folder and leaves it as it is.
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    params = {**dag.params.dump(), **conf}
    assert job_main(job_arguments(params, run.run_id)["args"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
