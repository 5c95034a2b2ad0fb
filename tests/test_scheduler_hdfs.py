"""The DAG under a real Airflow, submitting to a standalone Spark cluster, with its data and runs on HDFS.

The stack of tests/test_scheduler.py (PostgreSQL, scheduler, DAG processor, API server, triggerer,
LocalExecutor), a Spark connection to a standalone master (tests/support/standalone.py) and an HDFS
(tests/support/hdfs.py) that holds the dated partitions, the run folders and ``latest.json``: the
scheduler's own run and a 2-day backfill each write the folder of their date on HDFS, and the report
task reads each summary there.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from tests.conftest import CHILD_JVM_OPTIONS
from tests.support.airflow_stack import AirflowStack, PostgresServer
from tests.support.hdfs import HdfsCluster
from tests.support.standalone import StandaloneCluster
from tests.test_scheduler import DAG, _day, _wait_until_finished

pytestmark = pytest.mark.slow

BACKFILL = ["2026-12-01", "2026-12-02"]


@pytest.fixture(scope="module")
def on_hdfs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scheduler-hdfs")
    today = datetime.now(timezone.utc).date()
    dates = [*BACKFILL, *(str(today + timedelta(days=d)) for d in (-1, 0, 1))]
    daemons = {"SPARK_DAEMON_JAVA_OPTS": CHILD_JVM_OPTIONS}
    with (
        HdfsCluster(tmp / "hdfs") as hdfs,
        StandaloneCluster(workers=2, cores=1, tmp=tmp / "cluster", env=daemons) as spark_cluster,
    ):
        points = {}
        for k, date in enumerate(dates):
            X, _ = make_blobs(40, centers=3, random_state=k)
            table = pd.DataFrame({"id": np.arange(40), "x": X[:, 0], "y": X[:, 1]})
            hdfs.write(f"/data/dt={date}/points.csv", table.to_csv(index=False).encode())
            points[date] = len(table)
        config = tmp / "spark-ap.yaml"
        config.write_text(
            "spark:\n  spark.sql.shuffle.partitions: '4'\n  spark.ui.enabled: 'false'\n"
            "  spark.driver.host: 127.0.0.1\n  spark.driver.bindAddress: 127.0.0.1\n"
            f"  spark.executor.extraJavaOptions: '{CHILD_JVM_OPTIONS}'\n"
            "airflow:\n  schedule: '@daily'\n  catchup: false\n  kind: features\n"
            f"  input: '{hdfs.uri}/data/dt={{{{ ds }}}}/points.csv'\n  output_root: '{hdfs.uri}/runs'\n"
        )
        connection = {"conn_type": "spark", "host": spark_cluster.master_url}
        env = {
            "SPARK_AP_CONFIG": str(config),
            "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(connection),
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
            # The report task's own JVM reads HDFS, whose DataNode is on 127.0.0.1.
            "SPARK_LOCAL_HOSTNAME": "127.0.0.1",
        }
        with PostgresServer() as db, AirflowStack(tmp / "airflow", db.url, env) as airflow:
            airflow.wait_for_dag(DAG)
            backfill = airflow.cli("backfill", "create", "--dag-id", DAG, "--from-date", BACKFILL[0],
                                   "--to-date", BACKFILL[-1])  # fmt: skip
            assert backfill.returncode == 0, backfill.stderr[-3000:]
            runs = _wait_until_finished(airflow, expected=1 + len(BACKFILL))
            yield {"airflow": airflow, "runs": runs, "hdfs": hdfs, "points": points, "tmp": tmp}


def test_a_scheduled_run_and_a_backfill_write_their_dates_on_hdfs_and_latest_names_the_newest(on_hdfs):
    runs, hdfs = on_hdfs["runs"], on_hdfs["hdfs"]
    assert [(run["run_type"], run["state"]) for run in runs if run["state"] != "success"] == []
    assert sorted(run["run_type"] for run in runs).count("backfill") == len(BACKFILL)
    days = sorted(_day(run["logical_date"]) for run in runs)
    assert hdfs.ls("/runs") == [*days, "latest.json"]  # no lock, staging or pointer left behind
    for day in days:
        summary = json.loads(hdfs.read(f"/runs/{day}/summary.json"))
        assert summary["params"]["input"] == f"{hdfs.uri}/data/dt={day}/points.csv"
        assert summary["points"] == on_hdfs["points"][day]
    latest = json.loads(hdfs.read("/runs/latest.json"))
    assert latest["folder"] == max(days) > BACKFILL[-1] and latest["uri"] == f"{hdfs.uri}/runs/{max(days)}"
    # Nothing of the runs on the local disk: no folder named after the URI, where the tasks ran.
    # (The names a local path made of the URI would take: "hdfs:" kept, or quoted as "hdfs%3A".)
    assert not [p for p in on_hdfs["tmp"].rglob("*") if p.name.startswith(("hdfs:", "hdfs%3A"))]


def test_the_report_reads_each_summary_from_hdfs(on_hdfs):
    airflow, hdfs = on_hdfs["airflow"], on_hdfs["hdfs"]
    events = airflow.api("GET", "/assets/events", source_dag_id=DAG, limit=100)["asset_events"]
    by_run = {event["source_run_id"]: event["extra"] for event in events}
    for run in on_hdfs["runs"]:
        extra, day = by_run[run["dag_run_id"]], _day(run["logical_date"])
        assert extra["folder"] == f"{hdfs.uri}/runs/{day}"
        summary = json.loads(hdfs.read(f"/runs/{day}/summary.json"))
        assert extra["clusters"] == summary["clusters"] and extra["iterations"] == summary["iterations"]
        assert extra["model"] == f"{hdfs.uri}/runs/{day}/model"
