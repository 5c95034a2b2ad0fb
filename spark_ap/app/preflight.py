"""The checks of a job's input that need no Spark: the job runs them before Spark starts, the DAG
before its cluster task is queued, so a wrong path fails in a second with one line."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import NoReturn

from spark_ap.errors import InvalidInputError
from spark_ap.params import INPUT_KINDS
from spark_ap.paths import dangling_link, local_path


def check_input(path: str, kind: str = "edges", fmt: str | None = None) -> None:
    """Refuse an input of an unknown ``kind``, or a local one that is missing (a dangling link too), a file
    that is neither CSV nor Parquet (unless ``fmt`` names its format), or a folder of other files.

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
    if dangling_link(p):
        raise InvalidInputError(f"The input {path} is {dangling_link(p)}")
    if not p.exists():
        raise InvalidInputError(f"The input {path} does not exist")
    if fmt is None and p.is_file() and p.suffix not in (".csv", ".parquet"):
        raise InvalidInputError(
            f"The input {path} must be a .csv or .parquet file or a Parquet folder (or give --format)"
        )
    if p.is_dir():
        _check_folder(p, fmt or input_format(path))


def input_format(path: str) -> str:
    """The format of an input given without ``--format``: CSV for a name ending in .csv, else Parquet."""
    return "csv" if path.endswith(".csv") else "parquet"


def _check_folder(folder: Path, fmt: str) -> None:
    """Refuse a folder that holds no ``fmt`` files, or files of another kind (a README, a .csv among .parquet
    files): Spark would fail on them mid-read, or read a mixture. Names starting with ``_`` or ``.`` are
    Spark's own (``_SUCCESS``, checksums) and Spark skips them, as here."""
    files = [
        f.relative_to(folder)
        for f in sorted(folder.rglob("*"))
        if f.is_file() and not any(part.startswith(("_", ".")) for part in f.relative_to(folder).parts)
    ]
    other = [f for f in files if f".{fmt}" not in f.suffixes]
    hint = "" if fmt == "csv" else " (a folder is read as Parquet unless --format csv)"
    if other:
        raise InvalidInputError(
            f"The input folder {folder} holds {len(other)} file(s) that are not .{fmt}, for example "
            f"'{other[0]}'; keep one table's files in its folder{hint}"
        )
    if not files:
        raise InvalidInputError(f"The input folder {folder} holds no .{fmt} files{hint}")


def check_output(path: str, flag: str = "--output") -> None:
    """Refuse a folder path to write (``flag``'s) that is empty, a file, a link to nothing, or inside a file,
    before anything is written (an output folder's contents are :func:`spark_ap.app.export.output_status`'s)."""
    what = "The output" if flag == "--output" else flag
    if not path.strip():
        raise InvalidInputError(f"{what} folder ({flag}) is empty; give the folder the run writes")
    local = local_path(path)
    if local is None:
        return
    p = Path(local)
    if dangling_link(p):
        raise InvalidInputError(f"{what} {path} is {dangling_link(p)}")
    parent = next((q for q in (p, *p.parents) if q.exists()), p)
    if parent.exists() and not parent.is_dir():
        inside = "" if parent == p else f" (in {path})"
        raise InvalidInputError(f"{what} {parent}{inside} is a file, not a folder")


def local_columns(path: str, fmt: str | None = None) -> list[str] | None:
    """The column names of a local CSV file (its header) or Parquet file or folder; None when unknown."""
    p = Path(path)
    fmt = fmt or input_format(path)
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


class OneLineParser(argparse.ArgumentParser):
    """An argument parser that refuses a bad command line as spark-ap refuses bad input: exit code 2 and one
    line naming the option, not the usage of every option before it (``--help`` prints that)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")
