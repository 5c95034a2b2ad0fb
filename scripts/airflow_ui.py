"""A local Airflow with its UI and the spark-ap DAG, to look at the DAG, its params form and its runs.

    make airflow     # sets up .venv and .airflow/ (SQLite), then runs this; Ctrl-C stops it

Runs ``airflow standalone`` (scheduler, DAG processor, API server with the UI,
triggerer; the LocalExecutor) on the project's ``.airflow`` home, bound to
127.0.0.1, and prints the URL and the login Airflow generated for the user
``admin``. Trigger the DAG from the UI (the params form holds every spark-ap
param), or backfill dates from another shell with the same environment::

    AIRFLOW_HOME=$PWD/.airflow .venv/bin/airflow backfill create --dag-id spark_ap_pipeline \\
        --from-date 2026-12-01 --to-date 2026-12-03

``AIRFLOW__API__PORT`` picks another port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def wait_for(url: str, process: subprocess.Popen, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status == 200
        except OSError:
            time.sleep(1)
    return False


def stop(process: subprocess.Popen) -> None:
    """Stop standalone and every process it started (its process group)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def main() -> int:
    home = Path(os.environ["AIRFLOW_HOME"])
    port = os.environ.setdefault("AIRFLOW__API__PORT", "8080")
    os.environ.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    # Tasks reach the API server's task execution API here, whichever the port.
    os.environ.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://127.0.0.1:{port}/execution/")
    os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    url = f"http://127.0.0.1:{port}"
    log = home / "standalone.log"
    print(f"Starting Airflow (log: {log}) ...", flush=True)
    with open(log, "w") as out:
        # A group of its own: standalone leaves its processes behind when it alone is stopped.
        process = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        if not wait_for(f"{url}/api/v2/monitor/health", process):
            print(f"Airflow did not come up; see {log}", file=sys.stderr)
            return 1
        passwords = home / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text()).get("admin", "?") if passwords.is_file() else "?"
        print(f"\nAirflow is up: {url}/dags/spark_ap_pipeline\n  user: admin\n  password: {password}\n")
        print("Ctrl-C stops it.", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(process)


if __name__ == "__main__":
    raise SystemExit(main())
