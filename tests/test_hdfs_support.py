"""tests.support.hdfs: a real HDFS (Hadoop's MiniDFSCluster) that Spark writes and reads through hdfs://."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.hdfs import HdfsCluster, HdfsClusterError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hdfs(tmp_path_factory):
    with HdfsCluster(tmp_path_factory.mktemp("hdfs")) as cluster:
        yield cluster


def _cluster_processes(tmp: Path) -> list[int]:
    """Pids of live processes running this test's HdfsMiniCluster.java (other tests may run their own)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"HdfsMiniCluster.java") for a in args) and any(str(tmp).encode() in a for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


def _parquet_rows(data: bytes) -> list[tuple]:
    columns = pq.read_table(io.BytesIO(data)).to_pydict().values()
    return list(zip(*columns, strict=True))


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_spark_writes_and_reads_parquet_on_hdfs(spark, hdfs):
    table = hdfs.url("/tables/points.parquet")
    assert table.startswith("hdfs://127.0.0.1:")
    frame = spark.createDataFrame([(i, i / 2) for i in range(20)], "id long, x double")
    frame.coalesce(2).write.parquet(table)

    assert sorted(spark.read.parquet(table).collect()) == sorted(frame.collect())

    # The same files, seen through WebHDFS without Spark.
    assert hdfs.exists(table + "/_SUCCESS")
    assert hdfs.read("/tables/points.parquet/_SUCCESS") == b""
    assert not hdfs.exists("/tables/missing.parquet")
    status = hdfs.status("/tables/points.parquet")
    assert (status["type"], status["owner"]) == ("DIRECTORY", hdfs.user)
    parts = [name for name in hdfs.ls("/tables/points.parquet") if name.endswith(".parquet")]
    assert len(parts) == 2
    rows = [row for part in parts for row in _parquet_rows(hdfs.read(f"/tables/points.parquet/{part}"))]
    assert sorted(rows) == [(i, i / 2) for i in range(20)]


def test_permissions_are_checked(spark, hdfs):
    hdfs.write("/mine/note.txt", b"hello")
    assert hdfs.read(hdfs.url("/mine/note.txt")) == b"hello"
    assert hdfs.ls("/mine") == ["note.txt"]
    with pytest.raises(FileExistsError):
        hdfs.write("/mine/note.txt", b"again", overwrite=False)
    with pytest.raises(FileNotFoundError):
        hdfs.read("/mine/missing.txt")

    hdfs.mkdirs("/locked", mode=0o555)
    assert hdfs.status("/locked")["permission"] == "555"
    with pytest.raises(PermissionError, match="Permission denied"):
        hdfs.write("/locked/file.txt", b"x")
    with pytest.raises(Exception, match="Permission denied"):
        spark.range(3).write.parquet(hdfs.url("/locked/t.parquet"))
    # Another user may not write into the test user's root folder.
    with pytest.raises(PermissionError, match="user=someone-else"):
        hdfs.write("/theirs.txt", b"x", user="someone-else")
    hdfs.chmod("/locked", 0o755)
    hdfs.write("/locked/file.txt", b"x")


def test_start_and_stop_leave_nothing_running(tmp_path):
    cluster = HdfsCluster(tmp_path)
    with pytest.raises(HdfsClusterError, match="not running"):
        cluster.uri  # noqa: B018
    with cluster:
        pid, port, http_port = cluster.pid, cluster.port, cluster.http_port
        assert cluster.uri == f"hdfs://127.0.0.1:{port}"
        assert cluster.web_url == f"http://127.0.0.1:{http_port}"
        assert cluster.hadoop_conf() == {"spark.hadoop.dfs.replication": "1"}
        assert cluster.hadoop_conf(default_fs=True)["spark.hadoop.fs.defaultFS"] == cluster.uri
        assert cluster.startup_seconds is not None and cluster.startup_seconds < cluster.timeout
        assert _cluster_processes(tmp_path) == [pid]
        assert _accepts(port) and _accepts(http_port)
        assert cluster.ls("/") == []
        print(f"HDFS came up in {cluster.startup_seconds:.1f} s")
    assert cluster.pid is None
    assert _cluster_processes(tmp_path) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the JVM's process group is empty
    assert not _accepts(port) and not _accepts(http_port)
    cluster.stop()  # a second stop does nothing
    assert "HDFS_READY" in cluster.log_file.read_text()
