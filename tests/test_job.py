"""The spark-ap command and the spark-submit entry point give the library's clusters."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_features, edges_from_matrix, similarity_matrix
from spark_ap.job import parser, settings
from tests.conftest import assignment_rows, written_rows

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_spark_ap_command_on_an_edge_csv(spark, tmp_path):
    X, _ = make_blobs(30, centers=3, random_state=6)
    edges = edges_from_matrix(spark, similarity_matrix(X)).toDF("a", "b", "sim")
    csv = tmp_path / "edges.csv"
    edges.toPandas().to_csv(csv, index=False)
    out = tmp_path / "run"
    done = run(
        [str(BIN / "spark-ap"), "--input", str(csv), "--output", str(out), "--master", "local[2]"]
        + ["--src-col", "a", "--dst-col", "b", "--weight-col", "sim", "--damping", "0.6", "--preference", "min"]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = AffinityPropagation(srcCol="a", dstCol="b", weightCol="sim", damping=0.6, preference="min").run(edges)
    assert written_rows(out) == assignment_rows(expected)
    assert (out / "summary.json").exists() and (out / "convergence.png").exists()


def test_spark_submit_on_a_feature_csv(spark, tmp_path):
    X, _ = make_blobs(40, centers=3, random_state=8)
    csv = tmp_path / "points.csv"
    pd.DataFrame({"id": np.arange(40), "x": X[:, 0], "y": X[:, 1]}).to_csv(csv, index=False)
    out = tmp_path / "run"
    done = run(
        [str(BIN / "spark-submit"), "--master", "local[2]", str(ROOT / "scripts" / "spark_ap_job.py")]
        + [
            "--input",
            str(csv),
            "--output",
            str(out),
            "--kind",
            "features",
            "--config",
            str(ROOT / "conf" / "spark-ap.yaml"),
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    features = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    expected = AffinityPropagation().run(edges_from_features(features))
    assert written_rows(out) == assignment_rows(expected)
    assert (out / "clusters.png").stat().st_size > 10_000


def test_settings_layer_defaults_file_and_command_line(tmp_path):
    config = tmp_path / "ap.yaml"
    config.write_text("ap:\n  damping: 0.8\n  maxIter: 50\n  preference: '0.2'\ninput:\n  kind: features\n")
    args = parser().parse_args(["--input", "x", "--output", "y", "--config", str(config), "--max-iter", "70"])
    merged = settings(args)
    assert merged["ap"] == {"damping": 0.8, "maxIter": 70, "preference": "0.2"}
    assert merged["input"] == {"kind": "features", "metric": "sqeuclidean"}
    numbers = parser().parse_args(["--input", "x", "--output", "y", "--preference", "-12.5"])
    assert settings(numbers)["ap"]["preference"] == -12.5


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--input", "/nonexistent/edges.csv", "--output", "{tmp}/run"], "does not exist"),
        (["--input", "{tmp}", "--output", "{tmp}"], "already exists"),
    ],
)
def test_bad_paths_fail_with_a_clear_message(tmp_path, extra, message):
    done = run([str(BIN / "spark-ap"), "--master", "local[1]"] + [a.format(tmp=tmp_path) for a in extra])
    assert done.returncode != 0
    assert "spark-ap: error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr
