"""Run folders hold what the run computed, written all at once."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, InvalidInputError, edges_from_matrix, similarity_matrix
from spark_ap.app.export import export_run
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
