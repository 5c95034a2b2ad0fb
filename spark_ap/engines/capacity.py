"""Capacitated AP's final step: every point to an exemplar, no cluster above the capacity.

Plain AP sends each point to its most similar exemplar. With a capacity L
that may overfill a cluster, so the points are placed instead: each exemplar
keeps itself and takes at most L - 1 others, as many points as can be placed
are, and of those placements the total similarity of the points to their
exemplars is the largest. That is a transportation problem over the candidate
pairs (edges into exemplars), solved exactly at every size (:func:`transport`:
a maximum flow for the count, then a linear program with HiGHS, whose optimal
vertex is integral because the constraint matrix is totally unimodular). The
exemplars are then refined (:func:`refine`): each cluster's exemplar moves to
the member that is most similar to the rest of the cluster, and the points are
placed again, while that improves the total. A point without an edge to an
exemplar with room, or beyond the places there are (K exemplars hold at most
K x L points), is not placed: its cluster is -1, and a warning counts such
points and says how many exemplars are needed. When the nearest exemplars
already fit, the labels are plain AP's, unchanged.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse.csgraph import maximum_flow

from spark_ap.compat import to_arrow
from spark_ap.engines.assign import label_on_driver, labels_frame
from spark_ap.errors import user_stacklevel

log = logging.getLogger("spark_ap")

# Edges read onto the driver at most to refine the exemplars after a placement (3 arrays of 8-byte
# values each: 240 MB); above it the placement stands unrefined, and the log says so.
REFINE_UP_TO = 10_000_000


class CapacityWarning(UserWarning):
    """Some points could not be placed without exceeding maxClusterSize."""


def place(
    members: np.ndarray, exemplars: np.ndarray, s: np.ndarray, centres: np.ndarray, n: int, capacity: int
) -> np.ndarray:
    """Each of the ``n`` points' exemplar (-1: not placed), no exemplar with more than ``capacity``.

    As many points as possible are placed, and of those placements the one with the largest total
    similarity (:func:`transport`).

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
    keep = (chosen[members] < 0) & (chosen[exemplars] == exemplars) & (members != exemplars)
    members, exemplars, s = members[keep], exemplars[keep], s[keep]
    free = capacity - 1
    if free <= 0 or members.size == 0:
        return chosen
    taken = transport(members, exemplars, s, free)
    chosen[members[taken]] = exemplars[taken]
    return chosen


def transport(rows: np.ndarray, columns: np.ndarray, gain: np.ndarray, room: int | np.ndarray) -> np.ndarray:
    """Which pairs to take: each row at most once, each column at most ``room`` times, as many pairs as
    can be taken and, of those, the largest total ``gain``; a boolean mask over the pairs. ``room``
    is one number for every column, or an array indexed by the column (``room[c]`` for column c).

    The count is a maximum flow (source -> rows -> columns -> sink, integral); the gain a linear
    program over the pairs with that count as an equality, solved by HiGHS's dual simplex. Its
    constraint matrix, a bipartite incidence matrix with the sum of the row constraints added, is
    a network matrix in disguise (the flow's), so the optimal vertex is integral; it is checked, and
    a solution that is not (which would be a solver's failure) is solved again as an integer
    program. The pairs must be distinct.
    """
    r, ri = np.unique(rows, return_inverse=True)
    c, ci = np.unique(columns, return_inverse=True)
    room = np.full(c.size, room, dtype=np.int64) if np.ndim(room) == 0 else np.asarray(room, dtype=np.int64)[c]
    count = _most_pairs(ri, ci, r.size, c.size, room)
    m = rows.size
    pairs = np.arange(m)
    incidence = sparse.vstack(
        [
            sparse.csr_matrix((np.ones(m), (ri, pairs)), shape=(r.size, m)),
            sparse.csr_matrix((np.ones(m), (ci, pairs)), shape=(c.size, m)),
        ]
    ).tocsr()
    upper = np.concatenate([np.ones(r.size), room.astype(float)])
    total = sparse.csr_matrix(np.ones((1, m)))
    cost = -(gain - gain.max())  # shifted by a constant: the count is fixed, the optimum is the same
    solved = linprog(cost, A_ub=incidence, b_ub=upper, A_eq=total, b_eq=[count], bounds=(0, 1), method="highs-ds")
    x = solved.x if solved.status == 0 else None
    if x is None or np.abs(x - np.round(x)).max() > 1e-6:
        log.warning(
            "the placement's linear program gave no integral solution (%s); solving it in integers", solved.message
        )
        solved = milp(
            cost,
            constraints=[LinearConstraint(incidence, -np.inf, upper), LinearConstraint(total, count, count)],
            integrality=np.ones(m),
            bounds=Bounds(0, 1),
        )
        if solved.status != 0:
            raise RuntimeError(f"the placement of {r.size} points could not be solved: {solved.message}")
        x = solved.x
    taken = np.round(x) == 1
    if int(taken.sum()) != count:
        raise RuntimeError(f"the placement took {int(taken.sum())} pairs, not the {count} it can take")
    return taken


