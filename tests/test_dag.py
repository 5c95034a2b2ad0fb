"""The Airflow DAG: it imports, validates its params, and runs end to end on local Spark."""

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, InvalidInputError, InvalidParamError, __version__, edges_from_features
from spark_ap.app.config import DEFAULT_CONFIG
from spark_ap.app.job import main as job_main
from spark_ap.app.pipeline import config_argument, job_arguments, run_folder, submit_options
from spark_ap.app.preflight import check_input
from spark_ap.params import dag_params
from spark_ap.session import job_script, logging_conf
from tests.conftest import BIN, ROOT, assignment_rows, png_size, written_rows


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
    assert sorted(t.task_id for t in dag.tasks) == ["cluster", "ingest", "publish", "report", "validate"]
    assert dag.get_task("cluster").upstream_task_ids == {"validate", "ingest"}
    assert dag.get_task("publish").upstream_task_ids == {"ingest", "report"}
    assert [a.name for a in dag.get_task("publish").outlets] == ["spark_ap_results"]
    assert dag.get_task("cluster")._conn_id == dag.get_task("validate")._conn_id == "spark_default"
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


PARSE = """
import json, os, runpy, sys
for env in json.loads(sys.argv[2]):
    for key in ("SPARK_AP_SCHEDULE", "SPARK_AP_CONFIG"):
        os.environ.pop(key, None)
    os.environ.update(env)
    try:
        d = runpy.run_path(sys.argv[1])["pipeline"]
    except Exception as error:
        print(json.dumps(str(error)))
        continue
    t, a = d.timetable, getattr(d.timetable, "asset_condition", None)
    schedule = getattr(t, "expression", None) or (a and a.name)
    print(json.dumps([schedule, d.catchup, d.params["input"], d.params["output_root"], type(t).__name__]))
"""


def _parsed(*envs: dict) -> list:
    """The DAG file parsed under each of ``envs`` as Airflow's DAG processor would (one new Python for all): its
    schedule (a cron expression, an asset's name or None), catchup and the defaults of input and output_root, or
    the error that failed the file."""
    dag_file = str(ROOT / "dags" / "spark_ap_pipeline.py")
    done = subprocess.run([sys.executable, "-c", PARSE, dag_file, json.dumps(envs)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(envs) :]]


def test_the_schedule_comes_from_the_environment(airflow_db):
    schedules = ["@daily", "30 6 * * 1-5", "asset:similarities", ""]
    parsed = _parsed(*({"SPARK_AP_SCHEDULE": schedule} for schedule in schedules))
    assert [p[:2] for p in parsed] == [["0 0 * * *", False], ["30 6 * * 1-5", False], ["similarities", False],
                                      [None, False]]  # fmt: skip


