"""A throwaway Airflow as it runs in production, for tests: PostgreSQL metadata, separate processes.

`PostgresServer` makes a new database cluster with PostgreSQL's own programs
(``initdb``, ``pg_ctl``: Debian's ``postgresql-15`` keeps them in
``/usr/lib/postgresql/<version>/bin``, off ``PATH``), starts it on 127.0.0.1 on a free
port and removes it again. PostgreSQL refuses to run as root, so under root the server
runs as the ``postgres`` user (which the package creates) in a folder it owns.

`AirflowStack` migrates the metadata into that database and starts the scheduler
(with the LocalExecutor: each task a process of its own that talks to the API server's
task execution API), the DAG processor, the API server and the triggerer, each a
process of its own with its log in ``home/logs/<name>.log``. The simple auth manager
has one admin whose password Airflow generates; `AirflowStack.api` calls ``/api/v2``
with the token ``/auth/token`` hands out for it, as a user's script would::

    with PostgresServer(tmp) as db, AirflowStack(home, db.url, env) as airflow:
        airflow.api("POST", "/dags/spark_ap_pipeline/dagRuns", {"logical_date": None})
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's server programs."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("No PostgreSQL server programs in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return Path(found[-1]).parent


class PostgresServer:
    """A PostgreSQL server of the test's own on 127.0.0.1, with an empty database ``airflow``."""

    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's tmp_path: the postgres user must reach the folder, and
        # pytest's folders are private to the user running the tests.
        self.data = Path(tempfile.mkdtemp(prefix="spark-ap-postgres-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/airflow"

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.as_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")

    def __enter__(self) -> PostgresServer:
        if self.as_user:
            user = pwd.getpwnam("postgres")
            os.chown(self.data, user.pw_uid, user.pw_gid)
        programs = postgres_bin()
        self._run(str(programs / "initdb"), "-D", str(self.data / "db"), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(programs / "pg_ctl"), "-D", str(self.data / "db"), "-o", options, "-l", str(self.data / "log"),
                  "-w", "start")  # fmt: skip
        atexit.register(self.stop)
        self._run(str(programs / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "airflow")
        return self

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([*self.as_user, str(postgres_bin() / "pg_ctl"), "-D", str(self.data / "db"),
                            "-m", "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip
            shutil.rmtree(self.data, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.stop()


class AirflowStack:
    """Scheduler, DAG processor, API server and triggerer on the metadata database ``db_url``."""

    PROCESSES = {
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"],
        "triggerer": ["triggerer"],
    }

    def __init__(self, home: Path, db_url: str, env: dict[str, str]) -> None:
        self.home = Path(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            # Every process signs and checks the task execution API's tokens with this.
            "AIRFLOW__API_AUTH__JWT_SECRET": "spark-ap-tests-" + os.urandom(8).hex(),
            "AIRFLOW__API__SECRET_KEY": os.urandom(16).hex(),
            # Seconds, not minutes, between looks at the DAG folder and the database.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            **env,
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self._token: str | None = None

    def __enter__(self) -> AirflowStack:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=self.env, capture_output=True,
                                 text=True, timeout=600)  # fmt: skip
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {migrate.stderr[-3000:]}")
        atexit.register(self.stop)
        for name, args in self.PROCESSES.items():
            log = open(self.home / "logs" / f"{name}.log", "w")
            command = [str(BIN / "airflow"), *(a.format(port=self.port) for a in args)]
            self.processes[name] = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_for_api()
        return self

    def _wait_for_api(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"The API server did not answer in {timeout} s; see {self.home / 'logs'}")

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the DAG processor has registered ``dag_id``."""
        deadline = time.monotonic() + timeout
        while not self.api("GET", "/dags", dag_id_pattern=dag_id)["dags"]:
            assert time.monotonic() < deadline, f"the DAG processor did not register {dag_id} in {timeout} s"
            self.check_alive()
            time.sleep(1)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.home / "logs" / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"airflow {name} exited with {process.returncode}: {log}")

    def password(self) -> str:
        """The admin's password, as Airflow generated it (what a user reads off the console)."""
        return json.loads((self.home / "passwords.json").read_text())["admin"]

    def token(self) -> str:
        if self._token is None:
            answer = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password()})
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None, **params) -> dict:
        """``/api/v2`` + ``path``, with the admin's token; the answer's JSON."""
        answer = httpx.request(method, f"{self.url}/api/v2{path}", json=body, params=params or None,
                               headers={"Authorization": f"Bearer {self.token()}"}, timeout=30)  # fmt: skip
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:2000]}")
        return answer.json() if answer.content else {}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """``airflow <args>`` against this stack's metadata."""
        return subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=300)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def __exit__(self, *exc) -> None:
        self.stop()