def _most_pairs(ri: np.ndarray, ci: np.ndarray, rows: int, columns: int, room: np.ndarray) -> int:
    """The largest number of pairs (``ri``, ``ci``) with each row at most once and column c at most
    ``room[c]`` times: a maximum flow, in integers."""
    if np.unique(ri).size == rows and rows <= room.sum() and ri.size == rows * columns:
        return rows  # every row has every column: all fit
    source, sink = rows + columns, rows + columns + 1
    tail = np.concatenate([np.full(rows, source), ri, rows + np.arange(columns)])
    head = np.concatenate([np.arange(rows), rows + ci, np.full(columns, sink)])
    cap = np.concatenate([np.ones(rows), np.ones(ri.size), np.minimum(room, rows)]).astype(np.int32)
    graph = sparse.csr_matrix((cap, (tail, head)), shape=(sink + 1, sink + 1))
    return int(maximum_flow(graph, source, sink).flow_value)


def refine(
    members: np.ndarray, exemplars: np.ndarray, s: np.ndarray, chosen: np.ndarray, capacity: int, rounds: int = 100
) -> np.ndarray:
    """``chosen`` (each point's exemplar, -1: not placed) with better exemplars, k-medoids style.

    ``members, exemplars, s`` are every edge (self-edges excluded, each pair once). Each cluster's
    exemplar moves to the member whose similarities from the other members sum highest, among the
    members every other member has an edge to (of equal sums: the exemplar itself, else the smaller
    number); the points are placed again around the new exemplars (:func:`place`); this repeats
    while it places more points or, as many, with a larger total similarity. The exemplar count is
    unchanged, so is the sum of their preferences: the net similarity grows by the same amount.
    """
    best, score = chosen, _score(members, exemplars, s, chosen)
    for _ in range(rounds):
        centres = _medoids(members, exemplars, s, best)
        if np.array_equal(centres, np.unique(best[best >= 0])):
            break
        into = np.isin(exemplars, centres)
        moved = place(members[into], exemplars[into], s[into], centres, best.size, capacity)
        moved_score = _score(members, exemplars, s, moved)
        if moved_score <= score:
            break
        best, score = moved, moved_score
    return best


def _score(members, exemplars, s, chosen) -> tuple[int, float]:
    """Points placed, then the total similarity of the others to their exemplars."""
    joins = chosen[members] == exemplars
    return int((chosen >= 0).sum()), float(s[joins].sum())


def _medoids(members, exemplars, s, chosen) -> np.ndarray:
    """Each cluster's best exemplar (:func:`refine`), sorted."""
    n = chosen.size
    inside = (chosen[members] >= 0) & (chosen[members] == chosen[exemplars])
    sums = np.bincount(exemplars[inside], weights=s[inside], minlength=n)
    edges = np.bincount(exemplars[inside], minlength=n)
    placed = np.flatnonzero(chosen >= 0)
    size = np.bincount(chosen[placed], minlength=n)
    candidate = placed[edges[placed] == size[chosen[placed]] - 1]
    cluster = chosen[candidate]
    order = np.lexsort((candidate, candidate != cluster, -sums[candidate], cluster))
    candidate, cluster = candidate[order], cluster[order]
    first = np.r_[True, cluster[1:] != cluster[:-1]]
    return np.sort(candidate[first])


