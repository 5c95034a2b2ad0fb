"""Run the spark-ap Airflow DAG end to end on the bundled example and print where the results are.

    make demo        # sets up .venv and an embedded Airflow (SQLite under .airflow/), then runs this

The DAG checks the input, submits the spark-ap job to Spark through the
``spark_default`` connection (local Spark unless AIRFLOW_CONN_SPARK_DEFAULT says
otherwise) and reports the run folder it wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

from spark_ap.app.pipeline import run_folder

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        print(bag.import_errors, file=sys.stderr)
        return 1
    dag = bag.get_dag("spark_ap_pipeline")
    run = dag.test()
    if run.state != "success":
        print(f"The DAG run {run.run_id} ended {run.state}; see the task logs above.", file=sys.stderr)
        return 1
    folder = run_folder(dag.params["output_root"], run.run_id)
    print(f"\nThe DAG run {run.run_id} succeeded. Its run folder:")
    for path in sorted(folder.iterdir()):
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
