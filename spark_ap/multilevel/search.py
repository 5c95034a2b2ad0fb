"""The search for a number of clusters: bisection over the preference, as R apcluster's ``apclusterK``."""

from __future__ import annotations

import logging

import numpy as np
from pyspark.sql import DataFrame

from spark_ap.multilevel.levels import LevelConfig, Levels, run_levels
from spark_ap.multilevel.result import LevelGraph

log = logging.getLogger("spark_ap")


def search_preference(
    config: LevelConfig, points: DataFrame, graph: LevelGraph, start: float, values: np.ndarray
) -> tuple[Levels, list[tuple[float, int]]]:
    """Bisection over the preference for numClusters clusters; the closest run and every attempt.

    More preference gives more clusters (nearly always). The range runs from
    the largest pairwise similarity, where nearly every point is its own
    exemplar, down to a preference low enough to merge everything at the
    weights the levels use. The first attempt is the preference asked for.
    A run below every similarity that does not converge (the messages
    oscillate there) counts as too few clusters, whatever its labels say.
    """
    want, tolerance, n = config.num_clusters, config.cluster_tolerance, graph.points
    weight = min(n, config.resolution or n)
    hi, floor = float(values.max()), float(values.min())
    lo = floor - weight * (hi - floor)
    p = start if lo < start < hi else (lo + hi) / 2
    best, attempts = None, []

    def degenerate(outcome: Levels, p: float) -> bool:
        # Below every similarity AP oscillates: a run that does not converge there may call every
        # point an exemplar (scikit-learn's does too), yet its preference was too low, not too high.
        return not outcome.converged and p < floor

    def rank(outcome: Levels, p: float) -> tuple[bool, int]:
        return degenerate(outcome, p), abs(outcome.clusters - want)

    for attempt in range(config.max_attempts):
        outcome = run_levels(config, points, graph, p, f"attempt-{attempt}/")
        attempts.append((p, outcome.clusters))
        log.info("preference search: %g gives %d clusters (want %d)", p, outcome.clusters, want)
        if best is None or rank(outcome, p) < rank(best, best.preference):
            best = outcome
        if not degenerate(outcome, p) and abs(outcome.clusters - want) <= tolerance:
            break
        if outcome.clusters > want and not degenerate(outcome, p):
            hi = p
        else:
            lo = p
        p = (lo + hi) / 2
    return best, attempts
