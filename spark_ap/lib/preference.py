"""Self-edges: a vertex's preference is its similarity to itself."""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_ap.params import quantile


def preference_value(edges: DataFrame, preference: float | str) -> float:
    """The number that ``preference`` stands for on this graph.

    ``"median"`` is the median of the off-diagonal similarities (as Frey and
    Dueck's code and R's apcluster use), ``"min"`` their minimum, and
    ``"quantile:q"`` their q-quantile with linear interpolation, as numpy
    computes it (see :func:`spark_ap.params.quantile`). A graph with no
    off-diagonal edge gets 0.0: every vertex is then alone.
    """
    if not isinstance(preference, str):
        return float(preference)
    off = edges.filter(F.col("src") != F.col("dst"))
    s = F.col("similarity")
    if preference == "min":
        agg = F.min(s)
    else:
        agg = F.percentile(s, quantile(preference))
    value = off.agg(agg.alias("p")).first()["p"]
    return 0.0 if value is None else float(value)


def add_self_edges(
    edges: DataFrame,
    vertex_ids: DataFrame,
    preference: float | str,
    vertex_preferences: DataFrame | None = None,
) -> tuple[DataFrame, float]:
    """Give every vertex without a self-edge one carrying its preference.

    Parameters
    ----------
    edges : DataFrame
        (src, dst, similarity), validated.
    vertex_ids : DataFrame
        (id) of every vertex.
    preference : float or str
        The default preference, see :func:`preference_value`.
    vertex_preferences : DataFrame, optional
        (id, preference); a non-null value there wins over ``preference``.

    Returns
    -------
    (DataFrame, float)
        The edges with a self-edge for every vertex, and the default preference value.
    """
    value = preference_value(edges, preference)
    has_self = edges.filter(F.col("src") == F.col("dst")).select(F.col("src").alias("id"))
    missing = vertex_ids.join(has_self, "id", "left_anti")
    pref = F.lit(value)
    if vertex_preferences is not None:
        missing = missing.join(vertex_preferences, "id", "left")
        pref = F.coalesce(F.col("preference"), pref)
    selfs = missing.select(F.col("id").alias("src"), F.col("id").alias("dst"), pref.alias("similarity"))
    return edges.unionByName(selfs), value


def sampled_similarities(points: DataFrame, similarity, *, sample: int = 2000, seed: int = 0):
    """The similarities of every two distinct points of a sample: a view of all pairwise similarities.

    On a sparse graph the kept edges are the most similar pairs, so their
    median is far too high a preference. The pairs of a random sample of points
    show the distribution of *all* pairs; with ``sample`` at least the number
    of points they are all pairs.

    Parameters
    ----------
    points : DataFrame
        (id, x).
    similarity : callable
        ``similarity(X)`` gives the dense similarity matrix of the rows of X.
    sample : int, default 2000
        Points drawn (by a seeded hash of their ids): ``sample * (sample - 1) / 2`` pairs.
    seed : int, default 0

    Returns
    -------
    ndarray
        One value per pair (i < j).
    """
    rows = points.orderBy(F.xxhash64("id", F.lit(seed))).limit(sample).select("x").collect()
    X = np.array([row.x for row in rows], dtype=float)
    return similarity(X)[np.triu_indices(len(X), 1)]


def statistic(values, preference: str) -> float:
    """``"median"``, ``"min"`` or a quantile of ``values``, as :func:`preference_value` on edges."""
    if preference == "min":
        return float(np.min(values))
    return float(np.quantile(values, quantile(preference)))
