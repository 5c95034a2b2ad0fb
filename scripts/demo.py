"""Run the spark-ap Airflow DAG end to end on the bundled example and print where the results are.

    make demo        # sets up .venv and an embedded Airflow (SQLite under .airflow/), then runs this

The DAG checks the input, submits the spark-ap job to Spark through the
``spark_default`` connection (local Spark unless AIRFLOW_CONN_SPARK_DEFAULT says
otherwise) and reports the run folder it wrote.

GraphFrames' JVM package is resolved once, before the DAG runs, quietly: the
DAG's two spark-submits then get its jars (``spark.jars`` in a settings file of
the demo's own, ``.airflow/spark-ap-demo.yaml``) instead of resolving the package
each, which printed Ivy's resolution report twice per run.

The example holds 6 blobs. AP's default preference, the median similarity, makes
many points good enough exemplars and splits them into 13 clusters; the demo runs
with the 10% quantile, a lower preference that makes an exemplar cost more, and
finds the 6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from spark_ap.app.config import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parent.parent
# What a session resolved GraphFrames to: spark.jars after spark_session() (local files in Ivy's cache).
RESOLVE = (
    "from spark_ap import spark_session; print(spark_session('local[1]').sparkContext.getConf().get('spark.jars'))"
)


def demo_settings() -> Path:
    """spark_ap/app/spark-ap.yaml with GraphFrames' jars in its spark section, resolved once here (its output kept
    unless it fails), in a settings file of the demo's own that the DAG then reads."""
    done = subprocess.run([sys.executable, "-c", RESOLVE], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-5000:], file=sys.stderr)
        raise SystemExit("Could not resolve GraphFrames' JVM package (see above, and docs/install.md)")
    jars = done.stdout.strip().splitlines()[-1]
    settings = yaml.safe_load(DEFAULT_CONFIG.read_text())
    settings["spark"]["spark.jars"] = jars
    path = Path(os.environ.get("AIRFLOW_HOME", ROOT / ".airflow")) / "spark-ap-demo.yaml"
    note = f"# {DEFAULT_CONFIG.name} with GraphFrames' jars, written by scripts/demo.py\n"
    path.write_text(note + json.dumps(settings))
    return path


# A lower preference than the median: fewer, larger clusters (see the docstring).
# publish: a manual run moves output/runs/latest only when asked (scheduled runs always do).
CONF = {"preference": "quantile:0.1", "publish": True}


def main() -> int:
    os.environ["SPARK_AP_CONFIG"] = str(demo_settings())
    # Airflow reads its settings when first imported: after the environment is in place.
    from airflow.dag_processing.dagbag import DagBag

    from spark_ap.app.pipeline import run_folder

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        print(bag.import_errors, file=sys.stderr)
        return 1
    dag = bag.get_dag("spark_ap_pipeline")
    print(f"Running the DAG with {CONF}: the median preference splits the example's 6 blobs into 13 clusters.")
    run = dag.test(run_conf=CONF)
    if run.state != "success":
        print(f"The DAG run {run.run_id} ended {run.state}; see the task logs above.", file=sys.stderr)
        return 1
    folder = Path(run_folder(dag.params["output_root"], run.logical_date))
    print(f"\nThe DAG run {run.run_id} succeeded. Its run folder:")
    for path in sorted(folder.iterdir()):
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
