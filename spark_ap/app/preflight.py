"""The checks of a job's input that need no Spark: the job runs them before Spark starts, the DAG
before its cluster task is queued, so a wrong path fails in a second with one line."""

from __future__ import annotations

import csv
from pathlib import Path

from spark_ap.errors import InvalidInputError
from spark_ap.params import INPUT_KINDS


def check_input(path: str, kind: str = "edges", fmt: str | None = None) -> None:
    """Refuse an input of an unknown ``kind``, or a local one that is missing, or a file that is neither
    CSV nor Parquet (unless ``fmt`` names its format).

    Remote URIs (``hdfs://``, ``s3a://``, ...) are left to Spark to read and report.
    """
    if kind not in INPUT_KINDS:
        raise InvalidInputError(f"kind must be one of {INPUT_KINDS}; got {kind!r}")
    if not path.strip():
        # Path("") is the current folder, which exists: refuse it before Spark does, less clearly.
        raise InvalidInputError("The input path (--input) is empty; give a CSV or Parquet file or folder")
    if "://" in path:
        return
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"The input {path} does not exist")
    if fmt is None and p.is_file() and p.suffix not in (".csv", ".parquet"):
        raise InvalidInputError(
            f"The input {path} must be a .csv or .parquet file or a Parquet folder (or give --format)"
        )


def local_columns(path: str, fmt: str | None = None) -> list[str] | None:
    """The column names of a local CSV file (its header) or Parquet file or folder; None when unknown."""
    p = Path(path)
    fmt = fmt or ("csv" if path.endswith(".csv") else "parquet")
    try:
        if fmt == "csv" and p.is_file():
            with p.open(newline="") as lines:
                return next(csv.reader(lines), [])
        if fmt == "parquet":
            import pyarrow.parquet as pq

            files = [p] if p.is_file() else sorted(p.rglob("*.parquet"))
            return list(pq.read_schema(files[0]).names) if files else None
    except (OSError, UnicodeDecodeError, ValueError):
        pass  # unreadable here: Spark reads it and says why
    return None


def check_edge_columns(path: str, fmt: str | None, columns: list[str]) -> None:
    """Before Spark starts: an edge input must have its id and similarity columns.

    A table with an ``id`` column instead is a feature table given without ``--kind features``.
    """
    if "://" in path:
        return
    found = local_columns(path, fmt)
    missing = [c for c in columns if found is not None and c not in found]
    if not missing:
        return
    flags = dict(zip(columns, ("--src-col", "--dst-col", "--weight-col"), strict=True))
    if "id" in found:
        raise InvalidInputError(
            f"The input {path} has columns {found} and no {missing}: this looks like a feature table: add "
            "--kind features"
        )
    raise InvalidInputError(
        f"The input {path} has no column(s) {missing} (it has {found}); name its columns with "
        + ", ".join(flags[c] for c in missing)
    )
