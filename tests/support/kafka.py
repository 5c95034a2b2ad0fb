"""A real single-node Kafka broker (KRaft mode) on 127.0.0.1, for tests and the stream demo.

The broker is Apache Kafka's own, from its Maven artifacts: the first use
resolves ``org.apache.kafka:kafka_2.13`` and its dependencies with the Ivy
jar that ships inside pyspark (Maven Central and ``SPARK_AP_REPOSITORIES``)
into a cache folder, and every later one starts from there. It needs Java 17,
pyspark and confluent-kafka (to see that the broker is up)::

    from tests.support.kafka import KafkaBroker

    with KafkaBroker(tmp_path) as broker:
        broker.create_topics("points", "assignments")
        broker.bootstrap_servers  # '127.0.0.1:40123'

One JVM is both controller and broker, on free ports of 127.0.0.1, in a
process group of its own; ``stop`` kills the group and waits for it. Topics
have one partition unless asked, and replication factor 1.
"""

from __future__ import annotations

import atexit
import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

import pyspark

__all__ = ["KAFKA_VERSION", "KafkaBroker", "KafkaBrokerError", "broker_classpath"]

#: The broker's version; Spark's connector (spark-sql-kafka-0-10 4.1.1) speaks to 4.x brokers.
KAFKA_VERSION = "4.1.1"
_HOST = "127.0.0.1"
_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spark-ap"


class KafkaBrokerError(RuntimeError):
    """The broker's jars could not be resolved, or the broker did not come up."""


def broker_classpath(version: str = KAFKA_VERSION, cache: Path = _CACHE) -> str:
    """The broker's classpath (``<folder>/*``), resolving its jars into ``cache`` on first use.

    Resolution goes through the Ivy jar in pyspark's ``jars/`` against Maven
    Central, plus the repositories of ``SPARK_AP_REPOSITORIES`` when it is set.
    """
    folder = cache / f"kafka_2.13-{version}"
    done = folder / ".resolved"
    if not done.is_file():
        ivy = next((Path(pyspark.__file__).parent / "jars").glob("ivy-*.jar"), None)
        if ivy is None:
            raise KafkaBrokerError("pyspark ships no Ivy jar (pyspark/jars/ivy-*.jar) to resolve Kafka with")
        folder.mkdir(parents=True, exist_ok=True)
        settings = _ivy_settings(folder)
        command = [
            "java", "-jar", str(ivy), "-settings", str(settings),
            "-dependency", "org.apache.kafka", "kafka_2.13", version, "-confs", "default",
            "-retrieve", f"{folder}/[artifact]-[revision](-[classifier]).[ext]",
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if out.returncode != 0 or not any(folder.glob("kafka_2.13-*.jar")):
            raise KafkaBrokerError(
                f"could not resolve org.apache.kafka:kafka_2.13:{version} (exit {out.returncode}):\n"
                + (out.stdout + out.stderr)[-3000:]
            )
        done.touch()
    return f"{folder}/*"


def _ivy_settings(folder: Path) -> Path:
    """Ivy settings: Maven Central, then each repository of ``SPARK_AP_REPOSITORIES``."""
    extra = [url.strip() for url in os.environ.get("SPARK_AP_REPOSITORIES", "").split(",") if url.strip()]
    resolvers = '<ibiblio name="central" m2compatible="true"/>' + "".join(
        f'<ibiblio name="extra-{i}" m2compatible="true" root="{url}"/>' for i, url in enumerate(extra)
    )
    path = folder / "ivysettings.xml"
    path.write_text(
        f'<ivysettings><settings defaultResolver="chain"/><caches defaultCacheDir="{folder}/.ivy-cache"/>'
        f'<resolvers><chain name="chain" returnFirst="true">{resolvers}</chain></resolvers></ivysettings>\n'
    )
    return path


def _cluster_id() -> str:
    """A random cluster id as Kafka makes them: 16 bytes in URL-safe base64, never starting with
    "-", which the storage tool's command line would read as an option (1 id in 64 otherwise)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free now (all held open until every one is chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((_HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class KafkaBroker:
    """A KRaft controller and broker in one JVM on 127.0.0.1, as a context manager.

    Parameters
    ----------
    tmp : str or os.PathLike
        Folder for the configuration, the log (``broker.log``) and the data.
    timeout : float, default 120.0
        Seconds to wait for the broker to accept connections.
    heap : str, default "512m"
        The JVM's maximum heap.

    Attributes
    ----------
    bootstrap_servers : str
        ``127.0.0.1:<port>``, for clients' ``bootstrap.servers``.
    """

    def __init__(self, tmp: str | os.PathLike[str], *, timeout: float = 120.0, heap: str = "512m") -> None:
        self.tmp = Path(tmp)
        self.timeout = timeout
        self.heap = heap
        self.port, self.controller_port = _free_ports(2)
        self.bootstrap_servers = f"{_HOST}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def log_file(self) -> Path:
        return self.tmp / "broker.log"

    def start(self) -> KafkaBroker:
        """Format the storage, start the JVM and wait until the broker serves metadata."""
        classpath = broker_classpath()
        self.tmp.mkdir(parents=True, exist_ok=True)
        config = self.tmp / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{_HOST}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{_HOST}:{self.port},CONTROLLER://{_HOST}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{_HOST}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.tmp / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                ]
            )
            + "\n"
        )
        java = ["java", f"-Xmx{self.heap}", "-cp", classpath]
        cluster_id = _cluster_id()
        formatted = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if formatted.returncode != 0:
            raise KafkaBrokerError(f"formatting the broker's storage failed:\n{formatted.stdout}{formatted.stderr}")
        atexit.register(self.stop)
        with open(self.log_file, "wb") as log:
            self._process = subprocess.Popen(
                [*java, "kafka.Kafka", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait()
        except BaseException:  # an interrupt or a failed import must not leave the broker running
            self.stop()
            raise
        return self

    def _wait(self) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + self.timeout
        admin = None
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                self.stop()
                raise KafkaBrokerError(f"the broker exited with {code}:\n{self._tail()}")
            if admin is None:
                # A client before the port is open would log every refused connection.
                with socket.socket() as probe:
                    probe.settimeout(1)
                    if probe.connect_ex((_HOST, self.port)) == 0:
                        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 3})
            try:
                if admin is not None and admin.list_topics(timeout=2).brokers:
                    return
            except Exception:  # not serving metadata yet
                pass
            time.sleep(0.5)
        self.stop()
        raise KafkaBrokerError(f"the broker did not come up within {self.timeout} s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""

    def create_topics(self, *names: str, partitions: int = 1) -> None:
        """Create topics and wait until they exist."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 3})
        futures = admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        for future in futures.values():
            future.result(timeout=30)

    def stop(self) -> None:
        """Kill the broker's process group and wait for it; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