def test_the_settings_file_sets_schedule_catchup_and_dated_defaults(airflow_db, tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text(
        "airflow:\n  schedule: '@hourly'\n  catchup: true\n"
        "  input: /data/similarities/dt={{ ds }}/\n  output_root: runs\n"
    )
    from_file, env_wins = _parsed({"SPARK_AP_CONFIG": str(config)},
                                  {"SPARK_AP_CONFIG": str(config), "SPARK_AP_SCHEDULE": "@daily"})  # fmt: skip
    assert from_file[:4] == ["0 * * * *", True, "/data/similarities/dt={{ ds }}/", str(ROOT / "runs")]
    assert env_wins[0] == "0 0 * * *"


def test_the_dag_builds_its_timetable_whatever_the_sites_default(airflow_db, tmp_path):
    # Airflow 3's default ([scheduler] create_cron_data_intervals = False) would make a bare cron string a
    # CronTriggerTimetable, whose midnight run of a day is dated that day: the DAG chooses, by its setting.
    trigger = tmp_path / "trigger.yaml"
    trigger.write_text("airflow:\n  schedule: '@daily'\n  intervals: trigger\n")
    site = {"AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS": "False", "SPARK_AP_SCHEDULE": "@daily"}
    default, chosen = _parsed(site, {**site, "SPARK_AP_CONFIG": str(trigger)})
    assert default[0] == chosen[0] == "0 0 * * *"
    assert default[4] == "CronDataIntervalTimetable" and chosen[4] == "CronTriggerTimetable"


def test_an_asset_triggered_run_reads_what_its_event_names(dag):
    from types import SimpleNamespace

    from spark_ap.app.pipeline import render_dates, run_date

    params = {"input": "/data/dt={{ ds }}/", "output_root": "/runs", "preference": "min"}
    run = SimpleNamespace(run_after=datetime(2026, 12, 5, 7, 30, tzinfo=timezone.utc))

    def triggered(*extras):
        events = [SimpleNamespace(extra=extra) for extra in extras]
        return {"dag": dag, "logical_date": None, "dag_run": run, "triggering_asset_events": {"upstream": events}}

    # The upstream's date: the partition of that date, and the run folder of that date.
    dated = triggered({"logical_date": "2026-12-01T00:00:00+00:00"}, {"logical_date": "2026-12-03T00:00:00Z"})
    assert render_dates(params, dated)["input"] == "/data/dt=2026-12-03/"
    assert run_date(dated) == datetime(2026, 12, 3, tzinfo=timezone.utc)
    # A URI in the event: that is the input, whatever the template says.
    named = triggered({"uri": "hdfs://nn:8020/similarities/batch-42/", "date": "2026-12-04"})
    assert render_dates(params, named)["input"] == "hdfs://nn:8020/similarities/batch-42/"
    assert run_date(named) == datetime(2026, 12, 4, tzinfo=timezone.utc)
    # An event without either: the run's own run_after, as for a manual run.
    assert render_dates(params, triggered({}))["input"] == "/data/dt=2026-12-05/"
    with pytest.raises(InvalidInputError, match="'yesterday' is not an ISO date"):
        render_dates(params, triggered({"date": "yesterday"}))


def test_a_schedule_airflow_cannot_read_fails_the_dag_file_naming_the_setting(airflow_db):
    schedules = ["every day", "@daly", "* * *"]
    for schedule, error in zip(schedules, _parsed(*({"SPARK_AP_SCHEDULE": s} for s in schedules)), strict=True):
        assert f"SPARK_AP_SCHEDULE / airflow.schedule: {schedule!r} is not a cron expression" in error


def test_input_and_output_root_render_airflow_date_macros_and_nothing_else(dag):
    from types import SimpleNamespace

    from spark_ap.app.pipeline import render_dates

    params = {"input": "/data/dt={{ ds }}/", "output_root": "/runs/{{ ds_nodash }}", "preference": "{{ 7 * 7 }}"}
    day = datetime(2026, 12, 1, tzinfo=timezone.utc)
    run = SimpleNamespace(run_after=datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc))
    rendered = render_dates(params, {"dag": dag, "logical_date": day, "ds": "2026-12-01", "dag_run": run})
    assert rendered == {"input": "/data/dt=2026-12-01/", "output_root": "/runs/20261201", "preference": "{{ 7 * 7 }}"}
    # A run without a logical date (a manual or asset-triggered run) is dated by its run_after.
    assert render_dates(params, {"dag": dag, "logical_date": None, "dag_run": run})["input"] == "/data/dt=2026-12-02/"
    with pytest.raises(InvalidInputError, match=r"input: the template '/data/\{\{ dss \}\}' does not render.*dss"):
        render_dates({**params, "input": "/data/{{ dss }}"}, {"dag": dag, "logical_date": day, "dag_run": run})
    # Connections and variables are in a task's context, but not in what the paths render with.
    secrets = {"conn": SimpleNamespace(db=SimpleNamespace(password="hunter2")), "var": {"value": {"key": "s3cr3t"}}}
    context = {"dag": dag, "logical_date": day, "dag_run": run, **secrets}
    for leak in ("{{ conn.db.password }}", "{{ var.value.key }}"):
        with pytest.raises(InvalidInputError, match=r"output_root: the template .* not render.*undefined") as error:
            render_dates({**params, "output_root": f"/runs/{leak}"}, context)
        assert "hunter2" not in str(error.value) and "s3cr3t" not in str(error.value)


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"damping": 1.5}, "damping"),
        ({"max_iter": 0}, "max_iter"),
        ({"kind": "graph"}, "kind"),
        # Wrong types, blanks, fractions: the Params' JSON schema refuses them, naming the param.
        ({"damping": "0.7"}, "'0.7' is not of type 'number'"),
        ({"max_iter": 2.5}, "2.5 is not of type 'integer'"),
        ({"seed": True}, "True is not of type 'integer'"),
        ({"max_iter": float("inf")}, "inf is not of type 'integer'"),
        ({"input": ""}, "'' should be non-empty"),
        ({"preference": ""}, "'' does not match"),
        ({"engine": ""}, "'' is not one of"),
    ],
)
def test_bad_params_are_refused_before_any_task_runs(dag, conf, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=message):
        dag.test(run_conf=conf)


