"""A picture of the DAG's grid after a backfill, for docs/airflow.md: docs/images/airflow-grid.png.

    .venv/bin/python scripts/screenshot_grid.py     # needs Chromium (Debian: apt-get install chromium)

Starts the Airflow of the scheduler tests (tests/airflow_stack.py: PostgreSQL
metadata, scheduler, DAG processor, API server, triggerer; the UI open to all as
admin, so the headless browser needs no login), schedules the DAG ``@daily`` on
the bundled example, backfills three days, waits for the runs, and has headless
Chromium render the DAG's page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.airflow_stack import AirflowStack, PostgresServer  # noqa: E402

OUT = ROOT / "docs" / "images" / "airflow-grid.png"
DAYS = ("2026-12-01", "2026-12-03")


def states(db: PostgresServer) -> list[str]:
    with psycopg2.connect(host="127.0.0.1", port=db.port, user="postgres", dbname="airflow") as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT state FROM dag_run")
            return [state for (state,) in cursor.fetchall()]


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("Chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="spark-ap-grid-"))
    config = tmp / "spark-ap.yaml"
    config.write_text(
        "spark:\n  spark.sql.shuffle.partitions: '4'\n"
        f"airflow:\n  schedule: '@daily'\n  input: {ROOT / 'examples' / 'blobs_400.csv'}\n"
        f"  kind: features\n  output_root: {tmp / 'runs'}\n"
    )
    env = {
        "SPARK_AP_CONFIG": str(config),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
    }
    runs: list[str] = []
    with PostgresServer() as db, AirflowStack(tmp / "airflow", db.url, env) as airflow:
        time.sleep(15)  # the DAG processor's first pass
        conf = json.dumps({"preference": "quantile:0.1"})
        backfill = airflow.cli("backfill", "create", "--dag-id", "spark_ap_pipeline", "--from-date", DAYS[0],
                               "--to-date", DAYS[1], "--dag-run-conf", conf)  # fmt: skip
        if backfill.returncode != 0:
            print(backfill.stderr[-3000:], file=sys.stderr)
            return 1
        while len(runs := states(db)) < 3 or not all(state in ("success", "failed") for state in runs):
            airflow.check_alive()
            time.sleep(5)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1400,800", "--virtual-time-budget=20000", f"--screenshot={OUT}",
                        f"{airflow.url}/dags/spark_ap_pipeline"], check=True, capture_output=True)  # fmt: skip
    print(f"{OUT}: the grid of runs {runs}")
    if all(state == "success" for state in runs):
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    print(f"Kept, with Airflow's logs: {tmp}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
