"""A real HDFS for tests: Hadoop's own NameNode and DataNode (``MiniDFSCluster``) on 127.0.0.1.

`HdfsCluster` runs ``tests/support/HdfsMiniCluster.java`` with Java's single-file source
launcher (no build step) in a JVM of its own. That starts Hadoop's ``MiniDFSCluster``
with one NameNode and one DataNode, prints a ready line and blocks; `HdfsCluster.stop`
kills it again, as does leaving the ``with`` block::

    from tests.support.hdfs import HdfsCluster

    with HdfsCluster(tmp_path) as hdfs:
        spark.range(10).write.parquet(hdfs.url("/tables/t.parquet"))
        assert hdfs.exists("/tables/t.parquet/_SUCCESS")
        hdfs.ls("/tables/t.parquet")  # ['_SUCCESS', 'part-00000-....snappy.parquet', ...]

The Hadoop version is the one of pyspark's Hadoop client (``pyspark/jars/hadoop-client-api-<version>.jar``).
The first start resolves ``org.apache.hadoop:hadoop-client-minicluster:<version>`` (the
shaded test cluster, about 40 MB) and ``javax.xml.bind:jaxb-api`` (WebHDFS's Jersey needs
it on Java 11+) with Maven (``mvn`` on PATH, Maven Central or the mirrors of
``~/.m2/settings.xml``, plus the repositories of ``SPARK_AP_REPOSITORIES``) into
``~/.cache/spark-ap/hadoop-minicluster-<version>/``; later starts only read that folder.
Everything else comes from pyspark's ``jars/``: ``hadoop-client-api``, ``hadoop-client-runtime``
and the logging jars (slf4j, log4j 2, commons-logging over slf4j). Nothing is downloaded
at import time.

Addresses
---------
NameNode RPC and HTTP ports, and the DataNode's ports, are chosen by the OS (port 0)
unless ``port`` / ``http_port`` are given, so several clusters cannot collide. All of
them bind to 127.0.0.1 and the DataNode registers as 127.0.0.1, so clients reach it by
IP without any ``dfs.client.use.datanode.hostname`` setting. `HdfsCluster.uri` is
``hdfs://127.0.0.1:<port>``; `HdfsCluster.url` makes a full URI of a path.

Spark
-----
A fully qualified ``hdfs://127.0.0.1:<port>/...`` path works in any SparkSession (also the
suite's ``spark`` fixture) without settings. `HdfsCluster.hadoop_conf` gives what a *new*
session or spark-submit should add: ``spark.hadoop.dfs.replication=1``, since
``dfs.replication`` is the client's setting and its default (3) leaves every block
under-replicated on one DataNode (writes succeed anyway). With ``default_fs=True`` it
also makes the cluster the default file system (then paths without a scheme go to HDFS,
so leave it off for a session that uses local paths too).

Users and permissions
---------------------
Permission checks are on (``dfs.permissions.enabled``). The NameNode runs as the Hadoop
user ``superuser`` ("hdfs": ``HADOOP_USER_NAME`` in its environment), which is HDFS's
superuser. The root folder ``/`` belongs to `HdfsCluster.user`, mode 755: by default the
user this process's clients act as (``HADOOP_USER_NAME`` if set, else the OS user, as
Hadoop determines it). So Spark in this process can write anywhere, and permissions
still apply to it: a folder made read-only with `HdfsCluster.chmod` refuses its writes,
as does ``/`` for another user (``HADOOP_USER_NAME=other`` for a child process, or
``user="other"`` for the WebHDFS helpers). If the test runs as a user called "hdfs",
pass another ``superuser``.

WebHDFS helpers
---------------
`HdfsCluster.ls`, `HdfsCluster.status`, `HdfsCluster.exists`, `HdfsCluster.read`,
`HdfsCluster.write`, `HdfsCluster.mkdirs` and `HdfsCluster.chmod` talk to the NameNode's
WebHDFS REST API (``HdfsCluster.web_url + "/webhdfs/v1/..."``) with the standard library,
bypassing any HTTP proxy, and act as `HdfsCluster.user` unless given ``user=``. They
take absolute paths or ``hdfs://`` URIs of this cluster, and raise `FileNotFoundError`,
`PermissionError` or `FileExistsError` for HDFS's exceptions of those kinds.

Processes and files
-------------------
The JVM starts in a session and process group of its own (``start_new_session``) with
its stdin a pipe from this process. `HdfsCluster.stop` closes the pipe (the JVM then
shuts the cluster down and exits), waits ``grace`` seconds, SIGKILLs the group and
waits until it is empty. It is registered with `atexit` while the cluster runs; and if
this process dies without it, the closed pipe still ends the JVM. Layout under
``tmp``: ``logs/hdfs.log`` (the JVM's stdout and stderr: Hadoop's log at ``log_level``
and the ready line), ``conf/log4j2.properties`` and ``data/`` (NameNode and DataNode
storage). The JVM's heap is ``heap`` (512m by default; it uses about 300 MB resident).
The cluster comes up in 5 to 10 s on two cores (`HdfsCluster.startup_seconds`; the
first start adds about 20 s of Maven resolution), and stops in under 1 s.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pyspark

from tests.support.processes import kill_group

__all__ = ["HDFS_JAVA_SOURCE", "HdfsCluster", "HdfsClusterError", "hadoop_version", "minicluster_classpath"]

_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spark-ap"
_JARS = Path(pyspark.__file__).resolve().parent / "jars"
#: The launcher's Java source, run with ``java -cp <classpath> HdfsMiniCluster.java ...``.
HDFS_JAVA_SOURCE = Path(__file__).resolve().parent / "HdfsMiniCluster.java"
# The jars of pyspark's jars/ the cluster runs on, by name without the version.
_PYSPARK_JARS = (
    "hadoop-client-api",
    "hadoop-client-runtime",
    "slf4j-api",
    "log4j-slf4j2-impl",
    "log4j-api",
    "log4j-core",
    "log4j-1.2-api",
    "jcl-over-slf4j",
)
# Jersey 1 in the shaded minicluster needs javax.xml.bind, which Java 11 dropped and pyspark
# does not ship (it has jakarta.xml.bind); 2.2.11 is the version hadoop-project 3.4 manages.
_JAXB_API = "javax.xml.bind:jaxb-api:2.2.11"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_READY = re.compile(r"^HDFS_READY (hdfs://\S+) (http://\S+)$", re.M)
# Talk to WebHDFS directly, whatever http_proxy says.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HdfsClusterError(RuntimeError):
    """The cluster's jars could not be resolved, it did not come up, or WebHDFS failed."""


