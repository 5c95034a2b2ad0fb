"""spark-ap pipeline: check the input, validate it on Spark, cluster it, report the run.

Validation and clustering are the spark-ap job (``scripts/spark_ap_job.py``)
submitted through the ``spark_default`` connection: point that connection at a
standalone, YARN or Kubernetes master and the same DAG runs on a cluster.
Each DAG run writes its own folder, ``output_root/<run id>`` (for a feature
table with the fitted model in ``model/``); the report task points
``output_root/latest`` at it and publishes the results as an asset that
downstream DAGs can schedule on.

Bad data fails the validate task with the job's one-line reason in its log and
nothing written. A cluster task that dies (a lost machine, a killed process) is
retried, and the retry resumes from the state the run saved every
``checkpoint_interval`` iterations in its folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, Param, dag, task

from spark_ap.app.pipeline import (
    asset_extra,
    check_input,
    job_arguments,
    publish_latest,
    read_summary,
    submit_options,
)
from spark_ap.params import dag_params

# The spark-ap checkout or installation that holds the job script, the settings
# file and the bundled example; SPARK_AP_HOME points elsewhere.
ROOT = Path(os.environ.get("SPARK_AP_HOME") or Path(__file__).resolve().parent.parent)
RESULTS = Asset("spark_ap_results")
SPARK_JOB = {
    "conn_id": "spark_default",
    "application": str(ROOT / "scripts" / "spark_ap_job.py"),
    # --packages and --repositories: GraphFrames, from Maven Central or the
    # repositories of conf/spark-ap.yaml and SPARK_AP_REPOSITORIES; --conf: a
    # quiet Spark log.
    **submit_options(ROOT / "conf" / "spark-ap.yaml"),
}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["spark-ap"],
    params={
        "input": Param(
            str(ROOT / "examples" / "blobs_400.csv"),
            type="string",
            minLength=1,
            description="Edge table (src, dst, similarity) or feature table (id and numeric columns), CSV or Parquet",
        ),
        "kind": Param("features", enum=["edges", "features"]),
        "output_root": Param(str(ROOT / "output" / "runs"), type="string", minLength=1),
        # The estimators' params, with their defaults, bounds and docs (spark_ap.params).
        **{name: Param(**schema) for name, schema in dag_params().items()},
    },
)
def spark_ap_pipeline():
    @task(multiple_outputs=True)
    def ingest(params: dict, run_id: str) -> dict:
        """Check that the input is there; decide the run folder and the job's arguments."""
        check_input(params["input"], params["kind"])
        return job_arguments(params, run_id)

    @task(outlets=[RESULTS])
    def report(output: str, *, outlet_events) -> dict:
        """Read back the run's summary, point output_root/latest at it, and tell the asset's consumers."""
        summary = read_summary(output)
        publish_latest(output)
        outlet_events[RESULTS].extra = asset_extra(summary)
        return summary

    job = ingest()
    validate = SparkSubmitOperator(
        task_id="validate",
        application_args=job["validate_args"],
        name="spark-ap-validate",
        **SPARK_JOB,
    )
    cluster = SparkSubmitOperator(
        task_id="cluster",
        application_args=job["args"],
        name="spark-ap",
        retries=2,  # as far apart as Airflow's [core] default_task_retry_delay says
        **SPARK_JOB,
    )
    validate >> cluster >> report(job["output"])


pipeline = spark_ap_pipeline()
