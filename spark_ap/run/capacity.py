"""Capacitated AP's final step: every point to an exemplar, no cluster above the capacity.

Plain AP sends each point to its most similar exemplar. With a capacity L
that may overfill a cluster, so the points are placed instead: each exemplar
keeps itself and takes at most L - 1 others, and the total similarity of the
points to their exemplars is as large as it can be. That is an assignment
problem (points against the exemplars' free places), solved exactly with
scipy's ``linear_sum_assignment`` up to :data:`EXACT_UP_TO` candidate pairs,
and above that greedily, the most similar pair first (a 1/2-approximation of
the optimum of the similarities shifted to be nonnegative, as greedy
b-matching is). A point without an edge to an exemplar with room, or beyond
the places there are (fewer than n / L exemplars), is not placed: its cluster
is -1, and a warning counts such points. When the nearest exemplars already
fit, the labels are plain AP's, unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy.optimize import linear_sum_assignment

from spark_ap.compat import to_arrow
from spark_ap.engines.assign import labels_frame
from spark_ap.errors import user_stacklevel

# Points x free places at most for the exact assignment (a dense matrix of doubles: 32 MB).
EXACT_UP_TO = 4_000_000


class CapacityWarning(UserWarning):
    """Some points could not be placed without exceeding maxClusterSize."""


def place(
    members: np.ndarray, exemplars: np.ndarray, s: np.ndarray, centres: np.ndarray, n: int, capacity: int
) -> np.ndarray:
    """Each of the ``n`` points' exemplar (-1: not placed), no exemplar with more than ``capacity``.

    Parameters
    ----------
    members, exemplars, s : ndarray
        The candidate pairs: point ``members[e]`` may join exemplar ``exemplars[e]``
        with similarity ``s[e]`` (edges into exemplars, self-edges excluded).
    centres : ndarray
        The exemplars, which keep themselves.
    n : int
        Points, numbered 0..n-1.
    """
    chosen = np.full(n, -1, dtype=np.int64)
    chosen[centres] = centres
    keep = chosen[members] < 0  # an exemplar stays its own
    members, exemplars, s = members[keep], exemplars[keep], s[keep]
    free = capacity - 1
    if free <= 0 or members.size == 0:
        return chosen
    points = np.unique(members)
    places = centres.size * min(free, points.size)
    if points.size * places <= EXACT_UP_TO:
        _exact(chosen, members, exemplars, s, points, np.sort(centres), min(free, points.size))
    else:
        _greedy(chosen, members, exemplars, s, free)
    return chosen


def merge_within(
    members: np.ndarray, exemplars: np.ndarray, s: np.ndarray, size: np.ndarray, chosen: np.ndarray, capacity: int
) -> np.ndarray:
    """A level's merges, undone where they would exceed ``capacity`` points: each level point's
    exemplar (its number), a point standing for ``size`` points.

    ``chosen`` is each level point's exemplar as AP chose it; ``members, exemplars, s`` are the
    level's edges into those exemplars. Unchanged when every merged cluster is within the bound;
    else the level's points are placed again, greedily: each exemplar keeps itself, then the most
    similar pairs first (ties: the smaller point, then the smaller exemplar) join an exemplar while
    its total stays within the bound; a point that fits nowhere stays an exemplar itself (its own
    cluster, already within the bound).
    """
    load = np.bincount(chosen, weights=size, minlength=chosen.size)
    if load.max() <= capacity:
        return chosen
    centres = np.flatnonzero(chosen == np.arange(chosen.size))
    placed = np.full(chosen.size, -1, dtype=np.int64)
    placed[centres] = centres
    load = np.zeros(chosen.size)
    load[centres] = size[centres]
    order = np.lexsort((exemplars, members, -s))
    for point, centre in zip(members[order].tolist(), exemplars[order].tolist(), strict=True):
        if placed[point] < 0 and placed[centre] == centre and load[centre] + size[point] <= capacity:
            placed[point] = centre
            load[centre] += size[point]
    return np.where(placed >= 0, placed, np.arange(chosen.size))


def warn_unplaced(chosen: np.ndarray, capacity: int) -> None:
    """Warn, counting them, of the points ``place`` could not place."""
    unplaced = int((chosen < 0).sum())
    if unplaced:
        warnings.warn(
            f"{unplaced} of {chosen.size} points could not be placed without a cluster of more than "
            f"maxClusterSize={capacity} points (too few exemplars with room, or no edge to one): their "
            "cluster is -1. A higher preference gives more exemplars.",
            CapacityWarning,
            stacklevel=user_stacklevel(),
        )


def _exact(chosen, members, exemplars, s, points, centres, free) -> None:
    """linear_sum_assignment of the points to ``free`` places per exemplar; pairs without an edge cost
    more than any assignment with edges, and points placed through one are left out."""
    row, centre = np.searchsorted(points, members), np.searchsorted(centres, exemplars)
    spread = float(np.max(np.abs(s))) if s.size else 0.0
    missing = -(2.0 * spread * points.size + 1.0)
    gain = np.full((points.size, centres.size), missing)
    gain[row, centre] = s
    rows, columns = linear_sum_assignment(np.repeat(gain, free, axis=1), maximize=True)
    placed = gain[rows, columns // free] != missing
    chosen[points[rows[placed]]] = centres[columns[placed] // free]


def _greedy(chosen, members, exemplars, s, free) -> None:
    """The most similar pair first (ties: the smaller point, then the smaller exemplar), while the
    point is not placed and its exemplar has room."""
    order = np.lexsort((exemplars, members, -s))
    room: dict[int, int] = {}
    for point, centre in zip(members[order].tolist(), exemplars[order].tolist(), strict=True):
        if chosen[point] < 0 and room.get(centre, free) > 0:
            chosen[point] = centre
            room[centre] = room.get(centre, free) - 1


def placed_labels(state: DataFrame, labels: DataFrame, capacity: int) -> DataFrame:
    """``labels`` (``id, cluster, exemplar``) with the points placed under ``capacity``, read from the
    final edge ``state``'s noisy similarities ``s``; ``labels`` itself when no cluster is over it."""
    largest = labels.groupBy("exemplar").count().agg(F.max("count")).first()[0]
    if largest is None or largest <= capacity:
        return labels
    ids = np.sort(to_arrow(labels.select("id")).column("id").to_numpy(zero_copy_only=False))
    centres = labels.filter(F.col("id") == F.col("exemplar")).select(F.col("id").alias("dst"))
    pairs = state.filter(F.col("src") != F.col("dst")).join(F.broadcast(centres), "dst").select("src", "dst", "s")
    table = to_arrow(pairs)

    def numbers(values) -> np.ndarray:
        return np.searchsorted(ids, values.to_numpy(zero_copy_only=False))

    chosen = place(
        numbers(table.column("src")),
        numbers(table.column("dst")),
        table.column("s").to_numpy(),
        numbers(to_arrow(centres).column("dst")),
        ids.size,
        capacity,
    )
    warn_unplaced(chosen, capacity)
    return labels_frame(labels.sparkSession, ids, labels.schema["id"].dataType, chosen)