def hadoop_version(jars: Path = _JARS) -> str:
    """The Hadoop version of pyspark's Hadoop client, from ``jars/hadoop-client-api-<version>.jar``."""
    found = sorted(jars.glob("hadoop-client-api-*.jar"))
    match = re.fullmatch(r"hadoop-client-api-(.+)\.jar", found[0].name) if found else None
    if match is None:
        raise HdfsClusterError(f"no hadoop-client-api-<version>.jar in {jars}")
    return match.group(1)


def minicluster_classpath(version: str | None = None, cache: Path = _CACHE) -> str:
    """The cluster JVM's classpath, resolving the minicluster's jars into ``cache`` on first use.

    Parameters
    ----------
    version : str, optional
        Hadoop version; pyspark's (`hadoop_version`) by default. Other versions will not
        match pyspark's ``hadoop-client-api`` and ``-runtime`` jars.
    cache : pathlib.Path
        Parent of the ``hadoop-minicluster-<version>`` folder the jars are copied to.

    Returns
    -------
    str
        The jars, joined with ``os.pathsep``.

    Raises
    ------
    HdfsClusterError
        If Maven is missing or cannot resolve the jars, or pyspark lacks one of its jars.
    """
    version = version or hadoop_version()
    folder = cache / f"hadoop-minicluster-{version}"
    done = folder / ".resolved"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for artifact in (f"org.apache.hadoop:hadoop-client-minicluster:{version}", _JAXB_API):
            _maven_copy(artifact, folder)
        done.touch()
    jars = [folder / f"hadoop-client-minicluster-{version}.jar", *sorted(folder.glob("jaxb-api-*.jar"))]
    for name in _PYSPARK_JARS:
        found = sorted(
            p for p in _JARS.glob(f"{name}-*.jar") if re.fullmatch(rf"{re.escape(name)}-\d[^-]*\.jar", p.name)
        )
        if not found:
            raise HdfsClusterError(f"pyspark's jars folder {_JARS} has no {name}-<version>.jar")
        jars.append(found[-1])
    missing = [str(jar) for jar in jars if not jar.is_file()]
    if missing:
        raise HdfsClusterError(f"missing jars (delete {folder} to resolve them again): {', '.join(missing)}")
    return os.pathsep.join(str(jar) for jar in jars)


