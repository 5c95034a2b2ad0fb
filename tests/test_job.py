"""The spark-ap command gives the library's clusters; its settings layer, and its clear errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from spark_ap import (
    AffinityPropagation,
    AffinityPropagationModel,
    edges_from_features,
    edges_from_matrix,
    similarity_matrix,
)
from spark_ap.app.config import DEFAULT_CONFIG
from spark_ap.app.job import main, parser, settings
from tests.conftest import assignment_rows, written_rows

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_the_command_on_an_edge_csv_with_columns_of_its_own(spark, tmp_path):
    X, _ = make_blobs(30, centers=3, random_state=6)
    edges = edges_from_matrix(spark, similarity_matrix(X)).toDF("a", "b", "sim")
    csv = tmp_path / "edges.csv"
    edges.toPandas().to_csv(csv, index=False)
    out = tmp_path / "run"
    # In-process, on the suite's session: the command is this function;
    # test_a_missing_input_fails_before_spark_starts runs the command.
    columns = ["--src-col", "a", "--dst-col", "b", "--weight-col", "sim"]
    assert main(["--input", str(csv), "--output", str(out), *columns, "--damping", "0.6", "--preference", "min"]) == 0
    expected = AffinityPropagation(srcCol="a", dstCol="b", weightCol="sim", damping=0.6, preference="min").run(edges)
    assert written_rows(out) == assignment_rows(expected)
    assert (out / "summary.json").exists() and (out / "convergence.png").exists()


def test_the_command_on_a_feature_csv_with_the_settings_file(spark, tmp_path):
    # In-process too: spark-submit runs this job in tests/test_resume.py (plain, no
    # --packages, with this settings file), tests/test_dag.py (a feature CSV, with --packages
    # from the DAG) and tests/test_standalone_cluster.py.
    X, _ = make_blobs(40, centers=3, random_state=8)
    csv = tmp_path / "points.csv"
    pd.DataFrame({"id": np.arange(40), "x": X[:, 0], "y": X[:, 1]}).to_csv(csv, index=False)
    out = tmp_path / "run"
    config = DEFAULT_CONFIG
    assert main(["--input", str(csv), "--output", str(out), "--kind", "features", "--config", str(config)]) == 0
    features = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])
    expected = AffinityPropagation().run(edges_from_features(features))
    assert written_rows(out) == assignment_rows(expected)
    assert (out / "clusters.png").stat().st_size > 10_000
    # The run's model, saved in the run folder, assigns the points as the run did (a complete graph).
    model = AffinityPropagationModel.load(str(out / "model"))
    assert sorted(tuple(r) for r in model.transform(features).select("id", "cluster", "exemplar").collect()) == (
        written_rows(out)
    )


def test_settings_layer_defaults_file_and_command_line(tmp_path):
    config = tmp_path / "ap.yaml"
    config.write_text(
        "ap:\n  damping: 0.8\n  maxIter: 50\n  preference: quantile:0.2\ninput:\n  kind: features\n"
        "features:\n  numNeighbors: 7\n  resolution: 500\n"
    )
    args = parser().parse_args(
        ["--input", "x", "--output", "y", "--config", str(config), "--max-iter", "70", "--resolution", "900"]
    )
    merged = settings(args)
    assert merged["ap"] == {"damping": 0.8, "maxIter": 70, "preference": "quantile:0.2"}
    assert merged["features"] == {"numNeighbors": 7, "resolution": 900}
    assert merged["input"] == {"kind": "features", "metric": "sqeuclidean"}
    numbers = parser().parse_args(["--input", "x", "--output", "y", "--preference", "-12.5"])
    assert settings(numbers)["ap"]["preference"] == -12.5


def test_a_missing_input_fails_before_spark_starts(tmp_path):
    done = run([str(BIN / "spark-ap"), "--input", "/nonexistent/edges.csv", "--output", str(tmp_path / "run")])
    assert done.returncode == 2
    assert "spark-ap: error: The input /nonexistent/edges.csv does not exist" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def _garbage_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "edges.parquet"
    path.write_bytes(b"this is not parquet")
    return path


def _edges_csv(tmp_path: Path) -> Path:
    path = tmp_path / "edges.csv"
    path.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    return path


@pytest.mark.parametrize(
    "make_input, output_holds, message",
    [
        (_garbage_parquet, None, "Could not read the input"),
        (_edges_csv, {"notes.txt": "mine"}, "1 file(s) that are not from a spark-ap run, for example 'notes.txt'"),
        (_edges_csv, {"summary.json": "{}"}, "already holds a finished run"),
    ],
)
def test_bad_paths_fail_with_a_clear_message(spark, tmp_path, capsys, make_input, output_holds, message):
    # In-process, on the suite's Spark session: the job's checks are the same code.
    out = tmp_path / "run"
    for name, text in (output_holds or {}).items():
        out.mkdir(exist_ok=True)
        (out / name).write_text(text)
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    assert main(["--input", str(make_input(tmp_path)), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spark-ap: error: ") and message in err, err
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == before


def _write(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)


EDGES = "src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n"


@pytest.mark.parametrize(
    "files, links, argv, message",
    [
        # Flags: NaN, infinities, wrong types, blanks (argparse's own refusals in one line too).
        ({"e.csv": EDGES}, {}, ["--input", "e.csv", "--damping", "nan"], "--damping must be in [0.5, 1); got nan"),
        (
            {"e.csv": EDGES},
            {},
            ["--input", "e.csv", "--damping", "abc"],
            "argument --damping: invalid float value: 'abc'",
        ),
        ({"e.csv": EDGES}, {}, ["--input", "e.csv", "--max-iter", ""], "argument --max-iter: invalid int value: ''"),
        (
            {"e.csv": EDGES},
            {},
            ["--input", "e.csv", "--max-iter", "2.5"],
            "argument --max-iter: invalid int value: '2.5'",
        ),
        ({"e.csv": EDGES}, {}, ["--input", "e.csv", "--preference", "inf"], "--preference must be finite; got inf"),
        ({"e.csv": EDGES}, {}, ["--input", "e.csv", "--preference", ""], "--preference must be a number, 'median'"),
        ({"e.csv": EDGES}, {}, ["--input", "e.csv", "--src-col", ""], "--src-col must not be empty; got ''"),
        ({"e.csv": EDGES}, {}, ["--input", "e.csv", "--seed", "-1"], "--seed must be >= 0; got -1"),
        ({"e.csv": EDGES}, {}, ["--input", "e.csv", "--engine", ""], "argument --engine: invalid choice: ''"),
        # Paths: a file where a folder is meant, links to nothing, folders of mixed files.
        ({"notes.txt": "hi"}, {}, ["--input", "notes.txt"], "notes.txt must be a .csv or .parquet file"),
        (
            {},
            {"gone.csv": "nowhere.csv"},
            ["--input", "gone.csv"],
            "gone.csv is a link to nowhere.csv, which does not exist",
        ),
        (
            {"in/a.csv": EDGES, "in/b.parquet": "", "in/README.txt": "about"},
            {},
            ["--input", "in"],
            "The input folder in holds 2 file(s) that are not .parquet, for example 'README.txt'",
        ),
        (
            {"in/a.csv": EDGES, "in/part-1.csv": EDGES, "in/README.txt": "about"},
            {},
            ["--input", "in", "--format", "csv"],
            "The input folder in holds 1 file(s) that are not .csv, for example 'README.txt'",
        ),
        (
            {"in/a.csv": EDGES},
            {},
            ["--input", "in"],
            "holds 1 file(s) that are not .parquet, for example 'a.csv'; keep one table's files in its folder (a "
            "folder is read as Parquet unless --format csv)",
        ),
        ({"in/_SUCCESS": ""}, {}, ["--input", "in"], "The input folder in holds no .parquet files"),
        ({"e.csv": EDGES, "run": "a file"}, {}, ["--input", "e.csv"], "The output run is a file, not a folder"),
        ({"e.csv": EDGES}, {"run": "elsewhere"}, ["--input", "e.csv"], "The output run is a link to elsewhere, which"),
    ],
)
def test_the_command_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, files, links, argv, message):
    # In-process: every row is refused before Spark starts (the session would be this suite's).
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, files)
    for name, target in links.items():
        (tmp_path / name).symlink_to(target)
    before = sorted((str(p), p.is_symlink()) for p in tmp_path.rglob("*"))
    try:
        code = main([*argv, "--output", "run"] if "--output" not in argv else argv)
    except SystemExit as exit:  # argparse's refusals
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("spark-ap: error: ") and message in line, line
    assert sorted((str(p), p.is_symlink()) for p in tmp_path.rglob("*")) == before  # nothing written
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "nowhere.csv").exists()


@pytest.mark.parametrize(
    "csv, message",
    [
        # Ids beyond the 64-bit range are read as decimals: refused, never wrapped around.
        (
            f"src,dst,similarity\n{2**63},1,-1.0\n1,{2**63},-1.0\n",
            f"column 'src' has type decimal(19,0), whole numbers beyond the 64-bit range (-2**63 to 2**63-1) of "
            f"integer ids; for example {{'src': Decimal('{2**63}')}}. Read the ids as strings.",
        ),
        ("src,dst,similarity\n1.0,2.5,-1.0\n2.5,1.0,-1.0\n", "column 'src' has type double; ids must be integers"),
        (
            "src,dst,similarity\n0,1,-1e308\n1,0,-1.0\n",
            "1 of 2 edges have a similarity in 'similarity' beyond ±",
        ),
        ("src,dst,similarity\n0,1,-1.0\n1,0,NaN\n", "1 of 2 edges have a null, NaN or infinite similarity"),
    ],
)
def test_the_command_refuses_bad_data_in_one_line_and_writes_nothing(spark, tmp_path, capsys, csv, message):
    (tmp_path / "edges.csv").write_text(csv)
    out = tmp_path / "run"
    assert main(["--input", str(tmp_path / "edges.csv"), "--output", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("spark-ap: error: ") and message in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "ids",
    [
        ["α", "β", "γ", "δ", "ε", "ζ" + "x" * 10_000],  # unicode, and a 10,000-character id (ascending)
        [-(2**63), -(2**63) + 1, -1, 0, 2**63 - 2, 2**63 - 1],  # the ends of the long range, read as longs
    ],
)
def test_the_command_clusters_ids_of_any_alphabet_and_size_as_scikit_learn(spark, tmp_path, ids):
    from sklearn.cluster import AffinityPropagation as SklearnAP

    X = np.array([[0.0, 0.0], [0.3, 0.1], [0.1, 0.4], [10.0, 10.0], [10.2, 9.9], [9.8, 10.3]])
    S = similarity_matrix(X)
    edges = [(ids[i], ids[j], S[i, j]) for i in range(6) for j in range(6) if i != j]
    csv = tmp_path / "edges.csv"
    pd.DataFrame(edges, columns=["src", "dst", "similarity"]).to_csv(csv, index=False)
    out = tmp_path / "run"
    assert main(["--input", str(csv), "--output", str(out), "--noise", "sklearn"]) == 0
    sk = SklearnAP(affinity="precomputed", preference=float(np.median(S[~np.eye(6, dtype=bool)])), random_state=0)
    sk.fit(S)
    written = {row[0]: row[2] for row in written_rows(out)}
    assert written == {ids[i]: ids[sk.cluster_centers_indices_[sk.labels_[i]]] for i in range(6)}
