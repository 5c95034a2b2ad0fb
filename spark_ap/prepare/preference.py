"""Self-edges: a vertex's preference is its similarity to itself."""

from __future__ import annotations

import math

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
    if preference == "min":
        value = off.agg(F.min("similarity")).first()[0]
    else:
        value = exact_quantile(off, "similarity", quantile(preference))
    return 0.0 if value is None else float(value)


def exact_quantile(
    frame: DataFrame, column: str, q: float, *, buckets: int = 4096, collect_below: int = 1_000_000
) -> float | None:
    """Spark's ``percentile(column, q)``, bit for bit, in a few passes instead of a map of every value.

    Spark's exact percentile counts every distinct value in a hash map: at 1e7
    similarities it took 34 s, at 2.5e6 6 s. Here one pass finds the count and
    range, one counts the values in ``buckets`` equal-width buckets, and the
    bucket that holds the ranks wanted is collected and sorted on the driver
    (searched again by buckets while it holds more than ``collect_below``
    values; when the two ranks straddle two buckets, they are the last value of
    one and the first of the next). The interpolation is Spark's own: at
    position ``(n - 1) q`` between the values of ranks ``floor`` and ``ceil``.
    Nulls are ignored, as Spark does; None when no value is left.
    """
    c = F.col(column)
    n, low, high = frame.agg(F.count(c), F.min(c), F.max(c)).first()
    if n == 0:
        return None
    position = (n - 1) * q
    lower, higher = math.floor(position), math.ceil(position)
    if not math.isfinite(high - low):  # the bucket arithmetic would overflow
        return frame.agg(F.percentile(c, q)).first()[0]
    values = frame.select(c.alias("v")).filter(F.col("v").isNotNull())
    at = _ranks(values, [lower, higher], low, high, buckets, collect_below)
    return _interpolate(position, at[lower], at[higher])


def _interpolate(position: float, lower: float, higher: float) -> float:
    """Spark's percentile at ``position`` between the values of its ranks floor and ceil."""
    below, above = math.floor(position), math.ceil(position)
    if above == below or lower == higher:
        return lower
    return (above - position) * lower + (position - below) * higher


def preference_of(similarities: np.ndarray, preference: float | str) -> float:
    """:func:`preference_value` of a graph whose off-diagonal ``similarities`` the driver holds:
    the same number, bit for bit."""
    if not isinstance(preference, str):
        return float(preference)
    if similarities.size == 0:
        return 0.0
    if preference == "min":
        return float(similarities.min())
    values = np.sort(similarities)
    position = (values.size - 1) * quantile(preference)
    return float(_interpolate(position, values[math.floor(position)], values[math.ceil(position)]))


def _ranks(
    values: DataFrame, ranks: list[int], low: float, high: float, buckets: int, collect_below: int
) -> dict[int, float]:
    """The values of two adjacent (or equal) 0-based ranks of sorted ``values`` (column ``v``, in [low, high])."""
    v = F.col("v")
    before = 0  # values below the range still searched
    while True:
        if low == high:
            return dict.fromkeys(ranks, low)
        # Monotone in v (each float operation rounds monotonically), so the buckets are in value order.
        bucket = F.least(F.floor((v - low) / (high - low) * buckets), F.lit(buckets - 1)).cast("int")
        counts = sorted(values.groupBy(bucket).count().collect())
        starts = np.cumsum([before] + [count for _, count in counts])
        found = [next(i for i in range(len(counts)) if starts[i] <= r < starts[i + 1]) for r in ranks]
        (b1, c1), (b2, _) = counts[found[0]], counts[found[-1]]
        if b1 != b2:  # the lower rank is the last value of its bucket, the higher the first of the next
            last, first = values.agg(F.max(F.when(bucket == b1, v)), F.min(F.when(bucket == b2, v))).first()
            return {ranks[0]: last, ranks[-1]: first}
        inside = values.filter(bucket == b1)
        if c1 <= collect_below:
            got = sorted(row[0] for row in inside.collect())
            return {r: got[r - starts[found[0]]] for r in ranks}
        # Too many to collect: search that bucket alone, within its own range.
        before, values = int(starts[found[0]]), inside.localCheckpoint()
        low, high = values.agg(F.min(v), F.max(v)).first()


def vertex_table(edges: DataFrame, ids: DataFrame | None = None) -> DataFrame:
    """Every vertex, whether it has a self-edge, and the edges into it once it has one.

    Parameters
    ----------
    edges : DataFrame
        (src, dst, similarity), validated.
    ids : DataFrame, optional
        (id) of more vertices, which may have no edge (a vertices table's).

    Returns
    -------
    DataFrame
        (id, into long, looped boolean), one row per vertex: ``looped`` when one
        of its edges is its self-edge, ``into`` the edges into it counting the
        self-edge :func:`add_self_edges` gives it otherwise. One aggregate over
        both ends of every edge gives what the self-edges need and what the
        blocks engine's numbering needs.
    """
    # Both ends from one read of the edges: (source, 0, false) and (target, 1, is a self-edge).
    ends = edges.select(
        F.inline(
            F.array(
                F.struct(F.col("src").alias("id"), F.lit(0).alias("into"), F.lit(False).alias("looped")),
                F.struct(
                    F.col("dst").alias("id"), F.lit(1).alias("into"), (F.col("src") == F.col("dst")).alias("looped")
                ),
            )
        )
    )
    if ids is not None:
        ends = ends.unionByName(ids.select("id", F.lit(0).alias("into"), F.lit(False).alias("looped")))
    found = ends.groupBy("id").agg(F.sum("into").alias("into"), F.max("looped").alias("looped"))
    return found.withColumn("into", F.col("into") + (~F.col("looped")).cast("long"))


def add_self_edges(
    edges: DataFrame,
    vertices: DataFrame,
    preference: float | str,
    vertex_preferences: DataFrame | None = None,
) -> tuple[DataFrame, float]:
    """Give every vertex without a self-edge one carrying its preference.

    Parameters
    ----------
    edges : DataFrame
        (src, dst, similarity), validated.
    vertices : DataFrame
        (id, looped) of every vertex, ``looped`` when it has a self-edge (see :func:`vertex_table`).
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
    missing = vertices.filter(~F.col("looped")).select("id")
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
