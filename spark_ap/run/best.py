"""The best decisions a run saw: where a run that does not converge ends (``endOn="best"``).

A run that stops at ``maxIter`` without converging has, at its last iteration, decisions that may
be worse than ones it held before (AP oscillates when it does not converge). With ``endOn="best"``
(the default) the loop remembers the exemplars of each of the last :data:`REMEMBERED` distinct
sets the iterations decided (:class:`Decisions`), and at the end labels each as the final
assignment would, places the points when there is a capacity, and ends on the one of the largest
net similarity (:func:`~spark_ap.engines.capacity.best_decisions`; of equal ones, the latest).

The candidates are evaluated on the driver, from the final edge state's ``src, dst, s``, whatever
the engine: so every engine ends on the same decisions, bit for bit. That needs the edges on the
driver, so a graph of more than :data:`~spark_ap.engines.LOCAL_MAX_EDGES` edges (what the local
engine holds there) ends on its last iteration's decisions, as ``endOn="last"`` (scikit-learn's
behaviour) does on any graph; the result says which (``endedOn``).

Decisions are kept as vertex ids, sorted, so that a save of one engine resumes in another and
ends as the uninterrupted run.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame

from spark_ap.compat import to_arrow
from spark_ap.engines import LOCAL_MAX_EDGES
from spark_ap.engines.blocks.pack import id_values
from spark_ap.engines.capacity import best_decisions
from spark_ap.engines.local import number_edges

# How many distinct exemplar sets, the latest, a run remembers to end on the best of them when it
# does not converge: each is K vertex ids, evaluated (labelled, placed) once, at the end.
REMEMBERED = 50


def ends_on_best(end_on: str, edges: int) -> bool:
    """Whether a run of ``edges`` edges (self-edges included) that does not converge ends on the
    best decisions it saw: asked for (``end_on`` "best") and its edges fit the driver, where the
    candidates are evaluated."""
    return end_on == "best" and edges <= LOCAL_MAX_EDGES


class Decisions:
    """The last :data:`REMEMBERED` distinct exemplar sets a run decided, each with the latest
    iteration that decided it (a set decided again moves to the end)."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        self.limit = limit
        self.seen: OrderedDict[tuple, tuple[int, np.ndarray]] = OrderedDict()

    def remember(self, t: int, exemplars: np.ndarray) -> None:
        """Iteration ``t`` decided the exemplars ``exemplars`` (vertex ids, sorted); none: nothing to remember."""
        if exemplars.size == 0:
            return
        key = tuple(exemplars.tolist())
        self.seen.pop(key, None)
        self.seen[key] = (t, exemplars)
        if len(self.seen) > self.limit:
            self.seen.popitem(last=False)

    def candidates(self) -> list[tuple[int, np.ndarray]]:
        """``iteration, exemplars`` of every set remembered, by iteration."""
        return sorted(self.seen.values(), key=lambda candidate: candidate[0])

    def copy(self) -> Decisions:
        """These decisions, remembered apart from this object's."""
        copy = Decisions(self.limit)
        copy.seen = OrderedDict(self.seen)
        return copy

    def saved(self, t: int, exemplars: np.ndarray) -> list[list]:
        """What a save of iteration ``t``, which decided ``exemplars``, keeps of them (JSON), so that
        a run resumed from it ends as the uninterrupted run (:meth:`of`)."""
        copy = self.copy()
        copy.remember(t, exemplars)
        return [[t, exemplars.tolist()] for t, exemplars in copy.seen.values()]

    @classmethod
    def of(cls, stats: dict | None) -> Decisions:
        """The decisions a save's counts ``stats`` kept (:meth:`saved`); none in a save of a run
        that did not remember them."""
        decisions = cls()
        for t, exemplars in (stats or {}).get("decisions", []):
            decisions.remember(t, np.asarray(exemplars))
        return decisions


def best_seen(
    edges: DataFrame | pa.Table, candidates: list[tuple[int, np.ndarray]], capacity: int | None
) -> tuple[int, np.ndarray] | None:
    """Of ``candidates`` (``iteration, exemplar ids``), the decisions that score best on the final
    edge state ``edges`` (its ``src, dst, s``), read to the driver: their iteration and their
    exemplars' ids, sorted. None when no candidate has an exemplar."""
    if not candidates:
        return None
    table = edges if isinstance(edges, pa.Table) else to_arrow(edges.select("src", "dst", "s"))
    ids, i, j, order = number_edges(id_values(table.column("src")), id_values(table.column("dst")))
    s = table.column("s").to_numpy()[order]
    numbered = []
    for t, exemplars in candidates:
        at = np.minimum(np.searchsorted(ids, np.asarray(exemplars, dtype=ids.dtype)), ids.size - 1)
        if np.array_equal(ids[at], exemplars):  # a save of an older version kept vertex numbers: left out
            numbered.append((t, at))
    found = best_decisions(i, j, s, numbered, capacity)
    return None if found is None else (found[0], ids[found[1]])
