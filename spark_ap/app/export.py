"""Write a finished run to a folder: tables, a summary and plots, on any file system.

The run folder may be local or a URI (``hdfs://``, ``s3a://``, ...; :mod:`spark_ap.files`). The
assignments, one row per point, are written by the executors (``assignments.parquet``, a folder of
Parquet part files): nothing per point passes through the driver. The rest is small (a row per
cluster or per iteration, a sample of the points for the plot) and the driver writes it.

The files are assembled in a hidden staging folder and moved into place at the end, ``summary.json``
last: a run folder is finished exactly when it has a summary, and every reader (``--skip-existing``,
the DAG's report and ``latest``, a model's load) checks for it. On a local disk and on HDFS each
move is a rename and the summary appears whole in one rename; on an object store each move is a
copy and the summary one object written whole, so there too a summary means the rest is in place.
Before the summary the folder may hold the run's saved state (``state/``), from which a rerun
resumes, and the leftovers of an export that was killed, which the rerun's export replaces.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import uuid

import pandas as pd
import pyspark
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_ap.app.folders import RUN_FILES, STATE, SUMMARY
from spark_ap.checksums import first_difference
from spark_ap.errors import InvalidInputError
from spark_ap.estimators.affinity import AffinityPropagationResult
from spark_ap.estimators.model import AffinityPropagationModel
from spark_ap.files import Files, files_for, join
from spark_ap.multilevel import MultiLevelResult

# clusters.png draws at most this many points (a sample, said on the plot), so that a run of any size
# brings a bounded number of rows to the driver.
PLOT_POINTS = 5000


def output_status(path: str | os.PathLike, files: Files | None = None) -> str:
    """What the run folder ``path`` holds: ``"absent"``, ``"finished"`` or ``"unfinished"``.

    Unfinished means it exists without a summary and holds nothing but a
    saved state, hidden staging folders and the files of an export that was
    killed, i.e. an interrupted run. ``files`` reads ``path`` (see :func:`spark_ap.files.files_for`).

    Raises
    ------
    InvalidInputError
        The folder holds files that no spark-ap run wrote.
    """
    folder = str(path)
    files = files or files_for(folder)
    kind = files.kind(folder)
    if kind is None:
        return "absent"
    if kind == "file":
        raise InvalidInputError(f"The output {folder} is a file, not a run folder.")
    if files.kind(join(folder, SUMMARY)) == "file":
        return "finished"
    foreign = [n for n in files.names(folder) if n != STATE and not n.startswith(".") and n not in RUN_FILES]
    if foreign:
        raise InvalidInputError(
            f"The output folder {folder} holds {len(foreign)} file(s) that are not from a spark-ap run, "
            f"for example {foreign[0]!r}; choose a new folder for each run."
        )
    return "unfinished"


def export_run(
    result: AffinityPropagationResult | MultiLevelResult,
    path: str | os.PathLike,
    *,
    params: dict | None = None,
    points: DataFrame | pd.DataFrame | None = None,
    timings: dict | None = None,
    model: AffinityPropagationModel | None = None,
    replace: str | None = None,
    input_fingerprint: dict | None = None,
) -> str:
    """Write ``result`` to the run folder ``path`` (a local path or a file system URI) and return it.

    ``path`` must not exist yet, or hold only an unfinished run (see
    :func:`output_status`); with ``replace`` (``"damaged"``, ``"replaced"``), it may hold a finished
    run found damaged or out of date, which stays in place while the new files are written beside
    it, and is moved into a ``.<replace>-*`` folder just before they take its place.
    ``input_fingerprint`` (the input's files, from their listing) goes in the summary, for
    ``--skip-existing`` to notice a changed input.

    Writes ``assignments.parquet`` (id, cluster, exemplar; a folder of Parquet
    part files, written by the executors), ``exemplars.csv`` (cluster,
    exemplar, size), ``history.csv``, ``summary.json``, ``convergence.png``
    and, when ``points`` holds 2-D coordinates (``id`` and two columns, whose
    names label the axes; a Spark or pandas DataFrame), ``clusters.png``, which
    draws at most :data:`PLOT_POINTS` of them. A multi-level result adds
    ``levels.csv`` (one row per level) and, after a search for a number of
    clusters, ``attempts.csv``; its summary says how the preference was chosen
    and how many true neighbours the approximate graph holds. A ``model``
    (a feature table's fit) is saved in ``model/``, for
    :meth:`AffinityPropagationModel.load <spark_ap.AffinityPropagationModel.load>`.

    Raises
    ------
    InvalidInputError
        ``path`` holds a finished run or other files: runs are never overwritten.
    """
    spark = result.assignments.sparkSession
    final = str(path)
    files = files_for(final, spark)
    if output_status(final, files) == "finished" and not replace:
        raise InvalidInputError(f"The output folder {final} already holds a finished run; choose a new one.")
    files.mkdirs(final)
    staging = join(final, f".staging-{uuid.uuid4().hex[:8]}")
    try:
        files.mkdirs(staging)
        exemplars = _write_tables(result, staging, files)
        clusters = int((exemplars["cluster"] >= 0).sum())
        unassigned = result.assignments.filter(F.col("cluster") < 0).count()
        summary = _summary(result, params, timings, clusters, unassigned, staging, files)
        if input_fingerprint is not None:
            summary["input_fingerprint"] = input_fingerprint
        if model is not None:
            model.write().save(join(staging, "model"))
        files.write(join(staging, "convergence.png"), convergence_png(result.history, converged=result.converged))
        if points is not None:
            points = spark.createDataFrame(points) if isinstance(points, pd.DataFrame) else points
            x, y = [c for c in points.columns if c != "id"]
            drawn, centers = plot_sample(points.select("id", F.col(x).alias("x"), F.col(y).alias("y")), result)
            files.write(join(staging, "clusters.png"), clusters_png(drawn, centers, result.numVertices, axes=(x, y)))
        # What --skip-existing checks before it trusts the folder (see damaged_files).
        summary["files"] = files.digests(staging)
        if replace and output_status(final, files) == "finished":
            set_aside(final, files, replace)  # its summary first: from here on the folder reads as unfinished
        _publish(files, staging, final, summary)
    finally:
        files.delete(staging)
    return final


def damaged_files(path: str | os.PathLike, files: Files | None = None) -> str | None:
    """What is wrong with the files of the finished run folder ``path`` (one named), or None when
    they are those its summary lists; a summary that lists none (an older spark-ap's) is trusted."""
    folder = str(path)
    files = files or files_for(folder)
    try:
        written = read_json(files, join(folder, SUMMARY)).get("files")
    except (OSError, ValueError) as error:
        return f"{join(folder, SUMMARY)} cannot be read ({error})"
    if written is None:
        return None
    return first_difference(written, files.digests(folder, leave_out=(SUMMARY, STATE)), folder)


def read_json(files: Files, path: str) -> dict:
    """The JSON object in the file ``path``.

    Raises
    ------
    ValueError
        The file is not JSON, or its JSON is not an object.
    """
    value = json.loads(files.read(path))
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds {type(value).__name__} JSON, not an object")
    return value


def set_aside(path: str | os.PathLike, files: Files | None = None, why: str = "damaged") -> str:
    """Move the files of the run folder ``path`` (its saved state stays) into a hidden folder in it,
    ``.<why>-<time>-<random>``, which leaves an unfinished run folder; return that folder."""
    folder = str(path)
    files = files or files_for(folder)
    aside = join(folder, f".{why}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}")
    files.mkdirs(aside)
    names = [name for name in files.names(folder) if name != STATE and not name.startswith(".")]
    for name in sorted(names, key=lambda name: name != SUMMARY):  # the summary first
        files.rename(join(folder, name), join(aside, name))
    return aside


def _write_tables(result: AffinityPropagationResult | MultiLevelResult, staging: str, files: Files) -> pd.DataFrame:
    """Write the assignments (by the executors), the exemplars and the history to ``staging``; return
    the exemplars, as written."""
    result.assignments.orderBy("id").write.parquet(join(staging, "assignments.parquet"))
    exemplars = result.exemplars.toPandas()
    files.write(join(staging, "exemplars.csv"), exemplars.to_csv(index=False).encode())
    files.write(join(staging, "history.csv"), result.history.to_csv(index=False).encode())
    return exemplars


def _summary(
    result: AffinityPropagationResult | MultiLevelResult,
    params: dict | None,
    timings: dict | None,
    clusters: int,
    unassigned: int,
    staging: str,
    files: Files,
) -> dict:
    """``summary.json``'s content (a multi-level run's tables are written to ``staging`` on the way)."""
    return {
        "params": redact(params or {}),
        "preference_value": result.preference,
        "points": result.numVertices,
        "edges": result.numEdges,
        "clusters": clusters,
        # Points in no cluster (cluster -1): none found, or left out by maxClusterSize's placement.
        "unassigned_points": unassigned,
        "iterations": result.numIterations,
        "converged": result.converged,
        # "converged", "best" (not converged: the best decisions seen) or "last"; and their iteration.
        "ended_on": getattr(result, "endedOn", None),
        "ended_on_iteration": getattr(result, "endedOnIteration", None),
        "net_similarity": result.netSimilarity,
        "resumed_from_iteration": result.resumedFrom,
        **_levels(result, staging, files),
        "timings_seconds": timings or {},
        "versions": {"spark_ap": _version(), "pyspark": pyspark.__version__},
    }


def _publish(files: Files, staging: str, final: str, summary: dict) -> None:
    """Move the staged files into ``final`` (over what a killed export left there), then write the
    summary: its presence marks the run finished."""
    for name in files.names(staging):
        files.delete(join(final, name))
        files.rename(join(staging, name), join(final, name))
    files.write(join(final, SUMMARY), (json.dumps(summary, indent=2) + "\n").encode())


def _levels(result: AffinityPropagationResult | MultiLevelResult, staging: str, files: Files) -> dict:
    """The summary's account of a multi-level run, with its tables written to ``staging``."""
    if not isinstance(result, MultiLevelResult):
        return {}
    files.write(join(staging, "levels.csv"), result.levels.to_csv(index=False).encode())
    if len(result.attempts) > 1:
        files.write(join(staging, "attempts.csv"), result.attempts.to_csv(index=False).encode())
    return {
        "preference_source": result.preferenceSource,
        "graph_recall": result.recall,
        # Through JSON, so that a missing value is null, not NaN.
        "levels": json.loads(result.levels.to_json(orient="records")),
        "preference_attempts": json.loads(result.attempts.to_json(orient="records")),
    }


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_KEY = re.compile(r"password|secret|token|credential|access.?key", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with the user and password of every URI in it replaced by ``***``."""
    return _USERINFO.sub("***@", text)


def redact(params: dict) -> dict:
    """``params`` fit for a summary or a log: no passwords in URIs, no values of secret-looking keys."""
    out = {}
    for key, value in params.items():
        if _SECRET_KEY.search(str(key)):
            value = "***"
        elif isinstance(value, str):
            value = redact_text(value)
        out[key] = value
    return out


def _version() -> str:
    from spark_ap import __version__

    return __version__


def _figure(width: float, height: float):
    """A matplotlib figure drawn off-screen (no display is needed on a cluster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def convergence_png(history: pd.DataFrame, converged: bool = False) -> bytes:
    """Exemplars and changed decisions per iteration, as a PNG; levels one after the other, when there are levels.

    The y axis is logarithmic past 1 (all points change at the first iteration,
    a handful later on), and a converged run marks the iteration after which no
    decision changed.
    """
    fig, ax = _figure(8, 4.5)
    levels = "level" in history and history["level"].nunique() > 1
    x = range(1, len(history) + 1) if levels else history["iteration"]
    ax.plot(x, history["exemplars"], label="exemplars", color="tab:blue")
    ax.plot(x, history["changed"], label="points that changed their decision", color="tab:orange")
    if levels:
        starts = [i + 1 for i in range(1, len(history)) if history["level"].iloc[i] != history["level"].iloc[i - 1]]
        for start in starts:
            ax.axvline(start - 0.5, color="grey", linestyle=":")
    changed = [i for i, c in enumerate(history["changed"]) if c > 0]
    if converged and changed and len(history):
        settled = list(x)[changed[-1]]
        ax.axvline(settled, color="tab:green", linestyle="--", label=f"last change (iteration {settled})")
    ax.set_yscale("symlog")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("iteration, level after level (dotted: a new level)" if levels else "iteration")
    ax.set_ylabel("points")
    ax.set_title("Affinity propagation: convergence")
    ax.legend()
    return _png(fig)


def plot_sample(
    points: DataFrame, result: AffinityPropagationResult | MultiLevelResult
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What ``clusters.png`` draws of ``points`` (id, x, y): at most :data:`PLOT_POINTS` of them with
    their clusters (a seeded sample, when there are more), and every exemplar with its coordinates."""
    labelled = points.join(result.assignments, "id")
    fraction = PLOT_POINTS / max(result.numVertices, 1)
    if fraction < 1:
        # A little above the fraction, so that the limit, not chance, usually sets the count.
        labelled = labelled.sample(fraction=min(1.0, 1.2 * fraction), seed=0)
    drawn = labelled.limit(PLOT_POINTS).toPandas()
    exemplar_ids = result.exemplars.select(F.col("exemplar").alias("id"))
    centers = points.join(F.broadcast(exemplar_ids), "id").toPandas()
    return drawn, centers


def clusters_png(drawn: pd.DataFrame, centers: pd.DataFrame, total: int, axes: tuple[str, str] = ("x", "y")) -> bytes:
    """Points coloured by cluster, exemplars marked, as a PNG. ``drawn`` has id, x, y, cluster, exemplar
    (all the points or a sample of the ``total``), ``centers`` the exemplars' id, x, y; ``axes`` names
    the coordinates (the input's column names)."""
    fig, ax = _figure(7, 7)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.scatter(drawn["x"], drawn["y"], c=drawn["cluster"], cmap="tab20", s=12)
    ax.scatter(centers["x"], centers["y"], marker="*", s=250, c="black", label="exemplars")
    title = f"Affinity propagation: {len(centers)} clusters"
    if len(drawn) < total:
        title += f"\n(a sample of {len(drawn):,} of the {total:,} points is drawn)"
    ax.set_title(title)
    ax.legend(loc="best")
    return _png(fig)
