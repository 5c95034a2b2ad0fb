"""A real S3-compatible server on 127.0.0.1 for tests, and the settings that point Spark's ``s3a://`` at it.

The server is S3Proxy (``org.gaul:s3proxy``, Java 17) with its ``filesystem-nio2``
backend: buckets are folders and objects files under ``tmp/data``. It checks AWS
signatures (V2 and V4) against one access key and secret, and it honours
``If-None-Match: *`` on PutObject and CompleteMultipartUpload as it writes (an
atomic create-if-absent, answered with ``412 Precondition Failed``), which is what
Hadoop's S3A sends for a conditional create. Spark reaches it through
``hadoop-aws`` and the AWS SDK bundle, at the versions that match the Hadoop
client jars inside pyspark::

    from tests.support.s3 import S3Server

    with S3Server(tmp_path) as s3:
        s3.make_bucket("runs")
        spark = SparkSession.builder.config(map=s3.spark_conf()).getOrCreate()  # a new JVM
        spark.range(3).write.parquet("s3a://runs/x")
        assert s3.exists("s3a://runs/x/_SUCCESS")
        s3.ls("s3a://runs/x/")  # ['x/_SUCCESS', 'x/part-00000-...snappy.parquet', ...]

Resolution
----------
Nothing is downloaded at import. `S3Server.start` resolves, with ``mvn``, the
server's jar (``org.gaul:s3proxy:<S3PROXY_VERSION>:jar-with-dependencies``) and the
classpath of ``hadoop-aws`` with the AWS SDK bundle (about 600 MB, once) into the
local Maven repository (``~/.m2``), from Maven Central and the repositories of
``SPARK_AP_REPOSITORIES``. The resulting paths are kept under
``~/.cache/spark-ap/`` (``XDG_CACHE_HOME``), so later starts run no Maven at all.
`S3Server.spark_conf` gives those jars to Spark as ``spark.jars``; with
``packages=True`` it gives the Maven coordinates as ``spark.jars.packages``
instead, for Spark's own resolver (which keeps a second copy under ``~/.ivy2.5.2``).

Both must go to a new JVM: a SparkSession that is already running (the suite's
``spark`` fixture) cannot load ``hadoop-aws`` any more, so run Spark code against
this server in a subprocess (``spark-submit`` or a Python process that builds its
own session).

Exclusive create
----------------
With hadoop-aws 3.4.2, ``FileSystem.create(path, overwrite=False)`` only looks first
(HEAD and LIST) and raises ``FileAlreadyExistsException`` from ``create`` if the
object is there: two writers that both look before either closes both succeed, and
the last close wins. The atomic form is the builder,
``fs.createFile(path).overwrite(False).must("fs.option.create.conditional.overwrite", True).build()``:
its PUT carries ``If-None-Match: *``, and the ``close()`` of the writer that comes
second raises ``org.apache.hadoop.fs.s3a.RemoteFileChangedException`` (HTTP 412).
``fs.s3a.create.conditional.enabled`` (default true) switches that off for stores
that do not support it. tests/test_s3_support.py shows both against this server.

Processes
---------
One JVM, started in a session and process group of its own, listening on a port of
127.0.0.1 that the OS picks (port 0; the real one is read from the log). `S3Server.stop`
sends SIGTERM to the group, SIGKILLs whatever is left after ``grace`` seconds and
waits until no process of the group runs; it is registered with `atexit` while the
server runs. Layout under ``tmp``: ``s3proxy.conf``, ``s3proxy.log`` (the JVM's
stdout and stderr) and ``data/`` (the buckets).
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import http.client
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import pyspark

from tests.support.processes import stop_group

__all__ = [
    "AWS_SDK_VERSION",
    "HADOOP_AWS_VERSION",
    "S3A_PACKAGES",
    "S3PROXY_VERSION",
    "S3Server",
    "S3ServerError",
    "s3a_jars",
    "s3proxy_jar",
]

#: The server. 4.x resolves ``If-None-Match`` atomically on the nio2 backends (older ones refused or ignored it).
S3PROXY_VERSION = "4.1.0"
#: Must equal the Hadoop client jars in pyspark (``pyspark/jars/hadoop-client-api-<version>.jar``).
HADOOP_AWS_VERSION = "3.4.2"
#: The AWS SDK v2 bundle that hadoop-aws 3.4.2 is built and tested with.
AWS_SDK_VERSION = "2.29.52"
#: ``spark.jars.packages`` for ``s3a://``.
S3A_PACKAGES = (
    f"org.apache.hadoop:hadoop-aws:{HADOOP_AWS_VERSION}",
    f"software.amazon.awssdk:bundle:{AWS_SDK_VERSION}",
)

_HOST = "127.0.0.1"
_REGION = "us-east-1"
_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spark-ap"
_REPOSITORIES_ENV = "SPARK_AP_REPOSITORIES"
# Pinned so that resolution does not depend on which plugin versions ~/.m2 already holds.
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_STARTED = re.compile(r"Started \S*ServerConnector@\w+\{[^}]*\}\{[\d.]+:(\d+)\}")
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3ServerError(RuntimeError):
    """The server's jars could not be resolved, the server did not come up, or it refused a request."""


