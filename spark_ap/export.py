"""Write a finished run to a folder: tables, a summary and plots.

The folder is assembled under a temporary name beside its destination and
renamed into place at the end, so a reader never sees a half-written run.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyspark

from spark_ap.clustering import AffinityPropagationResult
from spark_ap.errors import InvalidInputError


def export_run(
    result: AffinityPropagationResult,
    path: str | os.PathLike,
    *,
    params: dict | None = None,
    points: pd.DataFrame | None = None,
    timings: dict | None = None,
) -> Path:
    """Write ``result`` to the local folder ``path`` and return it.

    Writes ``assignments.parquet`` (id, cluster, exemplar), ``exemplars.csv``
    (cluster, exemplar, size), ``history.csv``, ``summary.json``,
    ``convergence.png`` and, when ``points`` holds 2-D coordinates
    (columns ``id, x, y``), ``clusters.png``.

    Raises
    ------
    InvalidInputError
        ``path`` already exists: runs are never overwritten.
    """
    final = Path(path)
    if final.exists():
        raise InvalidInputError(f"The output folder {final} already exists; choose a new one for each run.")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        assignments = result.assignments.orderBy("id").toPandas()
        assignments.to_parquet(staging / "assignments.parquet", index=False)
        exemplars = result.exemplars.toPandas()
        exemplars.to_csv(staging / "exemplars.csv", index=False)
        result.history.to_csv(staging / "history.csv", index=False)
        summary = {
            "params": params or {},
            "preference_value": result.preference,
            "points": result.numVertices,
            "edges": result.numEdges,
            "clusters": int(len(exemplars)),
            "iterations": result.numIterations,
            "converged": result.converged,
            "net_similarity": result.netSimilarity,
            "timings_seconds": timings or {},
            "versions": {"spark_ap": _version(), "pyspark": pyspark.__version__},
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_convergence(result.history, staging / "convergence.png")
        if points is not None:
            plot_clusters(points.merge(assignments, on="id"), staging / "clusters.png")
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


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


def plot_convergence(history: pd.DataFrame, path: Path) -> None:
    """Exemplars and changed decisions per iteration."""
    fig, ax = _figure(8, 4.5)
    ax.plot(history["iteration"], history["exemplars"], label="exemplars", color="tab:blue")
    ax.plot(history["iteration"], history["changed"], label="points that changed their decision", color="tab:orange")
    ax.set_xlabel("iteration")
    ax.set_ylabel("points")
    ax.set_title("Affinity propagation: convergence")
    ax.legend()
    _save(fig, path)


def plot_clusters(points: pd.DataFrame, path: Path) -> None:
    """Points coloured by cluster, exemplars marked; ``points`` has id, x, y, cluster, exemplar."""
    fig, ax = _figure(7, 7)
    ax.scatter(points["x"], points["y"], c=points["cluster"], cmap="tab20", s=12)
    exemplars = points[points["id"] == points["exemplar"]]
    ax.scatter(exemplars["x"], exemplars["y"], marker="*", s=250, c="black", label="exemplars")
    ax.set_title(f"Affinity propagation: {len(exemplars)} clusters")
    ax.legend(loc="best")
    _save(fig, path)
