"""The search for a number of clusters: bisection over the preference, as R apcluster's ``apclusterK``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from pyspark.sql import DataFrame

from spark_ap.multilevel.levels import Levels, run_levels
from spark_ap.multilevel.result import Graph

if TYPE_CHECKING:
    from spark_ap.multilevel.estimator import MultiLevelAffinityPropagation

log = logging.getLogger("spark_ap")


def search_preference(
    ap: MultiLevelAffinityPropagation, points: DataFrame, graph: Graph, n: int, start: float, values: np.ndarray
) -> tuple[Levels, list[tuple[float, int]]]:
    """Bisection over the preference for numClusters clusters; the closest run and every attempt.

    More preference gives more clusters (nearly always). The range runs from
    the largest pairwise similarity, where nearly every point is its own
    exemplar, down to a preference low enough to merge everything at the
    weights the levels use. The first attempt is the preference asked for.
    A run that does not converge (at a preference so low that the messages
    oscillate) counts as too few clusters, whatever its labels say.
    """
    want, tolerance = ap.getNumClusters(), ap.getClusterTolerance()
    weight = min(n, ap.getResolution() or n)
    hi = float(values.max())
    lo = float(values.min()) - weight * (hi - float(values.min()))
    p = start if lo < start < hi else (lo + hi) / 2
    best, attempts = None, []

    def rank(outcome: Levels) -> tuple[bool, int]:  # converged runs first, then the closest
        return not outcome.converged, abs(outcome.clusters - want)

    for attempt in range(ap.getMaxAttempts()):
        outcome = run_levels(ap, points, graph, n, p, f"attempt-{attempt}/")
        attempts.append((p, outcome.clusters))
        log.info("preference search: %g gives %d clusters (want %d)", p, outcome.clusters, want)
        # Far below the similarities AP oscillates: a run that does not converge may call every point an
        # exemplar (scikit-learn's does too), yet its preference was too low, not too high.
        if best is None or rank(outcome) < rank(best):
            best = outcome
        if outcome.converged and abs(outcome.clusters - want) <= tolerance:
            break
        if outcome.clusters > want and outcome.converged:
            hi = p
        else:
            lo = p
        p = (lo + hi) / 2
    return best, attempts
