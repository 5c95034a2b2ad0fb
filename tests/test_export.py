"""Run folders hold what the run computed, written all at once."""

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, InvalidInputError, edges_from_matrix, similarity_matrix
from spark_ap.app.export import PLOT_POINTS, export_run, plot_sample
from spark_ap.estimators.affinity import AffinityPropagationResult
from tests.conftest import assignment_rows, png_size, written_rows


def test_run_folder(spark, tmp_path):
    X, _ = make_blobs(40, centers=3, random_state=4)
    result = AffinityPropagation(preference="min").run(edges_from_matrix(spark, similarity_matrix(X)))
    points = pd.DataFrame({"id": np.arange(40), "x": X[:, 0], "y": X[:, 1]})
    out = Path(export_run(result, tmp_path / "run", params={"preference": "min"}, points=points))

    assert sorted(p.name for p in out.iterdir()) == [
        "assignments.parquet",
        "clusters.png",
        "convergence.png",
        "exemplars.csv",
        "history.csv",
        "summary.json",
    ]
    assert written_rows(out) == assignment_rows(result)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clusters"] == result.exemplars.count() == len(pd.read_csv(out / "exemplars.csv"))
    assert summary["iterations"] == result.numIterations == len(pd.read_csv(out / "history.csv"))
    assert summary["points"] == 40 and summary["converged"] is True
    assert png_size(out / "clusters.png") == (700, 700)
    assert png_size(out / "convergence.png") == (800, 450)
    # Nothing is left beside it, and no staging folder inside it.
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    with pytest.raises(InvalidInputError, match="already holds a finished run"):
        export_run(result, out)


def test_summary_holds_no_credentials(spark, tmp_path):
    result = AffinityPropagation().run(
        edges_from_matrix(spark, -np.abs(np.subtract.outer(np.arange(3.0), np.arange(3))))
    )
    params = {"input": "s3a://AKIAEXAMPLE:wJalrXUtnFEMI%2FK7MDENG@bucket/edges.parquet", "spark.password": "hunter2"}
    out = Path(export_run(result, tmp_path / "run", params=params))
    text = (out / "summary.json").read_text()
    assert "wJalrXUtnFEMI" not in text and "AKIAEXAMPLE" not in text and "hunter2" not in text
    assert json.loads(text)["params"]["input"] == "s3a://***@bucket/edges.parquet"


class _Collected:
    """Rows and bytes that reach the driver through a DataFrame's collect, toPandas, toArrow and
    toLocalIterator, while it is installed (each wraps the real method)."""

    def __init__(self, monkeypatch):
        from pyspark.sql.classic.dataframe import DataFrame

        self.rows = self.bytes = self._depth = 0
        for name in ("collect", "toPandas", "toArrow", "toLocalIterator"):
            monkeypatch.setattr(DataFrame, name, self._counting(getattr(DataFrame, name)))

    def _counting(self, real):
        def counted(frame, *args, **kwargs):
            self._depth += 1  # toPandas may collect: count what reaches the caller, once
            try:
                out = real(frame, *args, **kwargs)
            finally:
                self._depth -= 1
            if self._depth:
                return out
            if isinstance(out, pd.DataFrame):
                self.rows += len(out)
                self.bytes += int(out.memory_usage(deep=True).sum())
            elif hasattr(out, "num_rows"):  # an Arrow table
                self.rows += out.num_rows
                self.bytes += out.nbytes
            else:
                out = list(out)
                self.rows += len(out)
                self.bytes += len(pickle.dumps(out))
            return out

        return counted


def _clusters_of(spark, n: int, k: int) -> tuple[AffinityPropagationResult, DataFrame]:
    """A result of ``n`` points in ``k`` clusters (point i in cluster i % k, whose exemplar is point
    i % k), put together from Spark tables, and the points' coordinates."""
    from pyspark.sql import functions as F

    from spark_ap.engines.assign import exemplar_table

    points = spark.range(n).select("id", F.rand(1).alias("x"), F.rand(2).alias("y"))
    assignments = spark.range(n).select(
        "id", (F.col("id") % k).cast("int").alias("cluster"), (F.col("id") % k).alias("exemplar")
    )
    history = pd.DataFrame({"iteration": [1, 2], "exemplars": [k, k], "changed": [n, 0]})
    result = AffinityPropagationResult(assignments, exemplar_table(assignments), 2, True, history, None, -1.0, n, n)
    return result, points


def test_an_export_brings_the_driver_rows_per_cluster_not_per_point(spark, tmp_path, monkeypatch):
    collected = {}
    for n in (10_000, 100_000):
        result, points = _clusters_of(spark, n, 20)
        with monkeypatch.context() as patch:
            counter = _Collected(patch)
            out = Path(export_run(result, tmp_path / f"run-{n}", points=points))
        collected[n] = (counter.rows, counter.bytes)
        # Written in full all the same: every point, by the executors.
        assert len(pd.read_parquet(out / "assignments.parquet")) == n
        assert json.loads((out / "summary.json").read_text())["clusters"] == 20
    (rows_small, bytes_small), (rows_large, bytes_large) = collected[10_000], collected[100_000]
    # The plot's sample is bounded, the rest is a row per cluster, file or count: ten times the
    # points, and the same rows and about the same bytes.
    assert rows_small <= PLOT_POINTS + 100 and rows_large <= PLOT_POINTS + 100, collected
    assert abs(rows_large - rows_small) <= 20 and bytes_large < 1.2 * bytes_small, collected


def test_clusters_png_says_when_it_draws_a_sample(spark, tmp_path):
    result, points = _clusters_of(spark, PLOT_POINTS + 1000, 3)
    drawn, centers = plot_sample(points, result)
    assert len(drawn) == PLOT_POINTS and sorted(centers["id"]) == [0, 1, 2]
    everything, _ = plot_sample(points.limit(100), _clusters_of(spark, 100, 3)[0])
    assert len(everything) == 100
