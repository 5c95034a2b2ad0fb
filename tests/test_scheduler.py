"""The DAG under a real Airflow: a schedule, a run triggered through the REST API, a backfill, a retry.

The scheduler, the DAG processor, the API server and the triggerer run as processes of
their own over a PostgreSQL metadata database (tests/airflow_stack.py), the tasks run
through the LocalExecutor and the task execution API, and the spark-ap job runs under
spark-submit on local Spark. The DAG reads its schedule (``@daily``) and its dated
defaults from a settings file given by ``SPARK_AP_CONFIG``, as a user's deployment would.

What happens, all at once as on a busy scheduler: the scheduler makes the run of its
newest ``@daily`` date by itself; a user triggers the run of 2026-11-30 through
``/api/v2`` and its cluster task is SIGKILLed after a save; ``airflow backfill create``
runs 2026-12-01 to 2026-12-03. Then the run of 2026-12-01 is cleared and runs again.
The scheduled and backfill runs publish their results (latest, the asset event); the
triggered one, a manual run without its ``publish`` param, does not.
The tests read the outcome through the REST API and the run folders.

Slow (a few minutes): ``make test-slow`` runs them, CI runs them after ``make test``.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from tests.conftest import kill_job_after_save
from tests.support.airflow_stack import AirflowStack, PostgresServer

pytestmark = pytest.mark.slow

DAG = "spark_ap_pipeline"
TRIGGERED = "2026-11-30"
BACKFILL = ["2026-12-01", "2026-12-02", "2026-12-03"]


def _day(logical_date: str) -> str:
    """The run folder of a midnight logical date as the API gives it ("2026-12-01T00:00:00Z"): its date."""
    when = datetime.fromisoformat(logical_date.replace("Z", "+00:00"))
    assert when.utcoffset() == timedelta(0) and (when.hour, when.minute, when.second) == (0, 0, 0), logical_date
    return logical_date[:10]


def _partitions(data: Path) -> dict[str, pd.DataFrame]:
    """A dated layout data/dt=<date>/points.csv: other points each day, for the dates the runs may read."""
    today = datetime.now(timezone.utc).date()
    dates = [TRIGGERED, *BACKFILL, *(str(today + timedelta(days=d)) for d in (-1, 0, 1))]
    tables = {}
    for k, date in enumerate(dates):
        X, _ = make_blobs(40, centers=3, random_state=k)
        tables[date] = pd.DataFrame({"id": np.arange(40), "x": X[:, 0], "y": X[:, 1]})
        (data / f"dt={date}").mkdir(parents=True, exist_ok=True)
        tables[date].to_csv(data / f"dt={date}" / "points.csv", index=False)
    return tables


def _runs(airflow: AirflowStack) -> list[dict]:
    return airflow.api("GET", f"/dags/{DAG}/dagRuns", limit=100, order_by="logical_date")["dag_runs"]


def _wait_until_finished(airflow: AirflowStack, expected: int, timeout: float = 900) -> list[dict]:
    """The DAG's runs once at least ``expected`` exist and none is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        airflow.check_alive()
        runs = _runs(airflow)
        if len(runs) >= expected and all(run["state"] in ("success", "failed") for run in runs):
            return runs
        time.sleep(2)
    raise TimeoutError(f"runs not finished in {timeout} s: {[(r['dag_run_id'], r['state']) for r in _runs(airflow)]}")


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    """The stack after the scheduled run, the triggered and killed run and a 3-day backfill all finished."""
    tmp = tmp_path_factory.mktemp("scheduler")
    data, runs = tmp / "data", tmp / "runs"
    tables = _partitions(data)
    config = tmp / "spark-ap.yaml"
    config.write_text(
        "spark:\n  spark.sql.shuffle.partitions: '4'\n  spark.ui.enabled: 'false'\n"
        # Five runs at once (the default is one): the runs below race as on a busy scheduler.
        f"airflow:\n  schedule: '@daily'\n  catchup: false\n  kind: features\n  max_active_runs: 5\n"
        f"  input: '{data}/dt={{{{ ds }}}}/points.csv'\n  output_root: '{runs}'\n"
    )
    env = {
        "SPARK_AP_CONFIG": str(config),
        "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
    }
    with PostgresServer() as db, AirflowStack(tmp / "airflow", db.url, env) as airflow:
        airflow.wait_for_dag(DAG)

        # A user triggers 2026-11-30 through the REST API; its cluster task is killed after a save.
        done, killed = threading.Event(), []
        killer = threading.Thread(target=kill_job_after_save, args=(runs, 4, done, killed, TRIGGERED), daemon=True)
        killer.start()
        conf = {"engine": "blocks", "damping": 0.7, "checkpoint_interval": 2}
        triggered = airflow.api(
            "POST", f"/dags/{DAG}/dagRuns", {"logical_date": f"{TRIGGERED}T00:00:00Z", "conf": conf}
        )
        backfill = airflow.cli("backfill", "create", "--dag-id", DAG, "--from-date", BACKFILL[0],
                               "--to-date", BACKFILL[-1])  # fmt: skip
        assert backfill.returncode == 0, backfill.stderr[-3000:]
        try:
            finished = _wait_until_finished(airflow, expected=1 + 1 + len(BACKFILL))
        finally:
            done.set()
            killer.join()
        yield {
            "airflow": airflow,
            "runs": finished,
            "root": runs,
            "points": {day: len(table) for day, table in tables.items()},
            "triggered": triggered,
            "killed": killed,
            "logs": tmp / "airflow" / "logs",
        }