# ---------------------------------------------------------------------------------------------- resolution


def _repositories() -> list[str]:
    return [url.strip() for url in os.environ.get(_REPOSITORIES_ENV, "").split(",") if url.strip()]


def _maven_classpath(name: str, dependencies: Sequence[str], cache: Path) -> list[Path]:
    """The jars of ``dependencies`` (``group:artifact:version[:classifier]``, with their runtime dependencies),
    resolved by Maven into the local repository on first use and remembered in ``cache/name/classpath.txt``.

    A dependency with a classifier (a self-contained jar) is taken without its dependencies.
    """
    folder = cache / name
    listing = folder / "classpath.txt"
    if listing.is_file():
        jars = [Path(p) for p in listing.read_text().strip().split(os.pathsep) if p]
        if jars and all(jar.is_file() for jar in jars):
            return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise S3ServerError(f"resolving {', '.join(dependencies)} needs Maven (mvn) on PATH")
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for coordinates in dependencies:
        group, artifact, version, *classifier = coordinates.split(":")
        extra = ""
        if classifier:
            extra = (
                f"<classifier>{classifier[0]}</classifier>"
                "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
            )
        entries.append(
            f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version>{extra}</dependency>"
        )
    repositories = "".join(
        f"<repository><id>extra-{i}</id><url>{url}</url></repository>" for i, url in enumerate(_repositories())
    )
    (folder / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        f"<groupId>spark-ap.tests</groupId><artifactId>{name}</artifactId><version>0</version>"
        "<packaging>pom</packaging>"
        f"<repositories>{repositories}</repositories><dependencies>{''.join(entries)}</dependencies></project>\n"
    )
    partial = folder / "classpath.txt.partial"
    command = [
        mvn, "-q", "-B", "-f", str(folder / "pom.xml"),
        f"{_DEPENDENCY_PLUGIN}:build-classpath", f"-Dmdep.outputFile={partial}",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=folder)
    if out.returncode != 0 or not partial.is_file():
        raise S3ServerError(
            f"mvn could not resolve {', '.join(dependencies)} (exit {out.returncode}); set {_REPOSITORIES_ENV} to a "
            "Maven mirror if Maven Central is out of reach:\n" + (out.stdout + out.stderr)[-3000:]
        )
    partial.replace(listing)
    return [Path(p) for p in listing.read_text().strip().split(os.pathsep) if p]


def s3proxy_jar(version: str = S3PROXY_VERSION, cache: Path = _CACHE) -> Path:
    """S3Proxy's self-contained jar, resolved by Maven on first use."""
    (jar,) = _maven_classpath(f"s3proxy-{version}", [f"org.gaul:s3proxy:{version}:jar-with-dependencies"], cache)
    return jar


def s3a_jars(cache: Path = _CACHE) -> list[Path]:
    """``hadoop-aws`` and the AWS SDK bundle with their runtime dependencies, resolved by Maven on first use.

    Raises
    ------
    S3ServerError
        If pyspark's Hadoop is not :data:`HADOOP_AWS_VERSION`: hadoop-aws must match it exactly.
    """
    bundled = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    found = [jar.name[len("hadoop-client-api-") : -len(".jar")] for jar in bundled]
    if found and HADOOP_AWS_VERSION not in found:
        raise S3ServerError(
            f"pyspark ships Hadoop {', '.join(found)} but tests.support.s3 pins hadoop-aws {HADOOP_AWS_VERSION}; "
            "update HADOOP_AWS_VERSION and AWS_SDK_VERSION (the bundle that hadoop-aws release depends on)"
        )
    return _maven_classpath(f"s3a-hadoop-aws-{HADOOP_AWS_VERSION}", S3A_PACKAGES, cache)


