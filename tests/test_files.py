"""spark_ap.files: one rule for paths, and a URI that cannot be served refused in one line before any work."""

from __future__ import annotations

import socket

import pytest

from spark_ap import InvalidInputError
from spark_ap.app.job import main
from spark_ap.files import basename, files_for, is_uri, join, parent
from spark_ap.files.local import LocalFiles


def test_a_path_is_local_unless_it_is_the_uri_of_another_file_system():
    assert not is_uri("runs/x") and not is_uri("/data/runs") and not is_uri("file:///data/runs")
    assert is_uri("hdfs://nn:8020/runs") and is_uri("s3a://bucket/runs") and is_uri("abfss://c@a.dfs.core/x")
    assert join("hdfs://nn:8020/runs/", "x", "state") == "hdfs://nn:8020/runs/x/state"
    assert parent("s3a://b/runs/2026-11-03") == "s3a://b/runs" and basename("s3a://b/runs/2026-11-03/") == "2026-11-03"
    assert isinstance(files_for("file:///tmp"), LocalFiles)  # no session needed


def test_local_writes_are_whole_and_an_exclusive_one_has_one_winner(tmp_path):
    files = files_for(str(tmp_path))
    target = str(tmp_path / "latest.json")
    files.write(target, b"one")
    files.write(target, b"two")  # replaced in one rename
    assert files.read(target) == b"two" and files.names(str(tmp_path)) == ["latest.json"]
    files.write(str(tmp_path / "lock"), b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        files.write(str(tmp_path / "lock"), b"second", exclusive=True)
    assert files.read(str(tmp_path / "lock")) == b"first"


@pytest.mark.parametrize(
    ("uri", "named"),
    [
        ("foo://bucket/runs", "no Hadoop file system is known for it"),
        ("gs://bucket/runs", "com.google.cloud.bigdataoss:gcs-connector"),
        ("abfss://container@account.dfs.core.windows.net/runs", "org.apache.hadoop:hadoop-azure:3.4"),
        ("s3a://bucket/runs", "org.apache.hadoop:hadoop-aws:3.4"),
    ],
)
def test_a_scheme_spark_cannot_load_is_refused_naming_the_package_that_serves_it(spark, uri, named):
    scheme = uri.split("://")[0]
    with pytest.raises(InvalidInputError, match=f"Spark cannot load the file system for {scheme}://") as error:
        files_for(uri, spark)
    assert named in str(error.value) and "\n" not in str(error.value)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the socket is closed


def test_a_namenode_that_does_not_answer_fails_the_command_in_one_line(spark, tmp_path, capsys):
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    output = f"hdfs://127.0.0.1:{_closed_port()}/runs/x"
    assert main(["--input", str(edges), "--output", output]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"spark-ap: error: {output}: cannot reach the namenode 127.0.0.1:"), err
    assert "within 10 s (Connection refused)" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.csv"]  # nothing written anywhere
