"""A Hadoop file system URI (``hdfs://``, ``s3a://``, ``gs://``, ``abfss://``, ...) through Hadoop's
FileSystem API in the session's JVM: the driver lists, renames and writes small files there, and
file contents are hashed by the executors, where the data is.

A URI is checked when its files are first asked for: a scheme no file system on Spark's classpath
serves is refused naming the package that serves it, and a namenode or endpoint that does not
answer within :data:`CONNECT_TIMEOUT` seconds is refused naming it (Hadoop's client would retry
for minutes).
"""

from __future__ import annotations

import hashlib
import re
import socket
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from spark_ap.compat import spark_context
from spark_ap.errors import InvalidInputError, reason

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Seconds to wait for a namenode or an object store's endpoint to accept a connection.
CONNECT_TIMEOUT = 10.0
# The option of Hadoop's createFile() builder for an atomic create-if-absent on an object store.
CONDITIONAL_CREATE = "fs.option.create.conditional.overwrite"
# File systems that copy on rename and write one object in one step.
OBJECT_STORES = frozenset({"s3", "s3a", "s3n", "gs", "oss", "cos", "cosn", "obs", "wasb", "wasbs"})
# Who serves a scheme that Spark's own jars do not ({hadoop}: the running Hadoop client's version).
PACKAGES = {
    "s3a": "org.apache.hadoop:hadoop-aws:{hadoop} (with the software.amazon.awssdk:bundle it names)",
    "s3": "org.apache.hadoop:hadoop-aws:{hadoop}, as s3a:// (Hadoop has no s3:// file system of its own)",
    "s3n": "org.apache.hadoop:hadoop-aws:{hadoop}, as s3a:// (s3n:// was removed from Hadoop)",
    "gs": "com.google.cloud.bigdataoss:gcs-connector (the hadoop3 shaded jar)",
    "abfs": "org.apache.hadoop:hadoop-azure:{hadoop}",
    "abfss": "org.apache.hadoop:hadoop-azure:{hadoop}",
    "wasb": "org.apache.hadoop:hadoop-azure:{hadoop}",
    "wasbs": "org.apache.hadoop:hadoop-azure:{hadoop}",
    "oss": "org.apache.hadoop:hadoop-aliyun:{hadoop}",
}
_ERRORS = {
    "java.io.FileNotFoundException": FileNotFoundError,
    "org.apache.hadoop.fs.FileAlreadyExistsException": FileExistsError,
    "org.apache.hadoop.security.AccessControlException": PermissionError,
    "java.nio.file.AccessDeniedException": PermissionError,
}


@contextmanager
def _java(path: str):
    """Hadoop's exceptions for ``path`` as Python's, with the file system's one-line reason."""
    from py4j.protocol import Py4JJavaError

    try:
        yield
    except Py4JJavaError as error:
        name = error.java_exception.getClass().getName()
        text = reason(error).split(": ", 1)[-1]
        kind = _ERRORS.get(name)
        if kind is None and ("already exists" in text or "PreconditionFailed" in text):
            # HDFS's create says so through a RemoteException of another class, S3's conditional
            # create with a 412 (Precondition Failed) when the second writer closes.
            kind = FileExistsError
        raise (kind or OSError)(f"{path}: {text}") from None


