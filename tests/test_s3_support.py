"""tests.support.s3 gives a real S3 API on 127.0.0.1: signed requests, conditional puts, and Spark through s3a://.

The suite's session has no hadoop-aws on its classpath, so Spark runs in a child process
(``python -m tests.test_s3_support CONF OUT``, the ``__main__`` block below) that builds its
own session with `S3Server.spark_conf` and reports what it saw as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CHILD_JVM_OPTIONS, ROOT
from tests.support.s3 import S3Server, S3ServerError

# A JVM of its own and, the first time, about 670 MB of jars from Maven: `make test-slow`.
pytestmark = pytest.mark.slow

BUCKET = "lake"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    began = time.monotonic()
    with S3Server(tmp_path_factory.mktemp("s3"), jvm_options=[CHILD_JVM_OPTIONS]) as server:
        print(
            f"\nS3 server {server.endpoint}: jars resolved in {server.resolve_seconds:.1f} s, "
            f"server up in {server.startup_seconds:.1f} s, start() {time.monotonic() - began:.1f} s"
        )
        server.make_bucket(BUCKET)
        yield server


def test_the_helpers_speak_signed_s3_and_a_put_if_absent_is_refused_once_the_key_exists(s3):
    assert s3.ls("s3a://lake/") == []
    s3.put("s3a://lake/notes/a.txt", b"alpha")
    s3.put("notes/b.txt", b"beta")  # the default bucket
    assert s3.ls("s3a://lake/notes/") == ["notes/a.txt"]
    assert s3.read("s3a://lake/notes/a.txt") == b"alpha"
    assert s3.exists("notes/b.txt") and not s3.exists("notes/c.txt")

    s3.put("s3a://lake/lock", b"mine", if_none_match=True)
    with pytest.raises(S3ServerError, match="412.*PreconditionFailed"):
        s3.put("s3a://lake/lock", b"theirs", if_none_match=True)
    assert s3.read("s3a://lake/lock") == b"mine"

    s3.make_bucket(BUCKET)  # again: no error
    wrong = S3Server(s3.tmp, secret_key="wrong")
    wrong._port = s3.port  # the same server, signing with a secret it does not know
    with pytest.raises(S3ServerError, match="403"):
        wrong.read("s3a://lake/lock")


def test_spark_writes_reads_creates_exclusively_and_renames_through_s3a(s3, tmp_path):
    out = tmp_path / "report.json"
    began = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-m", "tests.test_s3_support", json.dumps(s3.spark_conf()), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.monotonic() - began
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-5000:] + s3.logs()
    report = json.loads(out.read_text())
    shown = {key: value for key, value in report.items() if key != "rows"}
    print(f"\nSpark child process {took:.1f} s; its report:\n{json.dumps(shown, indent=1)}")

    assert report["rows"] == [[i, f"p{i}"] for i in range(10)]
    assert s3.exists("s3a://lake/x/_SUCCESS")
    assert any(key.endswith(".parquet") for key in s3.ls("s3a://lake/x/"))

    # FileSystem.create(path, overwrite=false): S3A looks (HEAD, LIST) before it writes.
    plain = report["plain_create"]
    assert plain["first"] == "ok"
    assert plain["second"]["class"] == "org.apache.hadoop.fs.FileAlreadyExistsException"
    assert plain["second"]["at"] == "create"
    # ... which is no lock: two writers that both look before either closes both succeed.
    assert report["plain_race"] == {"first_close": "ok", "second_close": "ok", "content": "second"}

    # createFile(path).overwrite(false) with fs.option.create.conditional.overwrite: a PUT with
    # If-None-Match: *, which the server refuses (412) at close() once the object exists.
    assert report["conditional_capability"] is True
    conditional = report["conditional_create"]
    assert conditional["first"] == "ok"
    assert conditional["second"]["at"] == "close"
    assert conditional["second"]["class"] == "org.apache.hadoop.fs.s3a.RemoteFileChangedException"
    assert "412" in conditional["second"]["message"]
    race = report["conditional_race"]
    assert race["first_close"] == "ok" and race["second_close"]["at"] == "close"
    assert race["content"] == "first"
    assert s3.read("s3a://lake/locks/race-conditional") == b"first"

    assert report["rename"] == {"returned": True, "source_exists": False}
    assert s3.ls("s3a://lake/moved/") == ["moved/a", "moved/sub/b"]
    assert s3.ls("s3a://lake/dir/") == []
    assert report["renamed_table_rows"] == 10


# ---------------------------------------------------------------------------------------------- the child


def _failure(error: Exception, at: str) -> dict:
    """Class, message and causes of a Java exception raised through py4j."""
    java = getattr(error, "java_exception", None)
    if java is None:
        return {"at": at, "class": type(error).__name__, "message": str(error)}
    causes = []
    cause = java.getCause()
    while cause is not None and len(causes) < 5:
        causes.append(f"{cause.getClass().getName()}: {cause.getMessage()}")
        cause = cause.getCause()
    return {"at": at, "class": java.getClass().getName(), "message": java.getMessage(), "causes": causes}


def _write(open_stream, text: str) -> dict | str:
    """Open a stream with ``open_stream()``, write ``text`` and close it; "ok" or where it failed."""
    try:
        stream = open_stream()
    except Exception as error:
        return _failure(error, "create")
    stream.write(bytearray(text.encode()))
    try:
        stream.close()
    except Exception as error:
        return _failure(error, "close")
    return "ok"


def _close(stream) -> dict | str:
    try:
        stream.close()
    except Exception as error:
        return _failure(error, "close")
    return "ok"


def _spark_check(conf: dict[str, str], out: Path) -> None:
    from pyspark.sql import SparkSession

    began = time.monotonic()
    builder = SparkSession.builder.master("local[2]").appName("s3a-check")
    for key, value in {**conf, "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    seconds = {"session": time.monotonic() - began}
    report: dict = {"seconds": seconds}

    base = f"s3a://{BUCKET}"
    rows = [(i, f"p{i}") for i in range(10)]
    step = time.monotonic()
    spark.createDataFrame(rows, "id long, name string").write.parquet(f"{base}/x")
    seconds["parquet_write"] = time.monotonic() - step
    step = time.monotonic()
    report["rows"] = [list(row) for row in spark.read.parquet(f"{base}/x").orderBy("id").collect()]
    seconds["parquet_read"] = time.monotonic() - step
    step = time.monotonic()

    jvm = spark._jvm
    Path_ = jvm.org.apache.hadoop.fs.Path
    fs = Path_(base + "/").getFileSystem(spark._jsc.hadoopConfiguration())
    report["fs_class"] = fs.getClass().getName()

    def plain(path: str):
        return lambda: fs.create(Path_(path), False)

    def conditional(path: str):
        return lambda: (
            fs.createFile(Path_(path)).overwrite(False).must("fs.option.create.conditional.overwrite", True).build()
        )

    def content(path: str) -> str:
        stream = fs.open(Path_(path))
        try:
            return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode()
        finally:
            stream.close()

    report["plain_create"] = {"first": _write(plain(f"{base}/locks/plain"), "first")}
    report["plain_create"]["second"] = _write(plain(f"{base}/locks/plain"), "second")

    report["conditional_capability"] = fs.hasPathCapability(Path_(base + "/"), "fs.option.create.conditional.overwrite")
    report["conditional_create"] = {"first": _write(conditional(f"{base}/locks/conditional"), "first")}
    report["conditional_create"]["second"] = _write(conditional(f"{base}/locks/conditional"), "second")

    # Two writers that both open before either closes.
    for name, opener in (("plain_race", plain), ("conditional_race", conditional)):
        path = f"{base}/locks/race-{name.split('_')[0]}"
        first, second = opener(path)(), opener(path)()
        first.write(bytearray(b"first"))
        second.write(bytearray(b"second"))
        report[name] = {"first_close": _close(first), "second_close": _close(second), "content": content(path)}

    for path in ("dir/a", "dir/sub/b"):
        assert _write(plain(f"{base}/{path}"), path) == "ok"
    report["rename"] = {
        "returned": fs.rename(Path_(f"{base}/dir"), Path_(f"{base}/moved")),
        "source_exists": fs.exists(Path_(f"{base}/dir")),
    }
    seconds["filesystem"] = time.monotonic() - step
    # A table of its own to rename, x staying for the test's own look: renaming x away and back
    # failed now and then, S3Proxy's folders keeping an empty x/_temporary/0 behind as a directory.
    spark.createDataFrame(rows, "id long, name string").write.parquet(f"{base}/y")
    fs.rename(Path_(f"{base}/y"), Path_(f"{base}/y-renamed"))
    report["renamed_table_rows"] = spark.read.parquet(f"{base}/y-renamed").count()
    seconds["total"] = time.monotonic() - began
    report["seconds"] = {key: round(value, 1) for key, value in seconds.items()}
    spark.stop()
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    _spark_check(json.loads(sys.argv[1]), Path(sys.argv[2]))