@pytest.mark.parametrize(
    "conf, files, links, error, message",
    [
        # NaN and infinities pass the JSON schema's bounds (every comparison with NaN is false): the params'
        # own checks refuse them at ingest, before the job is submitted.
        (
            {"damping": float("nan")},
            {},
            {},
            InvalidParamError,
            "DAG param damping: damping must be in [0.5, 1); got nan",
        ),
        ({"preference": float("nan")}, {}, {}, InvalidParamError, "DAG param preference: preference must be finite"),
        ({"preference": float("-inf")}, {}, {}, InvalidParamError, "preference must be finite; got -inf"),
        ({"input": "  "}, {}, {}, InvalidInputError, "input: the template '  ' renders to an empty path"),
        ({"input": "{root}/gone.csv"}, {}, {"gone.csv": "nowhere.csv"}, InvalidInputError, "gone.csv is a link to"),
        (
            {"input": "{root}/in"},
            {"in/a.parquet": "", "in/b.csv": "id,x\n", "in/README.txt": "about"},
            {},
            InvalidInputError,
            "The input folder {root}/in holds 2 file(s) that are not .parquet, for example 'README.txt'",
        ),
        ({"input": "{root}"}, {}, {}, InvalidInputError, "for example 'points.csv'"),
        (
            {"output_root": "{root}/runs"},
            {"runs": "a file"},
            {},
            InvalidInputError,
            "{root}/runs (in {root}/runs/2026-12-01) is a file",
        ),
        ({"output_root": "{root}/points.csv/runs"}, {}, {}, InvalidInputError, "points.csv (in {root}/points.csv/runs"),
    ],
)
def test_bad_params_and_paths_fail_at_ingest_and_write_nothing(dag, tmp_path, conf, files, links, error, message):
    from types import SimpleNamespace

    from spark_ap.app.pipeline import ingest

    for name, text in {"points.csv": "id,x,y\n0,1.0,2.0\n1,2.0,1.0\n", **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for name, target in links.items():
        (tmp_path / name).symlink_to(target)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    values = {"input": str(tmp_path / "points.csv"), "output_root": str(tmp_path / "out"), **conf}
    params = {
        **dag.params.dump(),
        **{k: v.format(root=tmp_path) if isinstance(v, str) else v for k, v in values.items()},
    }
    day = datetime(2026, 12, 1, tzinfo=timezone.utc)
    with pytest.raises(error) as refused:
        ingest(params, {"dag": dag, "logical_date": day, "dag_run": SimpleNamespace(run_after=day)})
    assert message.format(root=tmp_path) in str(refused.value)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_whole_numbers_from_json_reach_the_job_as_integers(tmp_path):
    # The schema takes 50.0 as the integer 50 (JSON has one number type); the job's --max-iter takes "50".
    from spark_ap.app.job import parser, settings

    values = {**{name: schema["default"] for name, schema in dag_params().items()}, "max_iter": 50.0, "seed": 3.0}
    values.update({"input": "in.csv", "output_root": str(tmp_path), "kind": "edges"})
    args = job_arguments(values, datetime(2026, 12, 1, tzinfo=timezone.utc))["args"]
    assert args[args.index("--max-iter") + 1] == "50"
    assert settings(parser().parse_args(args))["ap"]["maxIter"] == 50


def test_missing_input_fails_at_ingest(dag, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        check_input(str(tmp_path / "nope.csv"), "features")
    run = dag.test(run_conf={"input": str(tmp_path / "nope.csv"), "output_root": str(tmp_path / "runs")})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states["ingest"] == "failed" and states["cluster"] == "upstream_failed"
    assert _tries(run)["ingest"] == 1  # a refusal: not retried, though the task may retry
    assert not (tmp_path / "runs").exists()


def _tries(run) -> dict[str, int]:
    """How many times each task of ``run`` ran."""
    return {ti.task_id: ti.try_number for ti in run.get_task_instances() if ti.try_number}


def test_bad_data_fails_at_validation_and_writes_nothing(dag, tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("id,x,y\n0,1.0,2.0\n1,1.5,\n2,3.0,1.0\n")  # point 1 has no y
    run = dag.test(run_conf={"input": str(csv), "output_root": str(tmp_path / "runs")})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert states["ingest"] == "success" and states["validate"] == "failed"
    assert states["cluster"] == "upstream_failed"
    assert dag.get_task("validate").retries == 3 and _tries(run)["validate"] == 1  # the job's refusal: exit code 2
    assert not (tmp_path / "runs").exists()


def test_every_task_has_an_owner_retries_with_backoff_and_a_timeout(dag):
    for task in dag.tasks:
        assert task.owner == "spark-ap"
        assert task.retries == 3 and task.retry_exponential_backoff
        assert task.max_retry_delay == timedelta(hours=1)
        assert task.execution_timeout == timedelta(hours=6)
    assert dag.dagrun_timeout == timedelta(hours=12) and dag.max_active_runs == 1
    assert {"spark-ap", "clustering"} <= set(dag.tags)
    assert dag.doc_md.startswith("spark-ap pipeline:")  # the module's docs, shown in the UI
    for task_id in ("validate", "cluster"):  # the Spark application of each run, date and try
        name = dag.get_task(task_id).name
        assert "{{ ds }}" in name and "{{ ti.try_number }}" in name and task_id in name


def test_the_settings_file_sets_the_guards_pool_notifier_and_deadline(airflow_db, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    config = tmp_path / "settings.yaml"
    config.write_text(
        "airflow:\n  owner: data-eng\n  retries: 5\n  retry_delay_seconds: 30\n  max_retry_delay_seconds: 600\n"
        "  task_timeout_minutes: 90\n  run_timeout_minutes: 240\n  max_active_runs: 3\n  pool: spark\n"
        "  notify_email: oncall@example.com, data@example.com\n  deadline_minutes: 120\n"
    )
    monkeypatch.setenv("SPARK_AP_CONFIG", str(config))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("spark_ap_pipeline")
    for task in dag.tasks:
        assert (task.owner, task.retries, task.pool) == ("data-eng", 5, "spark")
        assert task.retry_delay == timedelta(seconds=30) and task.max_retry_delay == timedelta(minutes=10)
        assert task.execution_timeout == timedelta(minutes=90)
        (notifier,) = task.on_failure_callback
        assert isinstance(notifier, SmtpNotifier) and notifier.to == ["oncall@example.com", "data@example.com"]
    assert dag.dagrun_timeout == timedelta(hours=4) and dag.max_active_runs == 3
    (alert,) = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert alert.interval == timedelta(hours=2)
    assert alert.callback.kwargs["to"] == ["oncall@example.com", "data@example.com"]


@pytest.mark.slow  # an SMTP server and a DAG run: make test-slow
def test_a_failed_task_is_e_mailed_to_the_settings_addresses(airflow_db, tmp_path, monkeypatch):
    import asyncio

    from aiosmtpd.controller import Controller
    from airflow.dag_processing.dagbag import DagBag

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    import socket

    with socket.socket() as probe:  # a free port (aiosmtpd's controller checks its own by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMTP_DEFAULT",
            json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port,
                        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com"}}),
        )  # fmt: skip
        config = tmp_path / "settings.yaml"
        config.write_text("airflow:\n  notify_email: oncall@example.com\n")
        monkeypatch.setenv("SPARK_AP_CONFIG", str(config))
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        dag = bag.get_dag("spark_ap_pipeline")
        run = dag.test(run_conf={"input": str(tmp_path / "nope.csv"), "output_root": str(tmp_path / "runs")})
        assert run.state == "failed"
        asyncio.run(asyncio.sleep(0.5))  # the last message's delivery
    finally:
        smtp.stop()
    (to, content), *_ = inbox.messages
    assert to == ["oncall@example.com"]
    assert "spark_ap_pipeline.ingest failed for" in content and "try 1" in content


def test_end_to_end_on_a_dated_partition(dag, spark, tmp_path, capfd):
    # One DAG run of a date reads that date's partition, and ends reported and published. (A cluster
    # task killed and retried is tests/test_scheduler.py's, under a real scheduler.)
    X, _ = make_blobs(50, centers=3, random_state=3)
    day = datetime(2026, 11, 30, tzinfo=timezone.utc)
    (tmp_path / "dt=2026-11-30").mkdir()
    csv = tmp_path / "dt=2026-11-30" / "points.csv"
    pd.DataFrame({"id": np.arange(50), "x": X[:, 0], "y": X[:, 1]}).to_csv(csv, index=False)
    root = tmp_path / "runs"
    conf = {"input": f"{tmp_path}/dt={{{{ ds }}}}/points.csv", "output_root": str(root), "damping": 0.7}
    conf["publish"] = True  # dag.test's run is a manual one

    capfd.readouterr()
    run = dag.test(logical_date=day, run_conf=conf)
    printed = "".join(capfd.readouterr())
    assert run.state == "success"
    # A quiet run: Airflow's lines, spark-ap's and Spark's warnings, not Spark's INFO log.
    lines = printed.splitlines()
    spark_info = [line for line in lines if re.search(r" INFO (Executor|TaskSetManager|DAGScheduler):", line)]
    assert spark_info == [] and len(lines) < 250, f"{len(lines)} lines, e.g. {(spark_info or lines)[:5]}"

    folder = Path(run_folder(str(root), day))
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "2026-11-30",
        "latest",
        "latest.json",
    ]
    features = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    expected = AffinityPropagation(damping=0.7).run(edges_from_features(features))
    assert written_rows(folder) == assignment_rows(expected)
    summary = json.loads((folder / "summary.json").read_text())
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
    assert extra["logical_date"] == "2026-11-30T00:00:00+00:00"
    assert extra["iterations"] == summary["iterations"]
    # The fitted model is in the run folder, and output_root/latest points at the run.
    assert extra["model"] == str(folder / "model") and (folder / "model" / "metadata").is_dir()
    assert (root / "latest").resolve() == folder.resolve()

    # A cluster task retried once more finds the finished folder and leaves it as it is.
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    params = {**dag.params.dump(), **conf, "input": str(csv)}
    assert job_main(job_arguments(params, day)["args"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.mark.slow  # a whole DAG run; tests/test_scheduler.py shows it under a real scheduler too
def test_a_manual_run_without_publish_moves_neither_latest_nor_the_asset(dag, tmp_path):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    X, _ = make_blobs(30, centers=3, random_state=4)
    csv = tmp_path / "points.csv"
    pd.DataFrame({"id": np.arange(30), "x": X[:, 0], "y": X[:, 1]}).to_csv(csv, index=False)
    root = tmp_path / "runs"
    with create_session() as session:
        events = session.query(AssetEvent).count()
    run = dag.test(run_conf={"input": str(csv), "output_root": str(root), "damping": 0.6})
    assert run.run_type == "manual" and run.state == "success"
    assert _states(run)["publish"] == "skipped"
    (folder,) = [p for p in root.iterdir() if not p.name.startswith(".")]  # the experiment's results are there
    assert (folder / "summary.json").is_file()
    assert not (root / "latest").exists() and not (root / "latest.json").exists()
    with create_session() as session:
        assert session.query(AssetEvent).count() == events


JARS = "/opt/jars/graphframes-spark4_2.13-0.11.0.jar,/opt/jars/graphframes-graphx-spark4_2.13-0.11.0.jar"


def test_the_settings_file_says_how_the_job_is_submitted(tmp_path):
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "ap:\n  damping: 0.8\n"
        "spark:\n  spark.sql.shuffle.partitions: 64\n"
        f"  spark.jars: {JARS}\n"
        "airflow:\n  conn_id: spark_yarn\n  deploy_mode: cluster\n  driver_memory: 4g\n  executor_memory: 8g\n"
        "  executor_cores: 4\n  num_executors: 10\n  ship_code: dist\n  py_files: hdfs:///libs/extra.zip\n"
        "  env_vars: {PYSPARK_PYTHON: ./env/bin/python}\n  archives: hdfs:///envs/env.tar.gz#env\n"
    )
    options = submit_options(config, root=tmp_path)
    shipped = tmp_path / "dist" / f"spark_ap-{__version__}.zip"
    assert shipped.is_file()
    assert options == {
        "conn_id": "spark_yarn",
        "deploy_mode": "cluster",
        "driver_memory": "4g",
        "executor_memory": "8g",
        "executor_cores": 4,
        "num_executors": 10,
        "archives": "hdfs:///envs/env.tar.gz#env",
        "env_vars": {"PYSPARK_PYTHON": "./env/bin/python"},
        "application": job_script(),
        # The spark section's GraphFrames jars: nothing to resolve from Maven.
        "jars": JARS,
        "py_files": f"{shipped},hdfs:///libs/extra.zip",
        "files": str(config),  # the driver runs on the cluster: the settings go with it
        # No logging file: its path is on Airflow's machine, not on the driver's.
        "conf": {"spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "64"},
    }
    # The job reads the settings file it was sent with; the DAG's params, given after it, win.
    config_args = config_argument(config, options)
    assert config_args == ["--config", "cluster.yaml"]
    params = {**{name: schema["default"] for name, schema in dag_params().items()}, "input": "x.csv", "kind": "edges"}
    args = job_arguments({**params, "output_root": "runs"}, datetime(2026, 11, 3), config_args)["args"]
    assert args[:2] == ["--config", "cluster.yaml"] and "--damping" in args


def test_the_dag_submits_the_installed_job_with_its_settings_file(dag):
    import runpy

    module = runpy.run_path(str(ROOT / "dags" / "spark_ap_pipeline.py"))
    assert module["CONFIG_ARGS"] == ["--config", str(DEFAULT_CONFIG)]
    cluster = dag.get_task("cluster")
    assert cluster.application == job_script() and Path(job_script()).is_file()
    # In client mode the driver is on this machine: it logs through spark-ap's logging file.
    assert cluster.conf.items() >= logging_conf().items()