def test_every_run_succeeds_in_the_folder_of_its_logical_date(scheduled):
    runs = scheduled["runs"]
    assert [(run["run_type"], run["state"]) for run in runs if run["state"] != "success"] == []
    kinds = sorted(run["run_type"] for run in runs)
    assert kinds.count("backfill") == 3 and kinds.count("manual") == 1 and kinds.count("scheduled") >= 1
    days = sorted(_day(run["logical_date"]) for run in runs)
    assert sorted(p.name for p in scheduled["root"].iterdir() if not p.name.startswith(".")) == [
        *days,
        "latest",
        "latest.json",
    ]
    for day in days:
        summary = json.loads((scheduled["root"] / day / "summary.json").read_text())
        # Each run read its own partition: the input rendered from the template with its date.
        assert summary["params"]["input"].endswith(f"/dt={day}/points.csv")
        assert summary["points"] == scheduled["points"][day]


def test_the_schedule_made_the_run_of_the_day_that_has_just_ended(scheduled):
    (scheduled_run, *_) = [run for run in scheduled["runs"] if run["run_type"] == "scheduled"]
    # @daily with data intervals (the DAG's default, whatever the site's): the scheduler ran, with nobody
    # asking, the newest whole day, yesterday, and that run read yesterday's partition, now complete.
    yesterday = str(datetime.now(timezone.utc).date() - timedelta(days=1))
    assert _day(scheduled_run["logical_date"]) == _day(scheduled_run["data_interval_start"]) == yesterday
    summary = json.loads((scheduled["root"] / yesterday / "summary.json").read_text())
    assert summary["params"]["input"].endswith(f"/dt={yesterday}/points.csv")


def test_a_backfill_runs_each_date_once_and_latest_stays_on_the_newest_date(scheduled):
    backfilled = sorted(_day(run["logical_date"]) for run in scheduled["runs"] if run["run_type"] == "backfill")
    assert backfilled == BACKFILL
    newest = max(_day(run["logical_date"]) for run in scheduled["runs"])
    assert newest > BACKFILL[-1]  # the scheduled run's date: the backfill must not move latest back to it
    assert (scheduled["root"] / "latest").resolve() == (scheduled["root"] / newest).resolve()


def _events(airflow: AirflowStack) -> list[dict]:
    return airflow.api("GET", "/assets/events", source_dag_id=DAG, limit=100)["asset_events"]


def test_each_asset_event_carries_the_date_of_its_run_and_a_manual_run_sends_none(scheduled):
    events = _events(scheduled["airflow"])
    by_run = {event["source_run_id"]: event["extra"] for event in events}
    published = [run for run in scheduled["runs"] if run["run_type"] != "manual"]
    # The run triggered through the API has no publish param: its results are in its folder, unpublished.
    assert len(events) == len(by_run) == len(published) == len(scheduled["runs"]) - 1
    assert scheduled["triggered"]["dag_run_id"] not in by_run
    for run in published:
        extra = by_run[run["dag_run_id"]]
        assert datetime.fromisoformat(extra["logical_date"]) == datetime.fromisoformat(
            run["logical_date"].replace("Z", "+00:00")
        )
        assert extra["folder"] == str(scheduled["root"] / _day(run["logical_date"]))


def test_a_run_triggered_through_the_api_resumes_after_its_cluster_task_is_killed(scheduled):
    assert scheduled["killed"], "the cluster task's job was never killed"
    run_id = scheduled["triggered"]["dag_run_id"]
    cluster = scheduled["airflow"].api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/cluster")
    assert cluster["state"] == "success" and cluster["try_number"] == 2
    summary = json.loads((scheduled["root"] / TRIGGERED / "summary.json").read_text())
    assert summary["resumed_from_iteration"] >= 4
    assert summary["params"]["damping"] == 0.7  # the run's conf reached the job


def test_a_cleared_date_runs_again_into_the_same_folder(scheduled):
    airflow, root = scheduled["airflow"], scheduled["root"]
    (run,) = [r for r in scheduled["runs"] if r["logical_date"].startswith(BACKFILL[0])]
    before = sorted(p.name for p in root.iterdir())
    finished = {p.name: p.stat().st_mtime_ns for p in (root / BACKFILL[0]).iterdir()}
    events = len(_events(airflow))
    airflow.api("POST", f"/dags/{DAG}/dagRuns/{run['dag_run_id']}/clear", {"dry_run": False})
    deadline = time.monotonic() + 300
    while (state := airflow.api("GET", f"/dags/{DAG}/dagRuns/{run['dag_run_id']}")["state"]) != "success":
        assert state != "failed" and time.monotonic() < deadline, state
        time.sleep(2)
    tries = airflow.api("GET", f"/dags/{DAG}/dagRuns/{run['dag_run_id']}/taskInstances/cluster")["try_number"]
    assert tries == 2  # the cluster task did run again
    # It found its date's finished run and kept it: no second folder, nothing rewritten.
    assert sorted(p.name for p in root.iterdir()) == before
    assert {p.name: p.stat().st_mtime_ns for p in (root / BACKFILL[0]).iterdir()} == finished
    assert len(_events(airflow)) == events  # and, having changed nothing, sent no second event
