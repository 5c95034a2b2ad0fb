"""Params and paths are data, never code; runs write only where they are told; no secrets leak."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spark_ap import InvalidInputError
from spark_ap.app.job import main
from spark_ap.app.pipeline import folder_date, run_folder


@pytest.mark.parametrize(
    "date, name",
    [
        (datetime(2026, 12, 1, tzinfo=timezone.utc), "2026-12-01"),
        (datetime(2026, 12, 1, 6, 30, tzinfo=timezone.utc), "2026-12-01T063000Z"),
        (datetime(2026, 12, 1, 7, 30, 5, 12, tzinfo=timezone(timedelta(hours=1))), "2026-12-01T063005.000012Z"),
    ],
)
def test_a_dag_run_folder_is_named_by_its_date_in_utc_and_read_back(tmp_path, date, name):
    folder = Path(run_folder(str(tmp_path / "runs"), date))
    assert folder == tmp_path / "runs" / name and ":" not in name  # Hadoop reads a colon as a scheme
    assert folder_date(name) == date
    assert folder_date("run-1") is None and folder_date("latest") is None


def _edges(tmp_path: Path) -> str:
    path = tmp_path / "edges.csv"
    path.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    return str(path)


def test_params_are_not_evaluated(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "__import__('pathlib').Path('pwned').touch() or 0.5"
    assert main(["--input", _edges(tmp_path), "--output", "run", "--preference", code]) == 2
    assert "preference must be a number, 'median', 'min', or a quantile" in capsys.readouterr().err
    config = tmp_path / "evil.yaml"
    config.write_text("ap: !!python/object/apply:pathlib.Path.touch [pwned]\n")
    assert main(["--input", _edges(tmp_path), "--output", "run", "--config", str(config)]) == 2
    assert "is not a plain YAML settings file" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_errors_do_not_print_credentials(tmp_path):
    # The job as a process: its whole output is read, the JVM's log lines and Python's logging
    # included (neither reaches capsys in this process).
    import subprocess

    from tests.conftest import BIN

    uri = "s3a://AKIAEXAMPLE:wJalrXUtnFEMI%2FK7MDENG@bucket/edges.parquet"
    config = tmp_path / "debug.yaml"
    config.write_text('spark:\n  spark.log.level: "DEBUG"\n')
    job = subprocess.run(
        [str(BIN / "spark-ap"), "--input", uri, "--output", str(tmp_path / "run"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 2
    (err,) = [line for line in job.stderr.splitlines() if line.startswith("spark-ap: error:")]
    # Refused before any work, naming the scheme's package: this session has no hadoop-aws.
    assert "s3a://***@bucket/edges.parquet: Spark cannot load the file system for s3a://" in err, err
    assert "org.apache.hadoop:hadoop-aws" in err
    everything = job.stdout + job.stderr
    assert "DEBUG" in everything  # the JVM's own log lines are in what is read
    for secret in ("AKIAEXAMPLE", "wJalrXUtnFEMI", "K7MDENG"):
        assert secret not in everything, [line for line in everything.splitlines() if secret in line][:3]


def test_skip_existing_refuses_a_folder_holding_another_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"params": {"damping": 0.9}}))
    assert main(["--input", _edges(tmp_path), "--output", str(out), "--skip-existing"]) == 2
    assert "already holds another run (other params or input)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


@pytest.mark.parametrize("summary", ["{", "[1, 2]"])
def test_skip_existing_reruns_a_finished_run_whose_summary_cannot_be_read(spark, tmp_path, caplog, summary):
    # The DAG passes --skip-existing on every try: an unreadable summary must not fail them all.
    import logging

    out = tmp_path / "run"
    args = ["--input", _edges(tmp_path), "--output", str(out), "--preference", "-2", "--skip-existing"]
    assert main(args) == 0
    (out / "summary.json").write_text(summary)
    with caplog.at_level(logging.WARNING, logger="spark_ap"):
        assert main(args) == 0
    assert "summary.json cannot be read" in caplog.text
    (aside,) = out.glob(".damaged-*")  # the damaged files are kept, the run is whole again
    assert (aside / "summary.json").read_text() == summary
    assert json.loads((out / "summary.json").read_text())["params"]["preference"] == -2.0


def test_skip_existing_reruns_a_finished_run_whose_files_are_damaged(spark, tmp_path, caplog):
    import logging

    import pandas as pd

    out = tmp_path / "run"
    args = ["--input", _edges(tmp_path), "--output", str(out), "--preference", "-2", "--skip-existing"]
    assert main(args) == 0
    written = pd.read_parquet(out / "assignments.parquet")
    assert main(args) == 0  # intact: nothing to do
    assert not list(out.glob(".damaged-*"))

    part = min((out / "assignments.parquet").glob("part-*"))  # the executors' files
    part.write_bytes(part.read_bytes()[:-20])
    damaged = sorted(p.relative_to(out) for p in out.rglob("*") if ".crc" not in p.name)

    class DuringTheRerun(logging.Handler):
        """What a reader of the folder (latest, the stream) finds while the rerun clusters."""

        seen = None

        def emit(self, record):
            if record.getMessage().startswith("affinity propagation: 2 vertices") and self.seen is None:
                self.seen = sorted(p.relative_to(out) for p in out.rglob("*") if ".crc" not in p.name)

    during = DuringTheRerun()
    logging.getLogger("spark_ap").addHandler(during)
    try:
        with caplog.at_level(logging.INFO, logger="spark_ap"):
            assert main(args) == 0
    finally:
        logging.getLogger("spark_ap").removeHandler(during)
    assert f"assignments.parquet/{part.name} is damaged" in caplog.text
    # The finished run stayed whole in place while it was rebuilt (beside it, with its saves).
    assert during.seen is not None
    assert [p for p in during.seen if p.parts[0] != "state" and not p.parts[0].startswith(".")] == damaged
    (aside,) = out.glob(".damaged-*")  # nothing lost
    assert (aside / "summary.json").is_file() and (aside / "assignments.parquet" / part.name).is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "assignments.parquet"), written)


def test_latest_points_at_a_finished_run_and_is_replaced_atomically(tmp_path):
    from spark_ap.app.pipeline import publish_latest

    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
    with pytest.raises(InvalidInputError, match="no finished run"):
        publish_latest(first)
    assert not (tmp_path / "latest").exists()
    (first / "summary.json").write_text("{}")
    (second / "summary.json").write_text("{}")
    assert Path(publish_latest(first)).resolve() == first.resolve()
    assert Path(publish_latest(second)).resolve() == second.resolve()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "a",
        "b",
        "latest",
        "latest.json",
    ]
    # The pointer any file system can hold names the same folder as the link.
    assert json.loads((tmp_path / "latest.json").read_text()) == {"folder": "b", "uri": str(second), "date": None}


@pytest.mark.parametrize("order", ["older last", "newer last"])
def test_latest_never_moves_back_to_an_older_date(tmp_path, order):
    # A backfill of last month, or an older run that finishes after a newer one.
    from spark_ap.app.pipeline import publish_latest

    dates = [datetime(2026, 11, day, tzinfo=timezone.utc) for day in (3, 1, 2)] + [datetime(2026, 11, 2, 6, 0)]
    folders = [Path(run_folder(str(tmp_path), date.replace(tzinfo=timezone.utc))) for date in dates]
    for folder in folders:
        folder.mkdir(exist_ok=True)
        (folder / "summary.json").write_text("{}")
    newest = tmp_path / "2026-11-03"
    finishing = folders if order == "older last" else folders[::-1]
    for folder in finishing:
        publish_latest(folder)
    assert (tmp_path / "latest").resolve() == newest.resolve()
    assert json.loads((tmp_path / "latest.json").read_text())["date"] == "2026-11-03T00:00:00+00:00"
    # A folder not named by a date (a user's own) is newer than whatever was there.
    own = tmp_path / "rerun"
    own.mkdir()
    (own / "summary.json").write_text("{}")
    assert Path(publish_latest(own)).resolve() == own.resolve()


def test_skip_existing_reruns_a_date_whose_input_changed_and_keeps_the_old_results(spark, tmp_path, caplog):
    import logging

    csv, out = tmp_path / "edges.csv", tmp_path / "run"
    csv.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    args = ["--input", str(csv), "--output", str(out), "--preference", "-2", "--skip-existing"]
    assert main(args) == 0
    first = json.loads((out / "summary.json").read_text())
    assert main(args) == 0 and not list(out.glob(".replaced-*"))  # unchanged: nothing to do

    # The upstream partition is fixed in place: same path, a third point.
    csv.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n1,2,-3.0\n2,1,-3.0\n")
    with caplog.at_level(logging.WARNING, logger="spark_ap"):
        assert main(args) == 0
    assert "changed since it ran (1 files of" in caplog.text
    (aside,) = out.glob(".replaced-*")
    assert json.loads((aside / "summary.json").read_text()) == first  # the old results, kept whole
    assert json.loads((out / "summary.json").read_text())["points"] == 3 == first["points"] + 1


@pytest.mark.slow  # three jobs: make test-slow
def test_other_params_on_a_finished_date_are_refused_saying_how_to_recompute(spark, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--input", _edges(tmp_path), "--output", str(out), "--skip-existing"]
    assert main([*base, "--preference", "-2"]) == 0
    first = (out / "summary.json").read_text()
    assert main([*base, "--preference", "-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds another run" in err and "--recompute" in err and "\n" not in err
    assert (out / "summary.json").read_text() == first
    assert main([*base, "--preference", "-3", "--recompute"]) == 0
    assert json.loads((out / "summary.json").read_text())["params"]["preference"] == -3.0
    (aside,) = out.glob(".replaced-*")
    assert (aside / "summary.json").read_text() == first
