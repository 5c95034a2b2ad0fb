"""The Airflow DAG: it imports, validates its params, and runs end to end on local Spark."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, InvalidInputError, edges_from_features
from spark_ap.job import main as job_main
from spark_ap.pipeline import check_input, job_arguments, run_folder
from tests.conftest import ROOT, assignment_rows, png_size, written_rows


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag("spark_ap_pipeline")


def test_dag_folder_imports_with_the_pipeline(dag):
    assert sorted(t.task_id for t in dag.tasks) == ["cluster", "ingest", "report"]
    assert [a.name for a in dag.get_task("report").outlets] == ["spark_ap_results"]
    assert dag.get_task("cluster")._conn_id == "spark_default"


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


def test_end_to_end_on_local_spark(dag, spark, tmp_path):
    X, _ = make_blobs(60, centers=3, random_state=12)
    csv = tmp_path / "points.csv"
    pd.DataFrame({"id": np.arange(60), "x": X[:, 0], "y": X[:, 1]}).to_csv(csv, index=False)
    conf = {"input": str(csv), "output_root": str(tmp_path / "runs"), "damping": 0.6, "preference": "median"}
    run = dag.test(run_conf=conf)
    assert run.state == "success"
    folder = run_folder(conf["output_root"], run.run_id)

    features = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    expected = AffinityPropagation(damping=0.6, preference="median").run(edges_from_features(features))
    assert written_rows(folder) == assignment_rows(expected)

    summary = json.loads((folder / "summary.json").read_text())
    assert summary["clusters"] == expected.exemplars.count() > 1
    assert summary["iterations"] == expected.numIterations
    assert png_size(folder / "clusters.png") == (700, 700)
    assert png_size(folder / "convergence.png") == (800, 450)

    # A retried cluster task finds the finished folder and leaves it as it is.
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    params = {**dag.params.dump(), **conf}
    assert job_main(job_arguments(params, run.run_id)["args"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
