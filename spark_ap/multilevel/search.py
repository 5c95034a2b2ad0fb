"""The search for a number of clusters: bisection over the preference, as R apcluster's ``apclusterK``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

log = logging.getLogger("spark_ap")

# A bracket whose ends lie further than this ratio apart, measured down from the largest
# similarity, is halved on a log scale rather than a linear one.
GEOMETRIC_ABOVE = 4.0


class Attempt(Protocol):
    """What the search reads of a run at one preference."""

    preference: float
    clusters: int
    converged: bool


def search_preference(
    run: Callable[[float, int], Attempt],
    want: int,
    tolerance: int,
    max_attempts: int,
    values: np.ndarray,
    start: float,
    weight: float,
) -> tuple[Attempt, list[tuple[float, int]]]:
    """Bisection over the preference for ``want`` clusters: the closest run and every attempt.

    ``run(preference, attempt)`` clusters at one preference; ``values`` are
    (sampled) pairwise similarities and ``weight`` how many points a level's
    point may stand for. More preference gives more clusters (nearly always).
    The range runs from the largest similarity, where nearly every point is
    its own exemplar, down to a preference low enough to merge everything at
    that weight. The first attempt is the preference asked for (``start``).

    Two rules keep the search out of the region where AP oscillates rather
    than converges (low preferences, where its cluster counts are noise):

    * a run that does not converge counts as too few clusters, whatever its
      labels say, when its preference is below every similarity, or when a
      converged run at a higher preference found fewer clusters than it did
      (more clusters at less preference is the oscillation, not the data);
    * a bracket spanning orders of magnitude below the largest similarity is
      halved on a log scale of the distance from it, so the first steps down
      from the median do not land thousands of times below it (on the bundled
      400 points, 6 clusters took 14 attempts with linear halving, 4 with these).
    """
    top, floor = float(values.max()), float(values.min())
    hi, lo = top, floor - weight * (top - floor)
    p = start if lo < start < hi else (lo + hi) / 2
    best, best_rank, attempts, converged = None, None, [], []

    def too_low(outcome: Attempt) -> bool:
        p = outcome.preference
        fewer_above = any(q > p and k < outcome.clusters for q, k in converged)
        return not outcome.converged and (p < floor or fewer_above)

    for attempt in range(max_attempts):
        outcome = run(p, attempt)
        attempts.append((p, outcome.clusters))
        log.info("preference search: %g gives %d clusters (want %d)", p, outcome.clusters, want)
        degenerate = too_low(outcome)
        if outcome.converged:
            converged.append((p, outcome.clusters))
        rank = (degenerate, abs(outcome.clusters - want))  # a degenerate run ranks after every other
        if best is None or rank < best_rank:
            best, best_rank = outcome, rank
        if not degenerate and abs(outcome.clusters - want) <= tolerance:
            break
        if outcome.clusters > want and not degenerate:
            hi = p
        else:
            lo = p
        p = _between(lo, hi, top)
    return best, attempts


def _between(lo: float, hi: float, top: float) -> float:
    """The next preference in (lo, hi): the midpoint, or the geometric mean of the two distances
    from ``top`` when they differ by more than :data:`GEOMETRIC_ABOVE` times."""
    far, near = top - lo, top - hi
    if near > 0 and far / near > GEOMETRIC_ABOVE:
        return top - math.sqrt(far * near)
    return (lo + hi) / 2
