"""spark-ap pipeline: check the input, validate it on Spark, cluster it, report the run.

Validation and clustering are the spark-ap job (the installed package's
``spark_ap/app/entry.py``) submitted through the ``spark_default`` connection: point
that connection at a standalone, YARN or Kubernetes master and the same DAG runs on a
cluster. How it is submitted (connection, deploy mode, memory and cores, executors,
spark-ap's code for executors that lack it, ``--conf``) is the settings file's
``airflow`` and ``spark`` sections, which the job also reads (``--config``).

The schedule is configuration: ``SPARK_AP_SCHEDULE`` (a cron expression, a
preset such as ``@daily``, or ``asset:<name>`` to run when that asset gets an
event), else the ``airflow`` section of the settings file (``SPARK_AP_CONFIG``,
by default the installed package's ``spark_ap/app/spark-ap.yaml``), which also sets ``catchup`` and the default
input. ``input`` and ``output_root`` may hold Airflow's date macros
(``/data/similarities/dt={{ ds }}/``): each run reads its own partition and
writes the folder of its logical date, ``output_root/2026-12-01``, whichever
DAG run computes it (a retry, a cleared task, a backfill). The publish task
points ``output_root/latest.json`` at the newest date that finished and publishes
the results, with their date, as an asset downstream DAGs can schedule on: scheduled,
backfill and asset-triggered runs do; a manual run only with its ``publish`` param on.

Bad data fails the validate task with the job's one-line reason in its log and
nothing written, at once: a refusal is not retried. A task that dies (a lost
machine, a killed process, a dependency not resolved) is retried with a growing
wait, and a cluster task's retry resumes from the state the run saved every
``checkpoint_interval`` iterations in its folder. Owner, retries, timeouts, runs
at once, the pool, the failure e-mail and the deadline alert are the settings
file's ``airflow`` section too (``spark_ap.app.operations``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from spark_ap.app.config import DEFAULT_CONFIG
from spark_ap.app.operations import app_name, dag_arguments, default_args, refusals_fail_at_once
from spark_ap.app.operators import SparkApSubmitOperator
from spark_ap.app.pipeline import (
    asset_extra,
    config_argument,
    dag_settings,
    publish_latest,
    read_summary,
    storage_conf,
    submit_options,
    why_not_publish,
)
from spark_ap.app.pipeline import ingest as pipeline_ingest
from spark_ap.params import INPUT_KINDS, dag_params

# Relative paths in the settings (the bundled example, the output root) are taken under
# SPARK_AP_HOME, by default the checkout above this file. The job's file and the default
# settings are the installed package's.
ROOT = Path(os.environ.get("SPARK_AP_HOME") or Path(__file__).resolve().parent.parent)
CONFIG = Path(os.environ.get("SPARK_AP_CONFIG") or DEFAULT_CONFIG)
SETTINGS = dag_settings(CONFIG, ROOT)
RESULTS = Asset("spark_ap_results")
# The connection, deploy mode, resources, code and --conf of the settings file's airflow and
# spark sections; GraphFrames from --packages (or the spark section's jars).
SPARK_JOB = submit_options(CONFIG, ROOT)
CONFIG_ARGS = config_argument(CONFIG, SPARK_JOB)
# What the report task needs to read a run folder on a cluster's file system (hdfs://, s3a://).
STORAGE = storage_conf(CONFIG)


@dag(
    schedule=SETTINGS["schedule"],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=SETTINGS["catchup"],
    default_args=default_args(CONFIG),
    doc_md=__doc__,
    **dag_arguments(CONFIG),
    params={
        "input": Param(
            SETTINGS["input"],
            type="string",
            minLength=1,
            description="Edge table (src, dst, similarity) or feature table (id and numeric columns), CSV or "
            "Parquet; may hold Airflow's date macros, e.g. /data/similarities/dt={{ ds }}/",
        ),
        "kind": Param(SETTINGS["kind"], enum=list(INPUT_KINDS)),
        "output_root": Param(
            SETTINGS["output_root"],
            type="string",
            minLength=1,
            description="Each run writes output_root/<logical date>; may hold date macros too",
        ),
        "publish": Param(
            False,
            type="boolean",
            description="A manual run moves output_root/latest and sends the results asset's event only when this "
            "is on; scheduled, backfill and asset-triggered runs always do",
        ),
        "recompute": Param(
            False,
            type="boolean",
            description="Run the date again even though its run folder is finished and its input unchanged (or "
            "with other params); the old results are kept in a .replaced-* folder in it",
        ),
        # The estimators' params, with their defaults, bounds and docs (spark_ap.params).
        **{name: Param(**schema) for name, schema in dag_params().items()},
    },
)
def spark_ap_pipeline():
    @task(multiple_outputs=True)
    def ingest(params: dict, **context) -> dict:
        """Render the run's dated paths, check the input, the params and the run folder, and give the job's
        arguments."""
        with refusals_fail_at_once():
            return pipeline_ingest(params, context, CONFIG_ARGS)

    @task
    def report(output: str) -> dict:
        """Read back the run's summary."""
        with refusals_fail_at_once():
            return read_summary(output, STORAGE)

    @task(outlets=[RESULTS])
    def publish(job: dict, summary: dict, *, outlet_events) -> str:
        """Point output_root/latest at the run unless a newer date is there, and tell the asset's consumers which
        date the results are for; skipped for a manual run without its publish param, and for a date found
        finished and unchanged."""
        reason = why_not_publish(job, summary)
        if reason is not None:
            raise AirflowSkipException(reason)
        with refusals_fail_at_once():
            pointer = publish_latest(job["output"], STORAGE)
        outlet_events[RESULTS].extra = asset_extra(summary, job["date"])
        return pointer

    job = ingest()
    validate = SparkApSubmitOperator(
        task_id="validate",
        application_args=job["validate_args"],
        name=app_name("validate"),
        **SPARK_JOB,
    )
    cluster = SparkApSubmitOperator(
        task_id="cluster",
        application_args=job["args"],
        name=app_name("cluster"),
        **SPARK_JOB,
    )
    summary = report(job["output"])
    validate >> cluster >> summary
    publish(job, summary)


pipeline = spark_ap_pipeline()