class HadoopFiles:
    """:class:`spark_ap.files.Files` for the file system of ``uri``, through ``spark``'s JVM."""

    def __init__(self, uri: str, spark: SparkSession | None = None) -> None:
        from pyspark.sql import SparkSession

        spark = spark or SparkSession.getActiveSession()
        if spark is None:
            raise InvalidInputError(f"{uri} is a file system URI: it is read through a SparkSession, and none runs")
        self._spark = spark
        # Hadoop's FileSystem is reached through the driver's JVM.
        sc = spark_context(spark, f"The path {uri} (a Hadoop file system)", instead="local paths work in any session")
        jvm = sc._jvm
        self._jvm = jvm
        self._conf = sc._jsc.hadoopConfiguration()
        self._Path = jvm.org.apache.hadoop.fs.Path
        scheme = urlsplit(uri).scheme.lower()
        check_scheme(jvm, self._conf, uri, scheme)
        check_reachable(uri, self._conf)
        with _java(uri):
            self._fs = self._Path(uri).getFileSystem(self._conf)
        self.renames_atomically = scheme not in OBJECT_STORES

    def _status(self, path: str):
        try:
            with _java(path):
                return self._fs.getFileStatus(self._Path(path))
        except FileNotFoundError:
            return None

    def kind(self, path: str) -> str | None:
        status = self._status(path)
        return None if status is None else "dir" if status.isDirectory() else "file"

    def names(self, folder: str) -> list[str]:
        with _java(folder):
            return sorted(status.getPath().getName() for status in self._fs.listStatus(self._Path(folder)))

    def read(self, path: str) -> bytes:
        with _java(path):
            stream = self._fs.open(self._Path(path))
            try:
                return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
            finally:
                stream.close()

    def _write(self, path: str, data: bytes, overwrite: bool) -> None:
        with _java(path):
            target = self._Path(path)
            if not overwrite and self._fs.hasPathCapability(target, CONDITIONAL_CREATE):
                # An object store's create-if-absent (S3's If-None-Match): the second writer's close fails.
                stream = self._fs.createFile(target).overwrite(False).must(CONDITIONAL_CREATE, True).build()
            else:
                stream = self._fs.create(target, overwrite)
            try:
                stream.write(bytearray(data))
            finally:
                stream.close()

    def write(self, path: str, data: bytes, *, exclusive: bool = False) -> None:
        if exclusive or not self.renames_atomically:
            # One object written in one step; without overwrite, a second create fails (HDFS's
            # namenode decides; an object store's conditional create where it has one, else it
            # only looks first: see docs/job.md's table).
            self._write(path, data, overwrite=not exclusive)
            return
        folder, name = path.rstrip("/").rsplit("/", 1)
        staged = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}"
        self._write(staged, data, overwrite=False)
        rename = self._jvm.org.apache.hadoop.fs.Options.Rename
        options = self._spark.sparkContext._gateway.new_array(rename, 1)
        options[0] = rename.OVERWRITE
        with _java(path):
            context = self._jvm.org.apache.hadoop.fs.FileContext.getFileContext(self._fs.getUri(), self._conf)
            context.rename(self._Path(staged), self._Path(path), options)

    def mkdirs(self, folder: str) -> None:
        with _java(folder):
            if not self._fs.mkdirs(self._Path(folder)):
                raise OSError(f"{folder}: could not be created")

    def rename(self, source: str, target: str) -> None:
        if self.kind(target) is not None:
            raise FileExistsError(f"{target} exists")
        with _java(source):
            if not self._fs.rename(self._Path(source), self._Path(target)):
                raise OSError(f"{source}: could not be renamed to {target}")

    def delete(self, path: str) -> None:
        with _java(path):
            self._fs.delete(self._Path(path), True)

    def modified(self, path: str) -> float:
        status = self._status(path)
        if status is None:
            raise FileNotFoundError(f"{path}: no such file")
        return status.getModificationTime() / 1000.0

    def listing(self, path: str) -> dict[str, list[int]]:
        root = self._status(path)
        if root is None:
            raise FileNotFoundError(f"{path}: no such file")
        if not root.isDirectory():
            return {"": [root.getLen(), root.getModificationTime()]}
        base = root.getPath().toUri().getPath().rstrip("/") + "/"
        found = {}
        with _java(path):
            files = self._fs.listFiles(root.getPath(), True)
            while files.hasNext():
                status = files.next()
                relative = status.getPath().toUri().getPath().removeprefix(base)
                if not any(part.startswith(("_", ".")) for part in relative.split("/")):
                    found[relative] = [status.getLen(), status.getModificationTime()]
        return dict(sorted(found.items()))

    def touch(self, path: str) -> None:
        if not self.renames_atomically:
            # An object store keeps no times of its own but the last write's: write it again.
            self._write(path, self.read(path), overwrite=True)
            return
        with _java(path):
            self._fs.setTimes(self._Path(path), int(time.time() * 1000), -1)

    def digests(self, folder: str, leave_out: tuple[str, ...] = ()) -> dict[str, list]:
        sizes = {}
        with _java(folder):
            root = self._fs.makeQualified(self._Path(folder)).toString().rstrip("/")
            listing = self._fs.listFiles(self._Path(root), True)
            while listing.hasNext():
                status = listing.next()
                full = status.getPath().toString()
                relative = full[len(root) + 1 :]
                parts = relative.split("/")
                if any(part.startswith(".") for part in parts) or parts[0] in leave_out:
                    continue
                sizes[relative] = (full, status.getLen())
        hashed = self._hashed([full for full, _ in sizes.values()])
        return {relative: [size, hashed[full]] for relative, (full, size) in sorted(sizes.items())}

    def _hashed(self, files: list[str]) -> dict[str, str]:
        """``{uri: sha256}``: Hadoop's metadata files (``_`` names, which its input formats skip) hashed
        here, the others by the executors that read them."""
        marks = [f for f in files if f.rsplit("/", 1)[-1].startswith("_")]
        data = [f for f in files if f not in marks]
        out = {f: hashlib.sha256(self.read(f)).hexdigest() for f in marks}
        if data:
            escaped = ",".join(re.sub(r"([\\,{}\[\]*?])", r"\\\1", f) for f in data)
            with _java(files[0]):
                found = self._spark.sparkContext.binaryFiles(escaped).map(_sha256).collect()
            out.update(dict(found))
        return out


