"""Write a finished run to a folder: tables, a summary and plots.

The files are assembled in a hidden staging folder and moved into place at the
end, ``summary.json`` last: a run folder is finished exactly when it has a
summary. Before that it may hold the run's saved state (``state/``), from which
a rerun resumes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd
import pyspark

from spark_ap.checksums import first_difference, local_digests
from spark_ap.errors import InvalidInputError
from spark_ap.estimators.affinity import AffinityPropagationResult
from spark_ap.estimators.model import AffinityPropagationModel
from spark_ap.multilevel import MultiLevelResult

STATE = "state"


def output_status(path: str | os.PathLike) -> str:
    """What the run folder ``path`` holds: ``"absent"``, ``"finished"`` or ``"unfinished"``.

    Unfinished means it exists without a summary and holds nothing but a
    saved state and hidden staging folders, i.e. an interrupted run.

    Raises
    ------
    InvalidInputError
        The folder holds files that no spark-ap run wrote.
    """
    folder = Path(path)
    if not folder.exists():
        return "absent"
    if not folder.is_dir():
        raise InvalidInputError(f"The output {folder} is a file, not a run folder.")
    if (folder / "summary.json").is_file():
        return "finished"
    foreign = sorted(p.name for p in folder.iterdir() if p.name != STATE and not p.name.startswith("."))
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
    points: pd.DataFrame | None = None,
    timings: dict | None = None,
    model: AffinityPropagationModel | None = None,
) -> Path:
    """Write ``result`` to the local folder ``path`` and return it.

    ``path`` must not exist yet, or hold only an unfinished run (see
    :func:`output_status`).

    Writes ``assignments.parquet`` (id, cluster, exemplar), ``exemplars.csv``
    (cluster, exemplar, size), ``history.csv``, ``summary.json``,
    ``convergence.png`` and, when ``points`` holds 2-D coordinates
    (``id`` and two columns, whose names label the axes), ``clusters.png``. A multi-level result adds
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
    final = Path(path)
    if output_status(final) == "finished":
        raise InvalidInputError(f"The output folder {final} already holds a finished run; choose a new one.")
    final.mkdir(parents=True, exist_ok=True)
    staging = final / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        assignments, exemplars = _write_tables(result, staging)
        clusters, unassigned = int((exemplars["cluster"] >= 0).sum()), int((assignments["cluster"] < 0).sum())
        summary = _summary(result, params, timings, clusters, unassigned, staging)
        if model is not None:
            model.write().save(str(staging / "model"))
        plot_convergence(result.history, staging / "convergence.png", converged=result.converged)
        if points is not None:
            x, y = [c for c in points.columns if c != "id"]
            coordinates = points.rename(columns={x: "x", y: "y"})
            plot_clusters(coordinates.merge(assignments, on="id"), staging / "clusters.png", axes=(x, y))
        # What --skip-existing checks before it trusts the folder (see damaged_files).
        summary["files"] = local_digests(staging)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _publish(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def damaged_files(path: str | os.PathLike) -> str | None:
    """What is wrong with the files of the finished run folder ``path`` (one named), or None when
    they are those its summary lists; a summary that lists none (an older spark-ap's) is trusted."""
    folder = Path(path)
    try:
        written = json.loads((folder / "summary.json").read_text()).get("files")
    except (OSError, ValueError) as error:
        return f"{folder / 'summary.json'} cannot be read ({error})"
    if written is None:
        return None
    return first_difference(written, local_digests(folder, leave_out=("summary.json", STATE)), str(folder))


def set_aside(path: str | os.PathLike) -> Path:
    """Move the files of the run folder ``path`` (its saved state stays) into a hidden folder in it,
    which leaves an unfinished run folder; return that folder."""
    folder = Path(path)
    aside = folder / f".damaged-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    aside.mkdir()
    for entry in sorted(folder.iterdir()):
        if entry.name != STATE and not entry.name.startswith("."):
            os.replace(entry, aside / entry.name)
    return aside


def _write_tables(result: AffinityPropagationResult | MultiLevelResult, staging: Path) -> tuple[pd.DataFrame, ...]:
    """Write the assignments, exemplars and history to ``staging``; the first two, as written."""
    assignments = result.assignments.orderBy("id").toPandas()
    assignments.to_parquet(staging / "assignments.parquet", index=False)
    exemplars = result.exemplars.toPandas()
    exemplars.to_csv(staging / "exemplars.csv", index=False)
    result.history.to_csv(staging / "history.csv", index=False)
    return assignments, exemplars


def _summary(
    result: AffinityPropagationResult | MultiLevelResult,
    params: dict | None,
    timings: dict | None,
    clusters: int,
    unassigned: int,
    staging: Path,
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
        "net_similarity": result.netSimilarity,
        "resumed_from_iteration": result.resumedFrom,
        **_levels(result, staging),
        "timings_seconds": timings or {},
        "versions": {"spark_ap": _version(), "pyspark": pyspark.__version__},
    }


def _publish(staging: Path, final: Path) -> None:
    """Move the staged files into ``final``; the summary goes last: its presence marks the run finished."""
    for name in sorted(p.name for p in staging.iterdir() if p.name != "summary.json"):
        os.replace(staging / name, final / name)
    os.replace(staging / "summary.json", final / "summary.json")


def _levels(result: AffinityPropagationResult | MultiLevelResult, staging: Path) -> dict:
    """The summary's account of a multi-level run, with its tables written to ``staging``."""
    if not isinstance(result, MultiLevelResult):
        return {}
    result.levels.to_csv(staging / "levels.csv", index=False)
    if len(result.attempts) > 1:
        result.attempts.to_csv(staging / "attempts.csv", index=False)
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


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_convergence(history: pd.DataFrame, path: Path, converged: bool = False) -> None:
    """Exemplars and changed decisions per iteration; levels one after the other, when there are levels.

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
    _save(fig, path)


def plot_clusters(points: pd.DataFrame, path: Path, axes: tuple[str, str] = ("x", "y")) -> None:
    """Points coloured by cluster, exemplars marked; ``points`` has id, x, y, cluster, exemplar.

    ``axes`` names the coordinates (the input's column names).
    """
    fig, ax = _figure(7, 7)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.scatter(points["x"], points["y"], c=points["cluster"], cmap="tab20", s=12)
    exemplars = points[points["id"] == points["exemplar"]]
    ax.scatter(exemplars["x"], exemplars["y"], marker="*", s=250, c="black", label="exemplars")
    ax.set_title(f"Affinity propagation: {len(exemplars)} clusters")
    ax.legend(loc="best")
    _save(fig, path)
