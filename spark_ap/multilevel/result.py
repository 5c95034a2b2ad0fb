"""What a multi-level run returns, and level 0's graph."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import DataFrame

LEVEL_COLUMNS = ["level", "points", "edges", "graph", "clusters", "iterations", "converged", "resumed_from", "seconds"]


@dataclass
class LevelGraph:
    """Level 0's graph: edges (src, dst, similarity), how they were made, their recall, and the points."""

    edges: DataFrame | None  # None: all pairs, which the driver holds (multilevel.driver)
    complete: bool
    recall: float | None
    points: int


@dataclass
class MultiLevelResult:
    """What :meth:`MultiLevelAffinityPropagation.run` returns.

    Attributes
    ----------
    assignments : DataFrame
        ``id, cluster, exemplar``: one row per point, clusters numbered from 0
        in the order of their exemplars' ids. A point that ``maxClusterSize``
        leaves out is cluster -1 with a null exemplar
        (docs/capacity.md#points-left-out).
    exemplars : DataFrame
        ``cluster, exemplar, size``: the clusters, without the points left out.
    levels : pandas.DataFrame
        One row per level: ``level, points`` (clustered at that level),
        ``edges, graph`` ("all pairs" or "k-NN"), ``clusters, iterations,
        converged``, ``resumed_from`` (the saved iteration it resumed from, or
        None) and ``seconds``.
    levelAssignments : DataFrame
        ``level, id, exemplar``: at each level, the exemplar each of that
        level's points chose (level 0: every point; level l: the exemplars of
        level l - 1).
    history : pandas.DataFrame
        ``level, iteration, exemplars, changed``.
    preference : float
        The preference value used.
    preferenceSource : str
        Where it came from: given, the complete graph's edges, or sampled pairs.
    recall : float or None
        Level 0's approximate graph: the fraction of true nearest neighbours it
        holds, measured on a sample of points; None for an all-pairs graph.
    attempts : pandas.DataFrame
        ``preference, clusters`` of each run of the search for ``numClusters``
        (one row without a search).
    numVertices, numEdges : int
        Points, and edges of level 0's graph (self-edges included).
    numIterations : int
        Iterations of all levels together.
    converged : bool
        Whether the last level converged.
    netSimilarity : float
        Sum of s(i, exemplar(i)) over the points that are not exemplars, plus
        ``preference`` for every exemplar (Frey and Dueck's objective), with
        the similarities computed from the features.
    resumedFrom : int or None
        The saved iteration of the first level that resumed from a save.
    """

    assignments: DataFrame
    exemplars: DataFrame
    levels: pd.DataFrame
    levelAssignments: DataFrame
    history: pd.DataFrame
    preference: float
    preferenceSource: str
    recall: float | None
    attempts: pd.DataFrame
    numVertices: int
    numEdges: int
    numIterations: int
    converged: bool
    netSimilarity: float | None = None
    resumedFrom: int | None = None
    _keep: list = field(default_factory=list, repr=False)

    def unpersist(self) -> None:
        """Release what the run keeps in executor storage."""
        for df in self._keep:
            df.unpersist()