# ---------------------------------------------------------------------------------------------- the server


class S3Server:
    """S3Proxy on 127.0.0.1 with an on-disk backend, as a context manager.

    Parameters
    ----------
    tmp : str or os.PathLike, optional
        Folder for the configuration, the log and the data; created if missing. A
        fresh temporary folder (not removed afterwards) when omitted.
    bucket : str or None, default "spark-ap"
        A bucket to create at start, and the one the helpers use for plain keys.
    resolve_s3a : bool, default True
        Resolve the ``s3a://`` jars at start too (they are needed by `spark_conf`
        anyway; pass False for a server that only the helpers talk to).
    timeout : float, default 120.0
        Seconds to wait for the server to answer, after its jar is resolved.
    heap : str, default "256m"
        The JVM's maximum heap.
    jvm_options : sequence of str, optional
        More options for the JVM, before ``-jar``.
    access_key, secret_key : str
        The credentials the server accepts (and the only ones).

    Attributes
    ----------
    tmp : pathlib.Path
        The folder everything is written to.
    log_file : pathlib.Path
        ``tmp / "s3proxy.log"``.
    data_dir : pathlib.Path
        ``tmp / "data"``: a folder per bucket.
    region : str
        ``us-east-1``, the region requests are signed for.
    resolve_seconds : float or None
        Wall time resolving the jars took in `start` (a few ms once cached).
    startup_seconds : float or None
        Wall time from launching the JVM until the server answered.
    """

    def __init__(
        self,
        tmp: str | os.PathLike[str] | None = None,
        *,
        bucket: str | None = "spark-ap",
        resolve_s3a: bool = True,
        timeout: float = 120.0,
        heap: str = "256m",
        jvm_options: Sequence[str] = (),
        access_key: str = "spark-ap-test",
        secret_key: str = "spark-ap-test-secret",
    ) -> None:
        self.tmp = Path(tmp) if tmp is not None else Path(tempfile.mkdtemp(prefix="s3proxy-"))
        self.log_file = self.tmp / "s3proxy.log"
        self.data_dir = self.tmp / "data"
        self.bucket = bucket
        self.resolve_s3a = resolve_s3a
        self.timeout = timeout
        self.heap = heap
        self.jvm_options = list(jvm_options)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = _REGION
        self.resolve_seconds: float | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.endpoint if self._port is not None else "not running"
        return f"S3Server({state}, tmp={str(self.tmp)!r})"

    # ------------------------------------------------------------------ addresses and settings

    @property
    def port(self) -> int:
        """The port the server listens on, on 127.0.0.1.

        Raises
        ------
        S3ServerError
            If the server is not running.
        """
        if self._port is None:
            raise S3ServerError("the S3 server is not running")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``, for ``fs.s3a.endpoint`` or any S3 client's endpoint URL."""
        return f"http://{_HOST}:{self.port}"

    def url(self, key: str = "", bucket: str | None = None) -> str:
        """``s3a://<bucket>/<key>``, in ``bucket`` or the server's default bucket."""
        return f"s3a://{self._bucket(bucket)}/{key}"

    def hadoop_conf(self) -> dict[str, str]:
        """The ``fs.s3a.*`` settings that point Hadoop's S3A at this server (for a Hadoop ``Configuration``).

        Path-style requests (``http://127.0.0.1:<port>/<bucket>/<key>``, no bucket
        host names), plain HTTP, fixed credentials, a fixed region (no region lookup)
        and few retries, so a test against a dead server fails within seconds.
        Conditional create is left at hadoop-aws's default (on): see the module's tests.
        """
        return {
            "fs.s3a.endpoint": self.endpoint,
            "fs.s3a.endpoint.region": self.region,
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": "false",
            "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
            "fs.s3a.access.key": self.access_key,
            "fs.s3a.secret.key": self.secret_key,
            "fs.s3a.attempts.maximum": "2",
            "fs.s3a.retry.limit": "2",
            "fs.s3a.connection.establish.timeout": "5s",
        }

    def spark_conf(self, *, packages: bool = False) -> dict[str, str]:
        """Settings for a new SparkSession (``builder.config(map=...)``) or ``spark-submit --conf``.

        Parameters
        ----------
        packages : bool, default False
            False: the resolved jars as ``spark.jars`` (local paths; Spark ships them to
            executors). True: their Maven coordinates as ``spark.jars.packages`` (plus
            ``spark.jars.repositories`` from ``SPARK_AP_REPOSITORIES``), resolved by Spark.
            Either replaces a ``spark.jars``/``spark.jars.packages`` of the caller's:
            merge them when the job needs other packages too.

        Returns
        -------
        dict of str to str
            ``spark.hadoop.fs.s3a.*`` (see `hadoop_conf`) and the jars.
        """
        conf = {f"spark.hadoop.{key}": value for key, value in self.hadoop_conf().items()}
        if packages:
            conf["spark.jars.packages"] = ",".join(S3A_PACKAGES)
            if _repositories():
                conf["spark.jars.repositories"] = ",".join(_repositories())
        else:
            conf["spark.jars"] = ",".join(str(jar) for jar in s3a_jars())
        return conf

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> S3Server:
        """Resolve the jars, start the server, wait until it answers and create `bucket`.

        Returns
        -------
        S3Server
            ``self``.

        Raises
        ------
        S3ServerError
            If resolution fails, the JVM exits, or the server does not answer within
            ``timeout`` seconds; the message ends with the log's tail. Whatever was
            started is stopped.
        """
        if self._process is not None:
            raise S3ServerError("the server was already started; use a new S3Server")
        if shutil.which("java") is None:
            raise S3ServerError("S3Proxy needs Java 17 or newer: no java on PATH")
        began = time.monotonic()
        jar = s3proxy_jar()
        if self.resolve_s3a:
            s3a_jars()
        self.resolve_seconds = time.monotonic() - began
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.tmp / "s3proxy.conf"
        config.write_text(
            "\n".join(
                [
                    f"s3proxy.endpoint=http://{_HOST}:0",
                    "s3proxy.authorization=aws-v2-or-v4",
                    f"s3proxy.identity={self.access_key}",
                    f"s3proxy.credential={self.secret_key}",
                    "jclouds.provider=filesystem-nio2",
                    f"jclouds.filesystem.basedir={self.data_dir}",
                ]
            )
            + "\n"
        )
        launched = time.monotonic()
        atexit.register(self.stop)
        try:
            with open(self.log_file, "wb") as log:
                self._process = subprocess.Popen(
                    ["java", f"-Xmx{self.heap}", *self.jvm_options, "-jar", str(jar), "--properties", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.tmp,
                    start_new_session=True,
                )
            self._wait(launched + self.timeout)
            self.startup_seconds = time.monotonic() - launched
            if self.bucket is not None:
                self.make_bucket(self.bucket)
        except BaseException:  # an interrupt or a failed probe must not leave the server running
            self.stop()
            raise
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server's process group and wait until none of it runs; safe to call twice or before `start`.

        Parameters
        ----------
        grace : float, default 5.0
            Seconds between SIGTERM and SIGKILL; 0 kills at once.
        """
        process, self._process = self._process, None
        self._port = None
        atexit.unregister(self.stop)
        if process is None:
            return
        stop_group(process, grace)

    def logs(self, chars: int = 3000) -> str:
        """The last ``chars`` characters of the server's log."""
        if not self.log_file.exists():
            return ""
        return f"----- {self.log_file} -----\n" + self.log_file.read_text(errors="replace")[-chars:]

    def _wait(self, deadline: float) -> None:
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise S3ServerError(f"S3Proxy exited with code {code}\n" + self.logs())
            if self._port is None and self.log_file.exists():
                found = _STARTED.search(self.log_file.read_text(errors="replace"))
                if found:
                    self._port = int(found.group(1))
            if self._port is not None:
                try:
                    status, _, body = self._request("GET", "")
                except OSError:
                    status, body = None, b""
                if status == 200:
                    return
                if status is not None:
                    raise S3ServerError(f"S3Proxy answered ListBuckets with {status}: {body[:500]!r}\n" + self.logs())
            if time.monotonic() > deadline:
                raise S3ServerError(f"S3Proxy did not answer within {self.timeout:g} s\n" + self.logs())
            time.sleep(0.1)

    # ------------------------------------------------------------------ S3 requests without Spark

    def make_bucket(self, name: str) -> None:
        """Create bucket ``name``; a bucket that exists already is left as it is."""
        status, _, body = self._request("PUT", name)
        if status != 200 and _error_code(body) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise S3ServerError(f"PUT /{name}: {status} {body[:500]!r}")

    def ls(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Every key that starts with ``prefix``, sorted, recursively (no delimiter).

        ``prefix`` is a key prefix in ``bucket`` (default: the server's bucket) or an
        ``s3a://bucket/prefix`` URL. Folder markers that S3A writes (keys ending in
        ``/``) are listed too.
        """
        bucket, prefix = self._split(prefix, bucket)
        keys: list[str] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, _, body = self._request("GET", bucket, query=query)
            if status != 200:
                raise S3ServerError(f"ListObjectsV2 /{bucket}?prefix={prefix}: {status} {body[:500]!r}")
            root = ET.fromstring(body)
            keys += [item.text or "" for item in root.iter(f"{_S3_NS}Key")]
            token = root.findtext(f"{_S3_NS}NextContinuationToken")
            if root.findtext(f"{_S3_NS}IsTruncated") != "true" or not token:
                return sorted(keys)

    def read(self, key: str, bucket: str | None = None) -> bytes:
        """The content of object ``key`` (or of an ``s3a://bucket/key`` URL).

        Raises
        ------
        S3ServerError
            If there is no such object.
        """
        bucket, key = self._split(key, bucket)
        status, _, body = self._request("GET", bucket, key)
        if status != 200:
            raise S3ServerError(f"GET /{bucket}/{key}: {status} {body[:500]!r}")
        return body

    def exists(self, key: str, bucket: str | None = None) -> bool:
        """Whether object ``key`` (or ``s3a://bucket/key``) exists; a folder exists only through its marker."""
        bucket, key = self._split(key, bucket)
        status, _, _ = self._request("HEAD", bucket, key)
        if status not in (200, 404):
            raise S3ServerError(f"HEAD /{bucket}/{key}: {status}")
        return status == 200

    def put(self, key: str, data: bytes, bucket: str | None = None, *, if_none_match: bool = False) -> None:
        """Write object ``key`` (or ``s3a://bucket/key``); with ``if_none_match`` only if it does not exist.

        Raises
        ------
        S3ServerError
            On any answer but 200: ``412`` when ``if_none_match`` and the object exists.
        """
        bucket, key = self._split(key, bucket)
        headers = {"if-none-match": "*"} if if_none_match else {}
        status, _, body = self._request("PUT", bucket, key, body=data, headers=headers)
        if status != 200:
            raise S3ServerError(f"PUT /{bucket}/{key}: {status} {body[:500]!r}")

    def _bucket(self, bucket: str | None) -> str:
        if bucket is None and self.bucket is None:
            raise S3ServerError("no bucket given and the server has no default bucket")
        return bucket if bucket is not None else self.bucket  # type: ignore[return-value]

    def _split(self, key: str, bucket: str | None) -> tuple[str, str]:
        """(bucket, key) of a key in ``bucket`` or the default bucket, or of an ``s3a://``/``s3://`` URL."""
        for scheme in ("s3a://", "s3://"):
            if key.startswith(scheme):
                name, _, rest = key[len(scheme) :].partition("/")
                return name, rest
        return self._bucket(bucket), key

    def _request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One path-style request signed with AWS Signature V4; (status, headers, body)."""
        path = "/" + bucket + ("/" + key if key else "") if bucket else "/"
        canonical_uri = quote(path, safe="/-_.~")
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted((query or {}).items())
        )
        now = time.gmtime()
        amz_date, day = time.strftime("%Y%m%dT%H%M%SZ", now), time.strftime("%Y%m%d", now)
        payload = hashlib.sha256(body).hexdigest()
        signed = {k.lower(): v for k, v in (headers or {}).items()}
        signed.update({"host": f"{_HOST}:{self.port}", "x-amz-date": amz_date, "x-amz-content-sha256": payload})
        names = ";".join(sorted(signed))
        canonical = "\n".join(
            [method, canonical_uri, canonical_query, "".join(f"{k}:{signed[k].strip()}\n" for k in sorted(signed))]
            + [names, payload]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        secret = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            secret = hmac.new(secret, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(secret, to_sign.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={names}, Signature={signature}"
        )
        connection = http.client.HTTPConnection(_HOST, self.port, timeout=30)
        try:
            target = canonical_uri + ("?" + canonical_query if canonical_query else "")
            connection.request(method, target, body=body or None, headers=signed)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def _error_code(body: bytes) -> str | None:
    """The ``<Code>`` of an S3 error document."""
    try:
        return ET.fromstring(body).findtext("Code")
    except ET.ParseError:
        return None