def placed_and_refined(
    members: np.ndarray, exemplars: np.ndarray, s: np.ndarray, centres: np.ndarray, n: int, capacity: int
) -> np.ndarray:
    """:func:`place` around ``centres``, then :func:`refine`; ``members, exemplars, s`` every edge."""
    into = np.isin(exemplars, centres)
    chosen = place(members[into], exemplars[into], s[into], centres, n, capacity)
    return refine(members, exemplars, s, chosen, capacity)


def merge_within(
    members: np.ndarray, exemplars: np.ndarray, s: np.ndarray, size: np.ndarray, chosen: np.ndarray, capacity: int
) -> np.ndarray:
    """A level's merges, undone where they would exceed ``capacity`` points: each level point's
    exemplar (its number), a point standing for ``size`` points.

    ``chosen`` is each level point's exemplar as AP chose it; ``members, exemplars, s`` are the
    level's edges into those exemplars. Unchanged when every merged cluster is within the bound
    (``chosen`` itself). Only the clusters over the bound change: such a cluster's exemplar keeps
    itself, its other points rejoin it, the most similar first (ties: the smaller point), while its
    total stays within the bound, and a point that no longer fits stays an exemplar itself (its own
    cluster, already within the bound). Every other cluster is left as AP merged it.
    """
    load = np.bincount(chosen, weights=size, minlength=chosen.size)
    if load.max() <= capacity:
        return chosen
    over = load > capacity
    placed = chosen.copy()
    undone = over[chosen] & (chosen != np.arange(chosen.size))
    placed[undone] = -1
    load = np.where(over, size, load)
    back = undone[members] & (exemplars == chosen[members])
    order = np.lexsort((members[back], -s[back]))
    for point, centre in zip(members[back][order].tolist(), exemplars[back][order].tolist(), strict=True):
        if load[centre] + size[point] <= capacity:
            placed[point] = centre
            load[centre] += size[point]
    return np.where(placed >= 0, placed, np.arange(chosen.size))


def warn_unplaced(chosen: np.ndarray, capacity: int) -> None:
    """Warn, counting them, of the points ``place`` could not place, and say what to change."""
    unplaced = int((chosen < 0).sum())
    if not unplaced:
        return
    n, exemplars = chosen.size, int(np.unique(chosen[chosen >= 0]).size)
    if exemplars * capacity < n:
        needed = math.ceil(n / capacity)
        why = (
            f"{exemplars} exemplars hold at most {exemplars * capacity} points at maxClusterSize={capacity}, and "
            f"{n} points need at least {needed}: raise the preference until there are {needed} exemplars or more "
            f"(MultiLevelAffinityPropagation: numClusters={needed} searches for it), or raise maxClusterSize to "
            f"{math.ceil(n / max(exemplars, 1))}"
        )
    else:
        why = (
            f"they have no edge to an exemplar with room under maxClusterSize={capacity}: add their edges to "
            "exemplars, or raise the preference for more exemplars"
        )
    warnings.warn(
        f"{unplaced} of {n} points could not be placed and are in no cluster (cluster -1): {why}.",
        CapacityWarning,
        stacklevel=user_stacklevel(),
    )