def _sha256(item: tuple[str, bytes]) -> tuple[str, str]:
    """(path, sha256) of one file as ``binaryFiles`` gives it; runs in an executor."""
    path, content = item
    return path, hashlib.sha256(content).hexdigest()


def check_scheme(jvm, conf, uri: str, scheme: str) -> None:
    """Refuse ``uri`` when no file system on the classpath serves its scheme, naming the package that does."""
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, conf)
    except Exception as error:
        hadoop = jvm.org.apache.hadoop.util.VersionInfo.getVersion()
        package = PACKAGES.get(scheme)
        remedy = (
            f"add {package.format(hadoop=hadoop)} to spark.jars.packages (spark-submit --packages)"
            if package
            else "no Hadoop file system is known for it; check the URI"
        )
        raise InvalidInputError(
            f"{uri}: Spark cannot load the file system for {scheme}:// ({reason(error).split(': ', 1)[-1]}); " + remedy
        ) from None


def check_reachable(uri: str, conf) -> None:
    """Refuse ``uri`` when its namenode (or its object store's configured endpoint) does not accept a
    connection within :data:`CONNECT_TIMEOUT` seconds."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("hdfs", "webhdfs", "swebhdfs") and parts.hostname:
        nameservices = (conf.get("dfs.nameservices") or "").split(",")
        if parts.hostname in nameservices:
            return  # a high-availability name service: Hadoop's client knows its namenodes
        default = {"hdfs": 8020, "webhdfs": 9870, "swebhdfs": 9871}[scheme]
        _probe(uri, f"the namenode {parts.hostname}:{parts.port or default}", parts.hostname, parts.port or default)
    elif scheme == "s3a":
        endpoint = conf.get(f"fs.s3a.bucket.{parts.hostname}.endpoint") or conf.get("fs.s3a.endpoint")
        if endpoint and "://" in endpoint:
            at = urlsplit(endpoint)
            port = at.port or (443 if at.scheme == "https" else 80)
            _probe(uri, f"the endpoint {endpoint}", at.hostname, port)


def _probe(uri: str, what: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        why = "no answer" if isinstance(error, TimeoutError) else error.strerror or type(error).__name__
        raise InvalidInputError(f"{uri}: cannot reach {what} within {CONNECT_TIMEOUT:.0f} s ({why})") from None
