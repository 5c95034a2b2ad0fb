"""A throwaway Spark standalone cluster for tests, built from the pip-installed pyspark.

`StandaloneCluster` starts one ``Master`` and ``workers`` x ``Worker`` JVMs through
``pyspark/bin/spark-class`` (``SPARK_HOME`` is the installed ``pyspark`` package, which
ships ``bin/`` and ``jars/``), waits until the master lists every worker as ALIVE, and
kills everything again on `StandaloneCluster.stop` or on leaving the ``with`` block::

    from tests.support.standalone import StandaloneCluster

    with StandaloneCluster(workers=2, tmp=tmp_path) as cluster:
        subprocess.run(
            ["spark-submit", "--master", cluster.master_url,
             "--conf", "spark.driver.host=127.0.0.1", "app.py"],
            check=True,
        )
        cluster.kill_worker(0)  # SIGKILL worker 0 and the executors it launched

Everything binds to 127.0.0.1. Master, master web UI and workers ask the OS for free
ports (port 0) and the real ones are read from the master's log, so several clusters,
or somebody else's Spark on the same machine, cannot collide. The master's REST
submission server (fixed port 6066, on by default in Spark 4.1) is switched off.

Layout under ``tmp``: ``conf/`` (an empty ``SPARK_CONF_DIR``, so no stray
``spark-defaults.conf``, ``spark-env.sh`` or log4j file leaks in), ``logs/master.log``
and ``logs/worker-<i>.log`` (each daemon's stdout and stderr), ``work-<i>/`` (the
worker's ``--work-dir``: one folder per application and executor holding the executor's
``stdout`` and ``stderr``) and ``local-<i>/`` (``SPARK_LOCAL_DIRS`` of the executors:
shuffle and spill files).

Submitting to it
----------------
Pass ``--master cluster.master_url`` to ``spark-submit`` (`StandaloneCluster.submit_args`
returns that together with the settings below). The driver runs in the test's process
tree (client deploy mode), so:

* ``spark.driver.host=127.0.0.1`` (or ``SPARK_LOCAL_IP=127.0.0.1`` in spark-submit's
  environment): otherwise the driver advertises the machine's host name, which the
  executors may not resolve to a reachable address.
* ``PYSPARK_PYTHON`` in spark-submit's environment picks the executors' Python: the
  driver ships its value with each task. The daemons here get ``sys.executable``.
* Each worker has ``cores`` cores and ``memory`` of memory for executors; the default
  ``spark.executor.memory`` (1g) fits the default 2g. Ask for no more than that, or the
  application waits forever for resources.
* ``spark.ui.enabled=false`` keeps the driver off port 4040 and its retries.

Surviving a lost worker needs no special settings: Spark re-runs the lost tasks and,
through fetch failures, the map stages whose shuffle output died with the executor.
Those retries are bounded by ``spark.task.maxFailures`` (4) and
``spark.stage.maxConsecutiveAttempts`` (4). The master does not start a new executor
unless a worker has free cores, so the application finishes on the remaining ones.

Processes
---------
Each daemon starts in a session and process group of its own (``start_new_session``).
``spark-class`` ``exec``\\s the JVM, so the group leader is the JVM itself, and the
executors a worker forks, with their Python workers, stay in the worker's group. Killing
the group therefore kills the worker and all its executors; `StandaloneCluster.stop`
does that for every group and waits until no live process is left in any of them. It
is also registered with `atexit` while the cluster runs.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyspark

from tests.support.processes import ProcessGroupError, kill_group, signal_group

__all__ = ["SPARK_HOME", "StandaloneCluster", "StandaloneClusterError"]

#: The installed ``pyspark`` package; it has ``bin/spark-class`` and ``jars/``.
SPARK_HOME = Path(pyspark.__file__).resolve().parent

_HOST = "127.0.0.1"
_MASTER_CLASS = "org.apache.spark.deploy.master.Master"
_WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
_MASTER_URL = re.compile(r"Starting Spark master at (spark://\S+)")
_MASTER_UI_PORT = re.compile(r"Successfully started service 'MasterUI' on port (\d+)")
# Talk to the master's web UI directly, whatever http_proxy says.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StandaloneClusterError(RuntimeError):
    """The cluster did not come up, or a daemon died while it was expected to run."""


class StandaloneCluster:
    """A Spark standalone master and ``workers`` workers on 127.0.0.1, as a context manager.

    Parameters
    ----------
    workers : int, default 2
        Number of workers to start.
    tmp : str or os.PathLike, optional
        Folder for configuration, logs, work and scratch directories; created if
        missing. A fresh temporary folder (not removed afterwards) when omitted.
    cores : int, default 1
        Cores each worker offers (``--cores``).
    memory : str, default "2g"
        Memory each worker offers to executors (``--memory``).
    daemon_memory : str, default "512m"
        Heap of the master and worker JVMs themselves (``SPARK_DAEMON_MEMORY``).
    timeout : float, default 120.0
        Seconds to wait for the master and then for all workers to come up.
    env : Mapping[str, str], optional
        Extra environment variables for all daemons, applied last (for example
        ``{"SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=false"}``).

    Attributes
    ----------
    tmp : pathlib.Path
        The folder everything is written to.
    log_dir : pathlib.Path
        ``tmp / "logs"``, with ``master.log`` and ``worker-<i>.log``.
    startup_seconds : float or None
        Wall time `start` took, once it has succeeded.

    Examples
    --------
    >>> with StandaloneCluster(workers=2, tmp=tmp_path) as cluster:  # doctest: +SKIP
    ...     cluster.master_url
    'spark://127.0.0.1:40123'
    """

    def __init__(
        self,
        workers: int = 2,
        tmp: str | os.PathLike[str] | None = None,
        *,
        cores: int = 1,
        memory: str = "2g",
        daemon_memory: str = "512m",
        timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self.tmp = Path(tmp) if tmp is not None else Path(tempfile.mkdtemp(prefix="spark-standalone-"))
        self.log_dir = self.tmp / "logs"
        self.cores = cores
        self.memory = memory
        self.daemon_memory = daemon_memory
        self.timeout = timeout
        self.extra_env = dict(env or {})
        self.startup_seconds: float | None = None
        self._master: subprocess.Popen[bytes] | None = None
        self._workers: list[subprocess.Popen[bytes] | None] = []
        self._master_url: str | None = None
        self._web_url: str | None = None

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self._master_url or "not running"
        return f"StandaloneCluster(workers={self.workers}, {state}, tmp={str(self.tmp)!r})"

    # ------------------------------------------------------------------ addresses

    @property
    def master_url(self) -> str:
        """``spark://127.0.0.1:<port>``, the value for ``spark-submit --master``.

        Raises
        ------
        StandaloneClusterError
            If the cluster has not been started.
        """
        return _running(self._master_url)

    @property
    def web_url(self) -> str:
        """``http://127.0.0.1:<port>``, the master's web UI (``/json/`` gives its state).

        Raises
        ------
        StandaloneClusterError
            If the cluster has not been started.
        """
        return _running(self._web_url)

    def submit_args(self) -> list[str]:
        """Arguments that point ``spark-submit`` at this cluster.

        Returns
        -------
        list of str
            ``--master <url>`` and the ``--conf`` settings a client-mode driver on this
            machine needs; put them before the application file.
        """
        return [
            "--master",
            self.master_url,
            "--conf",
            f"spark.driver.host={_HOST}",
            "--conf",
            f"spark.driver.bindAddress={_HOST}",
        ]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> StandaloneCluster:
        """Start the master and the workers and wait until all workers are ALIVE.

        Returns
        -------
        StandaloneCluster
            ``self``.

        Raises
        ------
        StandaloneClusterError
            If a daemon exits or the cluster is not up within ``timeout`` seconds; the
            message ends with the tail of every log. Whatever was started is stopped.
        """
        if self._master is not None:
            raise StandaloneClusterError("the cluster was already started; use a new StandaloneCluster")
        began = time.monotonic()
        deadline = began + self.timeout
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.tmp / "conf").mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._master = self._spawn(
                "master", [_MASTER_CLASS, "--host", _HOST, "--port", "0", "--webui-port", "0"], self._env()
            )
            self._master_url, ui_port = self._wait_for_master(deadline)
            self._web_url = f"http://{_HOST}:{ui_port}"
            for i in range(self.workers):
                work_dir, local_dir = self.tmp / f"work-{i}", self.tmp / f"local-{i}"
                work_dir.mkdir(parents=True, exist_ok=True)
                local_dir.mkdir(parents=True, exist_ok=True)
                args = [
                    _WORKER_CLASS,
                    "--host", _HOST,
                    "--port", "0",
                    "--webui-port", "0",
                    "--cores", str(self.cores),
                    "--memory", self.memory,
                    "--work-dir", str(work_dir),
                    self._master_url,
                ]  # fmt: skip
                self._workers.append(self._spawn(f"worker-{i}", args, self._env(SPARK_LOCAL_DIRS=str(local_dir))))
            self.wait_for_workers(self.workers, timeout=max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Kill every process group this cluster started and wait until they are empty.

        Sends SIGTERM to all groups, gives the JVMs ``grace`` seconds to exit, then
        SIGKILLs whatever is left. Safe to call more than once, and before `start`.

        Parameters
        ----------
        grace : float, default 5.0
            Seconds between SIGTERM and SIGKILL; 0 kills at once.
        """
        procs = [p for p in [*self._workers, self._master] if p is not None]
        for proc in procs:
            signal_group(proc, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        errors = []
        for proc in procs:
            try:
                kill_group(proc)
            except (ProcessGroupError, subprocess.TimeoutExpired) as error:
                errors.append(str(error))
        self._workers = [None] * len(self._workers)
        self._master = None
        self._master_url = self._web_url = None
        atexit.unregister(self.stop)
        if errors:
            raise StandaloneClusterError("; ".join(errors))

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` together with the executors it launched.

        Kills the worker's whole process group and waits until it is empty. The master
        notices the lost connection and marks the worker DEAD; running applications
        lose that worker's executors.

        Parameters
        ----------
        i : int
            Index of the worker, ``0 <= i < workers``.

        Raises
        ------
        StandaloneClusterError
            If worker ``i`` was already killed or the cluster is not running.
        """
        proc = self._workers[i] if 0 <= i < len(self._workers) else None
        if proc is None:
            raise StandaloneClusterError(f"worker {i} is not running")
        kill_group(proc)
        self._workers[i] = None

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """The master's view of the cluster, as its web UI's ``/json/`` endpoint reports it.

        Returns
        -------
        dict
            Keys include ``url``, ``status``, ``workers`` (each with ``id``, ``host``,
            ``port``, ``state``, ``coresused`` ...), ``aliveworkers``, ``activeapps``
            and ``completedapps``.
        """
        with _HTTP.open(f"{self.web_url}/json/", timeout=5) as response:
            return json.load(response)

    def alive_workers(self) -> int:
        """Number of workers the master currently lists as ALIVE."""
        return sum(w.get("state") == "ALIVE" for w in self.state().get("workers", []))

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        """Wait until the master lists exactly ``n`` workers as ALIVE.

        Parameters
        ----------
        n : int
            Expected number of ALIVE workers.
        timeout : float, default 60.0
            Seconds to wait.

        Raises
        ------
        StandaloneClusterError
            On timeout, or if the master or a worker not killed on purpose exits; the
            message ends with the tail of every log.
        """
        deadline = time.monotonic() + timeout
        alive = None
        while True:
            self._check_running()
            try:
                alive = self.alive_workers()
            except OSError:  # the UI may still be starting; retry until the deadline
                pass
            if alive == n:
                return
            if time.monotonic() > deadline:
                raise StandaloneClusterError(
                    f"{alive} of {n} workers ALIVE at {self._master_url} after {timeout:.0f} s\n" + self.logs()
                )
            time.sleep(0.2)

    def logs(self, lines: int = 40) -> str:
        """The last ``lines`` lines of every daemon log, for error messages.

        Parameters
        ----------
        lines : int, default 40
            Lines per log file.

        Returns
        -------
        str
            One section per file under `log_dir`.
        """
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {path} (last {len(tail)} lines) -----\n" + "\n".join(tail))
        return "\n".join(parts)

    # ------------------------------------------------------------------ internals

    def _env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SPARK_HOME": str(SPARK_HOME),
                "SPARK_CONF_DIR": str(self.tmp / "conf"),
                "SPARK_LOCAL_IP": _HOST,
                "SPARK_DAEMON_MEMORY": self.daemon_memory,
                "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
                "PYSPARK_PYTHON": sys.executable,
            }
        )
        env.update(extra)
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        spark_class = SPARK_HOME / "bin" / "spark-class"
        if not os.access(spark_class, os.X_OK):
            raise StandaloneClusterError(f"{spark_class} is missing or not executable")
        if shutil.which("java") is None and "JAVA_HOME" not in env:
            raise StandaloneClusterError("no java on PATH and JAVA_HOME is not set")
        with open(self.log_dir / f"{name}.log", "wb") as log:
            return subprocess.Popen(
                [str(spark_class), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self.tmp,
                start_new_session=True,
            )

    def _wait_for_master(self, deadline: float) -> tuple[str, int]:
        log = self.log_dir / "master.log"
        while True:
            self._check_running()
            text = log.read_text(errors="replace")
            url, ui = _MASTER_URL.search(text), _MASTER_UI_PORT.search(text)
            if url and ui:
                return url.group(1), int(ui.group(1))
            if time.monotonic() > deadline:
                raise StandaloneClusterError(f"the master did not start within {self.timeout:.0f} s\n" + self.logs())
            time.sleep(0.1)

    def _check_running(self) -> None:
        named = [("master", self._master)] + [(f"worker-{i}", p) for i, p in enumerate(self._workers)]
        for name, proc in named:
            if proc is not None and proc.poll() is not None:
                raise StandaloneClusterError(f"{name} exited with code {proc.returncode}\n" + self.logs())


def _running(address: str | None) -> str:
    """``address``, which is known only while the cluster runs."""
    if address is None:
        raise StandaloneClusterError("the cluster is not running")
    return address
