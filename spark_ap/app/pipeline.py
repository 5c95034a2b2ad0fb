"""What the Airflow DAG's tasks do, kept here so the DAG file only wires them.

See ``dags/spark_ap_pipeline.py``. Airflow parses DAG files often, so what the
DAG file calls at parse time (:func:`submit_options`) imports no Spark, numpy
or pandas; the tasks import them when they run.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from spark_ap.app.config import read_config
from spark_ap.errors import InvalidInputError
from spark_ap.params import SPECS
from spark_ap.session import graphframes_conf, logging_conf

log = logging.getLogger("spark_ap")


def run_folder(output_root: str, run_id: str) -> Path:
    """``output_root/<run id>``, the run id reduced to characters safe in a path.

    Whatever the run id holds (slashes, ``..``), the folder is a direct child of
    ``output_root``: a DAG run writes nowhere else. ``latest`` is the pointer to
    the newest finished run (:func:`publish_latest`), so a run id "latest" gets
    the folder ``run-latest``.
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "run"
    name = "run-latest" if name == "latest" else name
    folder = Path(output_root) / name
    if folder.resolve().parent != Path(output_root).resolve():
        raise InvalidInputError(f"The run id {run_id!r} does not name a folder inside {output_root}")
    return folder


def check_input(path: str, kind: str) -> None:
    """Fail fast on an input that is missing or of an unknown kind, before Spark starts."""
    if kind not in ("edges", "features"):
        raise InvalidInputError(f"kind must be 'edges' or 'features'; got {kind!r}")
    from spark_ap.app.job import check_input as check_path

    check_path(path)


def job_arguments(params: dict, run_id: str) -> dict:
    """The spark-ap job's command lines for one DAG run (validate, cluster), and the run folder it writes."""
    output = run_folder(params["output_root"], run_id)
    args = ["--input", params["input"], "--output", str(output), "--kind", params["kind"]]
    for spec in SPECS.values():
        if spec.dag and (spec.section != "features" or params["kind"] == "features"):
            args += [spec.flag, str(params[spec.snake])]
    # A retried task finds the folder of a finished attempt and stops there,
    # or the state an interrupted attempt saved and resumes from it.
    args.append("--skip-existing")
    return {"args": args, "validate_args": [*args, "--validate-only"], "output": str(output)}


def submit_options(config: str | Path) -> dict:
    """``packages``, ``repositories`` and ``conf`` for the DAG's SparkSubmitOperator.

    GraphFrames' coordinates, with the packages and repositories of the YAML
    settings file's ``spark`` section and of ``SPARK_AP_REPOSITORIES`` (none
    when the file's ``spark.jars`` already ships GraphFrames' jars), and the
    settings that keep the job's log to spark-ap's lines and Spark's warnings.
    """
    spark = read_config(config).get("spark", {}) if Path(config).is_file() else {}
    spark = {key: str(value) for key, value in spark.items()}
    packages = graphframes_conf(spark)
    options = {
        "packages": packages.get("spark.jars.packages"),
        "repositories": packages.get("spark.jars.repositories"),
        "conf": {"spark.ui.showConsoleProgress": "false", **logging_conf(spark)},
    }
    return {key: value for key, value in options.items() if value}


def read_summary(output: str) -> dict:
    """The run's summary.json, with the paths of its files."""
    folder = Path(output)
    summary = json.loads((folder / "summary.json").read_text())
    files = sorted(str(p) for p in folder.iterdir())
    log.info(
        "spark-ap run %s: %d clusters, %d iterations, converged=%s",
        folder,
        summary["clusters"],
        summary["iterations"],
        summary["converged"],
    )
    model = {"model": str(folder / "model")} if (folder / "model").is_dir() else {}
    return {**summary, "folder": str(folder), **model, "files": files}


def asset_extra(summary: dict) -> dict:
    """What the results asset's event carries: the run folder, its model if any, and the summary's headline
    numbers."""
    keys = ("folder", "model", "clusters", "iterations", "converged", "points", "net_similarity")
    return {key: summary[key] for key in keys if key in summary}


def publish_latest(folder: str | Path) -> Path:
    """Point ``<output_root>/latest`` at the finished run ``folder``, atomically, and return the pointer.

    The pointer is a relative symbolic link, replaced in one rename: a reader
    sees the previous run or this one, never a half-written run (a run folder
    is complete once it holds summary.json, which the job writes last).
    """
    folder = Path(folder)
    if not (folder / "summary.json").is_file():
        raise InvalidInputError(f"{folder} holds no finished run (no summary.json); latest is left as it is")
    latest = folder.parent / "latest"
    staged = folder.parent / f".latest-{os.getpid()}-{folder.name}"
    staged.unlink(missing_ok=True)
    os.symlink(folder.name, staged)
    os.replace(staged, latest)
    return latest