def _maven_copy(artifact: str, folder: Path) -> None:
    """Copy ``artifact`` (without its dependencies) from Maven into ``folder``, through ``~/.m2``."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise HdfsClusterError(f"Maven (mvn) is not on PATH; it resolves {artifact} for the HDFS test cluster")
    commands = []
    extra = [url.strip() for url in os.environ.get("SPARK_AP_REPOSITORIES", "").split(",") if url.strip()]
    if extra:  # dependency:copy has no repository option; dependency:get fetches into ~/.m2 first
        commands.append(
            [mvn, "-B", "-q", f"{_DEPENDENCY_PLUGIN}:get", f"-Dartifact={artifact}", "-Dtransitive=false",
             f"-DremoteRepositories={','.join(extra)}"]
        )  # fmt: skip
    commands.append(
        [mvn, "-B", "-q", f"{_DEPENDENCY_PLUGIN}:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={folder}"]
    )
    for command in commands:
        out = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=folder)
        if out.returncode != 0:
            raise HdfsClusterError(
                f"could not resolve {artifact} with Maven (exit {out.returncode}):\n"
                + (out.stdout + out.stderr)[-3000:]
            )


def _current_user() -> str:
    """The user a Hadoop client in this process (and its children) acts as, with simple authentication."""
    return os.environ.get("HADOOP_USER_NAME") or pwd.getpwuid(os.getuid()).pw_name


class HdfsCluster:
    """An HDFS NameNode and DataNode (Hadoop's ``MiniDFSCluster``) on 127.0.0.1, as a context manager.

    Parameters
    ----------
    tmp : str or os.PathLike, optional
        Folder for configuration, logs and the cluster's storage; created if missing. A
        fresh temporary folder (not removed afterwards) when omitted.
    port : int, default 0
        NameNode RPC port; 0 lets the OS choose a free one.
    http_port : int, default 0
        NameNode HTTP (web UI and WebHDFS) port; 0 lets the OS choose a free one.
    timeout : float, default 120.0
        Seconds to wait for the cluster to come up (not counting the first resolution of
        its jars).
    heap : str, default "512m"
        The JVM's maximum heap.
    user : str, optional
        Owner of ``/`` and the default user of the WebHDFS helpers: this process's Hadoop
        user (``HADOOP_USER_NAME``, else the OS user) by default.
    superuser : str, default "hdfs"
        The Hadoop user the NameNode runs as, HDFS's superuser (no permission checks).
    log_level : str, default "INFO"
        Level of Hadoop's log in ``logs/hdfs.log``.
    env : Mapping[str, str], optional
        Extra environment variables for the JVM, applied last.

    Attributes
    ----------
    tmp : pathlib.Path
        The folder everything is written to.
    log_file : pathlib.Path
        ``tmp / "logs" / "hdfs.log"``.
    startup_seconds : float or None
        Wall time `start` took once it has succeeded (with the jars' first resolution).

    Examples
    --------
    >>> with HdfsCluster(tmp_path) as hdfs:  # doctest: +SKIP
    ...     hdfs.uri
    'hdfs://127.0.0.1:40123'
    """

    def __init__(
        self,
        tmp: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        http_port: int = 0,
        timeout: float = 120.0,
        heap: str = "512m",
        user: str | None = None,
        superuser: str = "hdfs",
        log_level: str = "INFO",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.tmp = Path(tmp) if tmp is not None else Path(tempfile.mkdtemp(prefix="hdfs-minicluster-"))
        self.log_file = self.tmp / "logs" / "hdfs.log"
        self.requested_ports = (port, http_port)
        self.timeout = timeout
        self.heap = heap
        self.user = user or _current_user()
        self.superuser = superuser
        self.log_level = log_level
        self.extra_env = dict(env or {})
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._uri: str | None = None
        self._web_url: str | None = None

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> HdfsCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"HdfsCluster({self._uri or 'not running'}, tmp={str(self.tmp)!r})"

    # ------------------------------------------------------------------ addresses

    @property
    def uri(self) -> str:
        """``hdfs://127.0.0.1:<port>``, the NameNode's RPC address as a file system URI.

        Raises
        ------
        HdfsClusterError
            If the cluster is not running.
        """
        return _running(self._uri)

    @property
    def web_url(self) -> str:
        """``http://127.0.0.1:<port>``, the NameNode's web UI; WebHDFS is under ``/webhdfs/v1``.

        Raises
        ------
        HdfsClusterError
            If the cluster is not running.
        """
        return _running(self._web_url)

    @property
    def port(self) -> int:
        """The NameNode's RPC port."""
        return int(self.uri.rsplit(":", 1)[1])

    @property
    def http_port(self) -> int:
        """The NameNode's HTTP port."""
        return int(self.web_url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int | None:
        """Process id of the cluster's JVM (also its process group id), or None when stopped."""
        return None if self._process is None else self._process.pid

    def url(self, path: str = "/") -> str:
        """``hdfs://127.0.0.1:<port><path>`` for an absolute ``path`` on this cluster."""
        return self.uri + self._path(path)

    def hadoop_conf(self, *, default_fs: bool = False) -> dict[str, str]:
        """Spark settings for a new SparkSession or spark-submit (``--conf k=v``) that uses this cluster.

        Fully qualified ``hdfs://127.0.0.1:<port>/...`` paths need none of them;
        ``spark.hadoop.dfs.replication=1`` keeps the one DataNode from counting every
        block as under-replicated. The DataNode is reached by its IP (127.0.0.1), so
        ``dfs.client.use.datanode.hostname`` stays at its default (false).

        Parameters
        ----------
        default_fs : bool, default False
            Also make the cluster the default file system (``spark.hadoop.fs.defaultFS``),
            for paths without a scheme.
        """
        conf = {"spark.hadoop.dfs.replication": "1"}
        if default_fs:
            conf["spark.hadoop.fs.defaultFS"] = self.uri
        return conf

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HdfsCluster:
        """Resolve the jars if needed, start the JVM and wait for its ready line.

        Returns
        -------
        HdfsCluster
            ``self``.

        Raises
        ------
        HdfsClusterError
            If the jars cannot be resolved, or the JVM exits or prints no ready line
            within ``timeout`` seconds; the message ends with the tail of the log.
            Whatever was started is stopped.
        """
        if self._process is not None:
            raise HdfsClusterError("the cluster was already started; use a new HdfsCluster")
        began = time.monotonic()
        classpath = minicluster_classpath()
        java = Path(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
        if java is None or not Path(java).is_file():
            raise HdfsClusterError("no java on PATH and JAVA_HOME is not set")
        data, conf = self.tmp / "data", self.tmp / "conf"
        if data.exists():  # MiniDFSCluster formats it anyway; a used folder is a stale cluster's
            shutil.rmtree(data)
        for folder in (data, conf, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        log4j = conf / "log4j2.properties"
        log4j.write_text(
            f"rootLogger.level = {self.log_level}\n"
            "rootLogger.appenderRef.console.ref = console\n"
            "appender.console.type = Console\n"
            "appender.console.name = console\n"
            "appender.console.target = SYSTEM_ERR\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n\n"
            # A metrics system per daemon, each saying so at INFO.
            "logger.metrics.name = org.apache.hadoop.metrics2\n"
            "logger.metrics.level = WARN\n"
        )
        env = dict(os.environ)
        env["HADOOP_USER_NAME"] = self.superuser
        env.update(self.extra_env)
        port, http_port = self.requested_ports
        command = [
            str(java), f"-Xmx{self.heap}", "-XX:TieredStopAtLevel=1", "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
            str(HDFS_JAVA_SOURCE), str(data), str(port), str(http_port), self.user,
        ]  # fmt: skip
        atexit.register(self.stop)
        try:
            with open(self.log_file, "wb") as log:
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.tmp,
                    start_new_session=True,
                )
            self._wait_ready(time.monotonic() + self.timeout)
        except BaseException:
            self.stop(grace=0)
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Shut the cluster down and wait until no process of its group is left.

        Closes the JVM's stdin, upon which it shuts the cluster down and exits; after
        ``grace`` seconds SIGKILLs its process group. Safe to call more than once, and
        before `start`.

        Parameters
        ----------
        grace : float, default 10.0
            Seconds to wait for the orderly shutdown; 0 kills at once.

        Raises
        ------
        ProcessGroupError
            If members of the process group still run 30 s after SIGKILL.
        """
        process, self._process = self._process, None
        self._uri = self._web_url = None
        atexit.unregister(self.stop)
        if process is None:
            return
        if grace > 0 and process.stdin is not None:
            try:
                process.stdin.close()
                process.wait(timeout=grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
        elif process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        kill_group(process)

    def logs(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of the JVM's log, for error messages."""
        if not self.log_file.is_file():
            return ""
        return f"----- {self.log_file} (tail) -----\n" + self.log_file.read_text(errors="replace")[-chars:]

    def _wait_ready(self, deadline: float) -> None:
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise HdfsClusterError(f"the HDFS cluster's JVM exited with code {code}\n" + self.logs())
            ready = _READY.search(self.log_file.read_text(errors="replace"))
            if ready:
                self._uri, self._web_url = ready.group(1), ready.group(2)
                return
            if time.monotonic() > deadline:
                raise HdfsClusterError(f"HDFS did not come up within {self.timeout:.0f} s\n" + self.logs())
            time.sleep(0.1)

    # ------------------------------------------------------------------ WebHDFS

    def ls(self, path: str = "/", *, user: str | None = None) -> list[str]:
        """Names in folder ``path``, sorted (for a file: its own name)."""
        statuses = self._webhdfs("GET", path, "LISTSTATUS", user=user)["FileStatuses"]["FileStatus"]
        return sorted(s["pathSuffix"] or self._path(path).rsplit("/", 1)[-1] for s in statuses)

    def status(self, path: str, *, user: str | None = None) -> dict[str, Any]:
        """WebHDFS's ``FileStatus`` of ``path``: ``type`` (FILE or DIRECTORY), ``length``, ``owner``,
        ``group``, ``permission`` (octal string such as "755"), ``replication``, ``modificationTime`` ..."""
        return self._webhdfs("GET", path, "GETFILESTATUS", user=user)["FileStatus"]

    def exists(self, path: str, *, user: str | None = None) -> bool:
        """Whether ``path`` (a file or a folder) exists."""
        try:
            self.status(path, user=user)
        except FileNotFoundError:
            return False
        return True

    def read(self, path: str, *, user: str | None = None) -> bytes:
        """The content of file ``path``."""
        location = self._webhdfs("GET", path, "OPEN", user=user, noredirect="true")["Location"]
        return self._request("GET", location, path)

    def write(self, path: str, data: bytes, *, overwrite: bool = True, user: str | None = None) -> None:
        """Create (or replace) file ``path`` holding ``data``; missing parent folders are created."""
        flags = {"noredirect": "true", "overwrite": str(overwrite).lower()}
        location = self._webhdfs("PUT", path, "CREATE", user=user, **flags)["Location"]
        self._request("PUT", location, path, data=data)

    def mkdirs(self, path: str, *, mode: int | None = None, user: str | None = None) -> None:
        """Create folder ``path`` and its missing parents, with permission ``mode`` (e.g. ``0o700``) if given."""
        extra = {} if mode is None else {"permission": format(mode, "o")}
        self._webhdfs("PUT", path, "MKDIRS", user=user, **extra)

    def chmod(self, path: str, mode: int, *, user: str | None = None) -> None:
        """Set the permission of ``path`` to ``mode`` (e.g. ``0o555``)."""
        self._webhdfs("PUT", path, "SETPERMISSION", user=user, permission=format(mode, "o"))

    def _path(self, path: str) -> str:
        """The absolute path of ``path``, which may be an ``hdfs://`` URI of this cluster."""
        if "://" in path:
            parts = urllib.parse.urlsplit(path)
            if f"{parts.scheme}://{parts.netloc}" != self.uri:
                raise ValueError(f"{path} is not on this cluster ({self.uri})")
            path = parts.path or "/"
        if not path.startswith("/"):
            raise ValueError(f"HDFS paths here must be absolute, got {path!r}")
        return path

    def _webhdfs(self, method: str, path: str, op: str, *, user: str | None, **params: str) -> Any:
        query = urllib.parse.urlencode({"op": op, "user.name": user or self.user, **params})
        url = f"{self.web_url}/webhdfs/v1{urllib.parse.quote(self._path(path))}?{query}"
        body = self._request(method, url, path)
        return json.loads(body) if body else None

    def _request(self, method: str, url: str, path: str, data: bytes | None = None) -> bytes:
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/octet-stream")
        try:
            with _HTTP.open(request, timeout=60) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise _webhdfs_error(error, path) from None


def _webhdfs_error(error: urllib.error.HTTPError, path: str) -> Exception:
    """The Python exception for WebHDFS's error response ``error`` about ``path``."""
    body = error.read().decode(errors="replace")
    try:
        remote = json.loads(body)["RemoteException"]
        kind, message = remote.get("exception", ""), remote.get("message", body)
    except (ValueError, KeyError, TypeError):
        kind, message = "", body[:2000]
    message = message.split("\n\tat ", 1)[0].strip()  # the NameNode's stack trace follows
    if kind in ("FileAlreadyExistsException", "AlreadyBeingCreatedException"):
        return FileExistsError(17, message, path)
    if kind == "FileNotFoundException" or (error.code == 404 and not kind):
        return FileNotFoundError(2, message, path)
    if kind == "AccessControlException" or (error.code == 403 and not kind):
        return PermissionError(13, message, path)
    return HdfsClusterError(f"WebHDFS {error.code} for {path}: {kind} {message}".strip())


def _running(address: str | None) -> str:
    """``address``, which is known only while the cluster runs."""
    if address is None:
        raise HdfsClusterError("the HDFS cluster is not running")
    return address