def placed_labels(state: DataFrame, labels: DataFrame, capacity: int) -> DataFrame:
    """``labels`` (``id, cluster, exemplar``) with the points placed under ``capacity`` and the
    exemplars refined (:func:`placed_and_refined`), read from the final edge ``state``'s noisy
    similarities ``s``; ``labels`` itself when no cluster is over it. Above :data:`REFINE_UP_TO`
    edges only the edges into the exemplars are read, and the placement is not refined."""
    # Points without an exemplar (none found at all) are no cluster to bound.
    largest = labels.where(F.col("exemplar").isNotNull()).groupBy("exemplar").count().agg(F.max("count")).first()[0]
    if largest is None or largest <= capacity:
        return labels
    ids = np.sort(to_arrow(labels.select("id")).column("id").to_numpy(zero_copy_only=False))
    centres = labels.filter(F.col("id") == F.col("exemplar")).select(F.col("id").alias("dst"))
    pairs = state.filter(F.col("src") != F.col("dst"))
    edges = pairs.count()
    refining = edges <= REFINE_UP_TO
    if not refining:
        log.info("%d edges: the placement's exemplars are not refined (above %d)", edges, REFINE_UP_TO)
        pairs = pairs.join(F.broadcast(centres), "dst")
    table = to_arrow(pairs.select("src", "dst", "s"))

    def numbers(values) -> np.ndarray:
        return np.searchsorted(ids, values.to_numpy(zero_copy_only=False))

    members, exemplars, s = numbers(table.column("src")), numbers(table.column("dst")), table.column("s").to_numpy()
    into = numbers(to_arrow(centres).column("dst"))
    if refining:
        chosen = placed_and_refined(members, exemplars, s, into, ids.size, capacity)
    else:
        chosen = place(members, exemplars, s, into, ids.size, capacity)
    warn_unplaced(chosen, capacity)
    return labels_frame(labels.sparkSession, ids, labels.schema["id"].dataType, chosen)


def decisions_net(
    i: np.ndarray, j: np.ndarray, s: np.ndarray, decided: np.ndarray, capacity: int | None
) -> tuple[np.ndarray | None, tuple[int, float]]:
    """Where a run that ends on the exemplar decisions ``decided`` (a boolean per point) puts each
    point, and how good that is.

    ``i, j, s`` are every edge, self-edges (the preferences) included, sorted by (i, j). The points
    are labelled as the final assignment labels them (:func:`~spark_ap.engines.assign.label_on_driver`:
    nearest exemplar, refined exemplars, nearest again) and, with a ``capacity`` that a cluster
    exceeds, placed and refined (:func:`placed_and_refined`), as :func:`placed_labels` does a Spark
    run's labels. Returns each point's exemplar (-1: not placed; None: no exemplar) and its score:
    the points placed, then the net similarity (each placed point's similarity to its exemplar, an
    exemplar's own being its preference).
    """
    exemplar = label_on_driver(i, j, s, decided)
    if exemplar is None:
        return None, (0, -math.inf)
    if capacity and np.bincount(exemplar).max() > capacity:
        off = i != j
        exemplar = placed_and_refined(i[off], j[off], s[off], np.unique(exemplar), exemplar.size, capacity)
    joins = (exemplar[i] == j) & (exemplar[i] >= 0)
    return exemplar, (int((exemplar >= 0).sum()), float(s[joins].sum()))


def best_decisions(
    i: np.ndarray, j: np.ndarray, s: np.ndarray, candidates: list[tuple[int, np.ndarray]], capacity: int | None
) -> tuple[int, np.ndarray, np.ndarray] | None:
    """Of ``candidates`` (``iteration, exemplars``: the exemplar numbers a run decided at that
    iteration, oldest first), the one whose labels score best (:func:`decisions_net`: the most
    points placed, then the largest net similarity; of equal scores the latest): its iteration, its
    decisions (a boolean per point) and each point's exemplar. None when no candidate has an exemplar.
    ``i, j, s`` are every edge, self-edges included, sorted by (i, j)."""
    n = int(np.unique(i).size) if i.size else 0
    best, top = None, None
    for t, exemplars in candidates:
        decided = np.zeros(n, dtype=bool)
        decided[exemplars] = True
        exemplar, score = decisions_net(i, j, s, decided, capacity)
        if exemplar is not None and (top is None or score >= top):
            best, top = (t, decided, exemplar), score
    return best
