"""spark-ap pipeline: check the input, validate it on Spark, cluster it, report the run.

Validation and clustering are the spark-ap job (``scripts/spark_ap_job.py``)
submitted through the ``spark_default`` connection: point that connection at a
standalone, YARN or Kubernetes master and the same DAG runs on a cluster.
Each DAG run writes its own folder, ``output_root/<run id>``, and the report
task publishes the results as an asset that downstream DAGs can schedule on.

Bad data fails the validate task with the job's one-line reason in its log and
nothing written. A cluster task that dies (a lost machine, a killed process) is
retried, and the retry resumes from the state the run saved every
``checkpoint_interval`` iterations in its folder.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, Param, dag, task

from spark_ap.pipeline import check_input, job_arguments, read_summary, submit_options

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Asset("spark_ap_results")
SPARK_JOB = {
    "conn_id": "spark_default",
    "application": str(ROOT / "scripts" / "spark_ap_job.py"),
    "conf": {"spark.ui.showConsoleProgress": "false"},
    # --packages and --repositories: GraphFrames, from Maven Central or the
    # repositories of conf/spark-ap.yaml and SPARK_AP_REPOSITORIES.
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
        "metric": Param("sqeuclidean", enum=["sqeuclidean", "cosine"], description="Similarity of feature vectors"),
        "output_root": Param(str(ROOT / "output" / "runs"), type="string", minLength=1),
        "damping": Param(0.7, type="number", minimum=0.5, exclusiveMaximum=1),
        "max_iter": Param(200, type="integer", minimum=1),
        "convergence_iter": Param(15, type="integer", minimum=1),
        "preference": Param("0.1", type="string", minLength=1, description="A number, median, min, or a quantile"),
        "seed": Param(0, type="integer", minimum=0, description="Seed of the degeneracy noise"),
        "duplicates": Param(
            "error", enum=["error", "max", "mean"], description="Repeated (src, dst) pairs: refuse, or combine"
        ),
        "engine": Param(
            "auto",
            enum=["auto", "local", "blocks", "graphframes"],
            description="How iterations run (same results): numpy on the driver (local) or on chunks of edges "
            "(blocks), or GraphFrames aggregateMessages; auto: local up to 5 million edges, else blocks",
        ),
        "checkpoint_interval": Param(
            10, type="integer", minimum=1, description="Save the run's state every this many iterations"
        ),
        # Feature tables only: how they become a graph, and the levels past a neighbourhood.
        "num_neighbors": Param(10, type="integer", minimum=1, description="Neighbours per point of a k-NN graph"),
        "exact_below": Param(
            2000, type="integer", minimum=0, description="Up to this many points: the complete graph, exact AP"
        ),
        "resolution": Param(
            10000, type="integer", minimum=0, description="Levels weigh clusters as if the data had this many points"
        ),
        "num_clusters": Param(
            0, type="integer", minimum=0, description="Search the preference for about this many clusters (0: off)"
        ),
        "cluster_tolerance": Param(0, type="integer", minimum=0, description="How far from num_clusters will do"),
    },
)
def spark_ap_pipeline():
    @task(multiple_outputs=True)
    def ingest(params: dict, run_id: str) -> dict:
        """Check that the input is there; decide the run folder and the job's arguments."""
        check_input(params["input"], params["kind"])
        return job_arguments(params, run_id)

    @task(outlets=[RESULTS])
    def report(output: str) -> dict:
        """Read back the run's summary and list its files."""
        return read_summary(output)

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
        retries=2,
        retry_delay=timedelta(seconds=15),
        **SPARK_JOB,
    )
    validate >> cluster >> report(job["output"])


pipeline = spark_ap_pipeline()
