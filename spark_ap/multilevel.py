"""Affinity Propagation for feature tables too large for a complete graph.

On a sparse graph a point can only choose an exemplar it has an edge to, so on
a k-nearest-neighbour graph no cluster holds more than k + 1 points or so.
:class:`MultiLevelAffinityPropagation` goes past that limit by levels:

1. Level 0 clusters the points on their k-nearest-neighbour graph (exact
   all-pairs when there are few points, approximate above that, see
   :mod:`spark_ap.lib.neighbors`).
2. Each next level clusters the previous level's exemplars, each standing for
   its whole cluster: exemplar i choosing exemplar k costs what all of i's
   members would lose by moving to k,
   ``s'(i, k) = sum over members m of i of (s(m, k) - s(m, i))``,
   computed exactly from each cluster's size and feature sum; staying an
   exemplar costs the points' preference (less s(i, i), which that sum
   counts). Every point follows its exemplar.
3. Levels stop when the number of clusters no longer shrinks.

So each level optimises the same objective as AP on the complete graph would,
over the exemplars that are left. That objective has a scale: with a fixed
preference, a cluster of many points is worth splitting (dense AP on 2,000
points of one 10-D Gaussian at the median preference of 50 such blobs finds 5
exemplars, on 200 points 1). ``resolution`` fixes the scale: the levels weigh
clusters as if the data had ``resolution`` points, so the clusters are those AP
finds on that many points of the same data, whatever the data's size.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.clustering import AffinityPropagation, result_params
from spark_ap.errors import ConvergenceWarning
from spark_ap.graph import all_pairs, similarity_matrix
from spark_ap.lib import assign, neighbors
from spark_ap.lib.mlparams import SpecParams, spec_param
from spark_ap.lib.preference import preference_value, sampled_similarities, statistic
from spark_ap.lib.validation import refuse_zero_vectors, validate_features
from spark_ap.params import MULTILEVEL

log = logging.getLogger("spark_ap")

LEVEL_COLUMNS = ["level", "points", "edges", "graph", "clusters", "iterations", "converged", "resumed_from", "seconds"]


@dataclass
class Graph:
    """Level 0's graph: edges (src, dst, similarity), how they were made, their recall, and the points."""

    edges: DataFrame
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
        in the order of their exemplars' ids.
    exemplars : DataFrame
        ``cluster, exemplar, size``.
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


class _MultiLevelParams(SpecParams):
    """MultiLevelAffinityPropagation's params; names, docs, defaults and bounds are in :mod:`spark_ap.params`."""

    _estimator = MULTILEVEL
    idCol = spec_param("idCol")
    featuresCol = spec_param("featuresCol")
    metric = spec_param("metric")
    preference = spec_param("preference")
    preferenceSample = spec_param("preferenceSample")
    numNeighbors = spec_param("numNeighbors")
    exactBelow = spec_param("exactBelow")
    levelExactBelow = spec_param("levelExactBelow")
    numTrees = spec_param("numTrees")
    leafSize = spec_param("leafSize")
    resolution = spec_param("resolution")
    maxLevels = spec_param("maxLevels")
    knnMaxIter = spec_param("knnMaxIter")
    numClusters = spec_param("numClusters")
    clusterTolerance = spec_param("clusterTolerance")
    maxAttempts = spec_param("maxAttempts")
    damping = spec_param("damping")
    maxIter = spec_param("maxIter")
    convergenceIter = spec_param("convergenceIter")
    checkpointInterval = spec_param("checkpointInterval")
    checkpointKind = spec_param("checkpointKind")
    stateDir = spec_param("stateDir")
    engine = spec_param("engine")
    noise = spec_param("noise")
    seed = spec_param("seed")

    def getIdCol(self) -> str:
        return self._get("idCol")

    def getFeaturesCol(self) -> str:
        return self._get("featuresCol")

    def getMetric(self) -> str:
        return self._get("metric")

    def getPreference(self) -> float | str:
        return self._get("preference")

    def getPreferenceSample(self) -> int:
        return self._get("preferenceSample")

    def getNumNeighbors(self) -> int:
        return self._get("numNeighbors")

    def getExactBelow(self) -> int:
        return self._get("exactBelow")

    def getLevelExactBelow(self) -> int:
        return self._get("levelExactBelow")

    def getNumTrees(self) -> int:
        return self._get("numTrees")

    def getLeafSize(self) -> int:
        return self._get("leafSize")

    def getResolution(self) -> int:
        return self._get("resolution")

    def getMaxLevels(self) -> int:
        return self._get("maxLevels")

    def getKnnMaxIter(self) -> int:
        return self._get("knnMaxIter")

    def getNumClusters(self) -> int:
        return self._get("numClusters")

    def getClusterTolerance(self) -> int:
        return self._get("clusterTolerance")

    def getMaxAttempts(self) -> int:
        return self._get("maxAttempts")

    def getDamping(self) -> float:
        return self._get("damping")

    def getMaxIter(self) -> int:
        return self._get("maxIter")

    def getCheckpointInterval(self) -> int:
        return self._get("checkpointInterval")

    def getSeed(self) -> int:
        return self._get("seed")

    def getConvergenceIter(self) -> int:
        return self._get("convergenceIter")

    def getCheckpointKind(self) -> str:
        return self._get("checkpointKind")

    def getEngine(self) -> str:
        return self._get("engine")

    def getNoise(self) -> str:
        return self._get("noise")

    def getStateDir(self) -> str | None:
        return self._get("stateDir")


class MultiLevelAffinityPropagation(_MultiLevelParams, DefaultParamsReadable, DefaultParamsWritable):
    """Affinity Propagation on a feature table of any size, by levels of sparse AP.

    Small tables (at most ``exactBelow`` rows) get the complete graph and one
    level: the result is :class:`~spark_ap.AffinityPropagation` on all pairs,
    i.e. scikit-learn's. Larger ones get an approximate k-nearest-neighbour
    graph, then levels as the module docstring describes.

    Parameters
    ----------
    idCol, featuresCol : str, default "id", "features"
    metric : {"sqeuclidean", "cosine"}, default "sqeuclidean"
    preference : float or str, default "median"
        A number (the value), or a statistic of all pairwise similarities:
        ``"median"``, ``"min"`` or ``"quantile:0.1"`` (any quantile in (0, 1)). Exact on a complete
        graph; on an approximate one, estimated from the pairs of
        ``preferenceSample`` points (the kept edges are the most similar pairs,
        so their median would be far too high).
    preferenceSample : int, default 2000
    numNeighbors : int, default 10
    exactBelow : int, default 2000
    levelExactBelow : int, default 400
        Levels above the first with at most this many exemplars use all their
        pairs, larger ones a k-NN graph. All pairs merge more per level, but
        cost the square of the exemplars in every iteration.
    numTrees, leafSize : int, default 4, 1000
        Random projection trees of the approximate graph (see
        :func:`spark_ap.lib.neighbors.knn_candidates`).
    resolution : int, default 10000
        Levels weigh each cluster as if the data had this many points: the
        clusters are those AP finds on a sample of that size, whatever the
        data's size. 0 weighs clusters by their true sizes (the exact AP
        objective, where a fixed preference splits ever more as data grows).
    maxLevels : int, default 10
    knnMaxIter : int, default 50
        Iterations at most of a level on a k-NN graph (``maxIter`` is for
        all-pairs levels). Such a level only groups neighbours for the next,
        and on a k-NN graph a few decisions keep flickering: running it to
        ``maxIter`` costs time and changes little.
    numClusters : int, default 0
        When > 0, search the preference (bisection, as R apcluster's
        ``apclusterK``) for this many clusters, within ``clusterTolerance``,
        over at most ``maxAttempts`` runs; level 0's graph is built once.
    clusterTolerance, maxAttempts : int, default 0, 20
    damping, maxIter, convergenceIter, checkpointInterval, checkpointKind, engine, noise, seed
        Passed to :class:`~spark_ap.AffinityPropagation` at every level.
    stateDir : str, optional
        Each level saves its state in a folder under this one.

    Examples
    --------
    >>> ap = MultiLevelAffinityPropagation(numNeighbors=10)
    >>> ap.assignClusters(features).show()  # doctest: +SKIP
    """

    @keyword_only
    def __init__(
        self,
        *,
        idCol: str = "id",
        featuresCol: str = "features",
        metric: str = "sqeuclidean",
        preference: float | str = "median",
        preferenceSample: int = 2000,
        numNeighbors: int = 10,
        exactBelow: int = 2000,
        levelExactBelow: int = 400,
        numTrees: int = 4,
        leafSize: int = 1000,
        resolution: int = 10000,
        maxLevels: int = 10,
        knnMaxIter: int = 50,
        numClusters: int = 0,
        clusterTolerance: int = 0,
        maxAttempts: int = 20,
        damping: float = 0.5,
        maxIter: int = 200,
        convergenceIter: int = 15,
        checkpointInterval: int = 10,
        checkpointKind: str = "auto",
        stateDir: str | None = None,
        engine: str = "auto",
        noise: str | bool = "edge",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        idCol: str = "id",
        featuresCol: str = "features",
        metric: str = "sqeuclidean",
        preference: float | str = "median",
        preferenceSample: int = 2000,
        numNeighbors: int = 10,
        exactBelow: int = 2000,
        levelExactBelow: int = 400,
        numTrees: int = 4,
        leafSize: int = 1000,
        resolution: int = 10000,
        maxLevels: int = 10,
        knnMaxIter: int = 50,
        numClusters: int = 0,
        clusterTolerance: int = 0,
        maxAttempts: int = 20,
        damping: float = 0.5,
        maxIter: int = 200,
        convergenceIter: int = 15,
        checkpointInterval: int = 10,
        checkpointKind: str = "auto",
        stateDir: str | None = None,
        engine: str = "auto",
        noise: str | bool = "edge",
        seed: int = 0,
    ) -> MultiLevelAffinityPropagation:
        """Set the params given by keyword."""
        return self._setChecked(**self._input_kwargs)

    def setIdCol(self, value: str) -> MultiLevelAffinityPropagation:
        return self._setChecked(idCol=value)

    def setFeaturesCol(self, value: str) -> MultiLevelAffinityPropagation:
        return self._setChecked(featuresCol=value)

    def setMetric(self, value: str) -> MultiLevelAffinityPropagation:
        return self._setChecked(metric=value)

    def setPreference(self, value: float | str) -> MultiLevelAffinityPropagation:
        return self._setChecked(preference=value)

    def setPreferenceSample(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(preferenceSample=value)

    def setNumNeighbors(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(numNeighbors=value)

    def setExactBelow(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(exactBelow=value)

    def setLevelExactBelow(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(levelExactBelow=value)

    def setNumTrees(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(numTrees=value)

    def setLeafSize(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(leafSize=value)

    def setResolution(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(resolution=value)

    def setMaxLevels(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(maxLevels=value)

    def setKnnMaxIter(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(knnMaxIter=value)

    def setNumClusters(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(numClusters=value)

    def setClusterTolerance(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(clusterTolerance=value)

    def setMaxAttempts(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(maxAttempts=value)

    def setDamping(self, value: float) -> MultiLevelAffinityPropagation:
        return self._setChecked(damping=value)

    def setMaxIter(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(maxIter=value)

    def setConvergenceIter(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(convergenceIter=value)

    def setCheckpointInterval(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(checkpointInterval=value)

    def setCheckpointKind(self, value: str) -> MultiLevelAffinityPropagation:
        return self._setChecked(checkpointKind=value)

    def setStateDir(self, value: str | None) -> MultiLevelAffinityPropagation:
        return self._setChecked(stateDir=value)

    def setEngine(self, value: str) -> MultiLevelAffinityPropagation:
        return self._setChecked(engine=value)

    def setNoise(self, value: str | bool) -> MultiLevelAffinityPropagation:
        return self._setChecked(noise=value)

    def setSeed(self, value: int) -> MultiLevelAffinityPropagation:
        return self._setChecked(seed=value)

    def _check(self) -> None:
        self._check_spec()
        self._level_ap(0.0, self.getMaxIter(), None)  # checks the params it passes on

    def _level_ap(self, preference: float, max_iter: int, state_dir: str | None) -> AffinityPropagation:
        """The AffinityPropagation that clusters one level."""
        return AffinityPropagation(
            damping=self.getDamping(),
            maxIter=max_iter,
            convergenceIter=self.getConvergenceIter(),
            preference=preference,
            checkpointInterval=self.getCheckpointInterval(),
            checkpointKind=self.getCheckpointKind(),
            stateDir=state_dir,
            engine=self.getEngine(),
            noise=self.getNoise(),
            seed=self.getSeed(),
        )

    def _points(self, features: DataFrame) -> DataFrame:
        """(id, x), validated; for cosine, x scaled to unit length (then d2 = 2 - 2 cos)."""
        points = validate_features(features, self.getIdCol(), self.getFeaturesCol())
        if self.getMetric() == "cosine":
            refuse_zero_vectors(points)
            norm = F.sqrt(F.aggregate("x", F.lit(0.0), lambda acc, v: acc + v * v))
            points = points.select("id", F.transform("x", lambda v: v / norm).alias("x"))
        return points.localCheckpoint()

    def _similarity(self, d2):
        """Similarity from squared distance (of unit vectors for cosine)."""
        return -d2 if self.getMetric() == "sqeuclidean" else 1 - d2 / 2

    def _dense(self, X: np.ndarray) -> np.ndarray:
        return similarity_matrix(X, self.getMetric())

    def _knn(self, points: DataFrame) -> DataFrame:
        """(src, dst, d2): about numNeighbors nearest neighbours of every point, from the trees."""
        return neighbors.knn_candidates(
            points, self.getNumNeighbors(), trees=self.getNumTrees(), leaf_size=self.getLeafSize(), seed=self.getSeed()
        )

    def buildGraph(self, features: DataFrame) -> tuple[DataFrame, Graph]:
        """Level 0's graph of a feature table: (points (id, x), :class:`Graph`).

        All pairs up to exactBelow points, else an approximate k-NN graph.
        """
        points = self._points(features)
        n = points.count()
        if n <= self.getExactBelow():
            return points, Graph(all_pairs(points, self.getMetric()).localCheckpoint(), True, None, n)
        near = self._knn(points).localCheckpoint()
        recall = neighbors.recall(points, near, self.getNumNeighbors(), seed=self.getSeed())
        log.info("approximate %d-NN graph: recall %.3f on a sample", self.getNumNeighbors(), recall)
        pairs = neighbors.symmetrise(near)
        edges = pairs.select("src", "dst", self._similarity(F.col("d2")).alias("similarity")).localCheckpoint()
        return points, Graph(edges, False, recall, n)

    def run(self, features: DataFrame) -> MultiLevelResult:
        """Cluster the rows of ``features`` (``idCol``, ``featuresCol``)."""
        self._check()
        points, graph = self.buildGraph(features)
        n = graph.points
        pref, sample = self.getPreference(), min(n, self.getPreferenceSample())
        values = None
        if not isinstance(pref, str):
            value, source = float(pref), "given"
        elif graph.complete:
            value, source = preference_value(graph.edges, pref), f"{pref} of all pairwise similarities"
        else:
            values = self._sampled(points)
            value = statistic(values, pref)
            source = f"{pref} of the {values.size} pairwise similarities of {sample} sampled points"
        if self.getNumClusters():
            values = self._sampled(points) if values is None else values
            outcome, attempts = self._search(points, graph, n, value, values)
            value, source = outcome.preference, f"searched for {self.getNumClusters()} clusters"
        else:
            outcome = self._levels(points, graph, n, value, "")
            attempts = [(value, outcome.clusters)]
        result = outcome.result(
            preference=value,
            source=source,
            recall=graph.recall,
            attempts=pd.DataFrame(attempts, columns=["preference", "clusters"]),
        )
        result.netSimilarity = self._net_similarity(points, result.assignments, value)
        return result

    def _net_similarity(self, points: DataFrame, assignments: DataFrame, preference: float) -> float:
        """Frey and Dueck's objective of the final clusters: s(i, exemplar(i)) summed over the other
        points, plus the preference of every exemplar, with the similarities computed from the features."""
        x = points.select("id", "x")
        e = points.select(F.col("id").alias("exemplar"), F.col("x").alias("e"))
        pairs = assignments.filter(F.col("id") != F.col("exemplar")).join(x, "id").join(e, "exemplar")
        d2 = F.aggregate(F.zip_with("x", "e", lambda a, b: (a - b) * (a - b)), F.lit(0.0), lambda acc, v: acc + v)
        total = pairs.agg(F.sum(self._similarity(d2))).first()[0] or 0.0
        exemplars = assignments.filter(F.col("id") == F.col("exemplar")).count()
        return float(total) + exemplars * preference

    def _sampled(self, points: DataFrame) -> np.ndarray:
        return sampled_similarities(points, self._dense, sample=self.getPreferenceSample(), seed=self.getSeed())

    def resultParams(self) -> dict:
        """The params that decide what a run computes, by name (not those that say only how it runs)."""
        return result_params(self)

    def assignClusters(self, features: DataFrame) -> DataFrame:
        """Cluster and return ``id, cluster, exemplar``; see :meth:`run`."""
        return self.run(features).assignments

    def _search(self, points, graph, n, start, values) -> tuple[_Levels, list[tuple[float, int]]]:
        """Bisection over the preference for numClusters clusters; the closest run and every attempt.

        More preference gives more clusters (nearly always). The range runs from
        the largest pairwise similarity, where nearly every point is its own
        exemplar, down to a preference low enough to merge everything at the
        weights the levels use. The first attempt is the preference asked for.
        """
        want, tolerance = self.getNumClusters(), self.getClusterTolerance()
        weight = min(n, self.getResolution() or n)
        hi = float(values.max())
        lo = float(values.min()) - weight * (hi - float(values.min()))
        p = start if lo < start < hi else (lo + hi) / 2
        best, attempts = None, []
        for attempt in range(self.getMaxAttempts()):
            outcome = self._levels(points, graph, n, p, f"attempt-{attempt}/")
            attempts.append((p, outcome.clusters))
            log.info("preference search: %g gives %d clusters (want %d)", p, outcome.clusters, want)
            if best is None or abs(outcome.clusters - want) < abs(best.clusters - want):
                best = outcome
            if abs(outcome.clusters - want) <= tolerance:
                break
            if outcome.clusters > want:
                hi = p
            else:
                lo = p
            p = (lo + hi) / 2
        return best, attempts

    def _levels(self, points: DataFrame, graph: Graph, n: int, preference: float, label: str) -> _Levels:
        """Run the levels at one preference."""
        scale = min(1.0, self.getResolution() / n) if self.getResolution() else 1.0
        factor = 1.0 if self.getMetric() == "sqeuclidean" else 0.5
        root = self.getStateDir()
        level_preference = preference
        mapping = points.select("id", F.col("id").alias("exemplar"))  # every point -> its current exemplar
        level_points, edges, count = points.select("id"), graph.edges, n
        rows, histories, chosen_all = [], [], []
        iterations, converged = 0, True
        for level in range(self.getMaxLevels()):
            started = time.time()
            state_dir = f"{root.rstrip('/')}/{label}level-{level}" if root else None
            complete = graph.complete if level == 0 else count <= self.getLevelExactBelow()
            max_iter = self.getMaxIter() if complete else self.getKnnMaxIter()
            with warnings.catch_warnings():
                # A level's convergence goes into the levels table; only the last level's warns.
                warnings.simplefilter("ignore", ConvergenceWarning)
                level_ap = self._level_ap(level_preference, max_iter, state_dir)
                result = level_ap._run(edges, level_points, trusted=True)
            chosen = result.assignments.select("id", F.coalesce("exemplar", "id").alias("next")).localCheckpoint()
            clusters = chosen.select("next").distinct().count()
            iterations += result.numIterations
            converged = result.converged
            rows.append(
                (
                    level,
                    count,
                    result.numEdges,
                    "all pairs" if complete else "k-NN",
                    clusters,
                    result.numIterations,
                    result.converged,
                    result.resumedFrom,
                    round(time.time() - started, 3),
                )
            )
            histories.append(result.history.assign(level=level))
            chosen_all.append(chosen.select(F.lit(level).alias("level"), "id", F.col("next").alias("exemplar")))
            log.info(
                "level %d: %d points -> %d clusters in %d iterations (converged=%s)",
                level,
                count,
                clusters,
                result.numIterations,
                result.converged,
            )
            result.unpersist()
            mapping = (
                mapping.join(chosen.withColumnRenamed("id", "exemplar"), "exemplar")
                .select("id", F.col("next").alias("exemplar"))
                .localCheckpoint()
            )
            if (level == 0 and graph.complete) or clusters >= count or clusters <= 1:
                break
            level_points, edges = self._next_level(points, mapping, clusters, scale * factor)
            # An exemplar that stays one pays the preference instead of its own
            # similarity to itself, which the shifted similarities count (cosine: 1).
            level_preference = preference - (scale if self.getMetric() == "cosine" else 0.0)
            count = clusters
        return _Levels(
            mapping=mapping,
            clusters=clusters,
            preference=preference,
            levels=pd.DataFrame(rows, columns=LEVEL_COLUMNS).astype({"resumed_from": "Int64"}),
            history=pd.concat(histories, ignore_index=True)[["level", "iteration", "exemplars", "changed"]],
            chosen=chosen_all,
            iterations=iterations,
            converged=converged,
            n=n,
        )

    def _next_level(
        self, points: DataFrame, mapping: DataFrame, count: int, weight: float
    ) -> tuple[DataFrame, DataFrame]:
        """The exemplars (id) and their graph for the next level.

        ``s'(i, k) = weight * sum over members m of i of (s(m, k) - s(m, i))``.
        With s = -|x - y|^2 a member's term is
        ``2 x_m . (x_k - x_i) - (|x_k|^2 - |x_i|^2)``, so the sum needs only the
        cluster's size and feature sum. Cosine similarity on unit vectors is
        1 - |x - y|^2 / 2: half of that (``weight`` carries the half).
        """
        dims = F.posexplode("x").alias("pos", "v")
        sums = (
            mapping.join(points, "id")
            .select("exemplar", dims)
            .groupBy("exemplar", "pos")
            .agg(F.sum("v").alias("v"), F.count(F.lit(1)).alias("size"))
            .groupBy("exemplar")
            .agg(F.array_sort(F.collect_list(F.struct("pos", "v"))).alias("sv"), F.first("size").alias("size"))
            .select(F.col("exemplar").alias("id"), F.transform("sv", lambda e: e["v"]).alias("sum"), "size")
        )
        exemplars = points.join(sums, "id").localCheckpoint()
        if count <= self.getLevelExactBelow():
            return exemplars.select("id"), self._complete_level(exemplars, weight)
        pairs = neighbors.symmetrise(self._knn(exemplars.select("id", "x")))

        def dot(a, b):
            return F.aggregate(F.zip_with(a, b, lambda u, v: u * v), F.lit(0.0), lambda s, v: s + v)

        xs = exemplars.select(F.col("id").alias("src"), F.col("x").alias("xs"), "sum", "size")
        xd = exemplars.select(F.col("id").alias("dst"), F.col("x").alias("xd"))
        joined = pairs.select("src", "dst").join(xs, "src").join(xd, "dst")
        gain = 2 * (dot("sum", "xd") - dot("sum", "xs")) - F.col("size") * (dot("xd", "xd") - dot("xs", "xs"))
        edges = joined.select("src", "dst", (F.lit(weight) * gain).alias("similarity")).localCheckpoint()
        return exemplars.select("id"), edges

    def _complete_level(self, exemplars: DataFrame, weight: float) -> DataFrame:
        """All pairs of at most ``levelExactBelow`` exemplars: small enough to compute on the driver with numpy."""
        rows = exemplars.select("id", "x", "sum", "size").collect()
        kind = pa.string() if isinstance(exemplars.schema["id"].dataType, T.StringType) else pa.int64()
        ids = np.array([row.id for row in rows], dtype=object if kind == pa.string() else np.int64)
        X = np.array([row.x for row in rows], dtype=float)
        sums = np.array([row.sum for row in rows], dtype=float)
        size = np.array([row.size for row in rows], dtype=float)
        sq = np.einsum("ij,ij->i", X, X)
        # gain[i, k] = 2 sum_i . (x_k - x_i) - size_i (|x_k|^2 - |x_i|^2)
        gain = 2 * (sums @ X.T - np.einsum("ij,ij->i", sums, X)[:, None]) - size[:, None] * (sq[None, :] - sq[:, None])
        src, dst = np.nonzero(~np.eye(len(ids), dtype=bool))
        table = pa.table(
            {
                "src": pa.array(ids[src], type=kind),
                "dst": pa.array(ids[dst], type=kind),
                "similarity": weight * gain[src, dst],
            }
        )
        return exemplars.sparkSession.createDataFrame(table).localCheckpoint()


@dataclass
class _Levels:
    """The levels run at one preference."""

    mapping: DataFrame
    clusters: int
    preference: float
    levels: pd.DataFrame
    history: pd.DataFrame
    chosen: list[DataFrame]
    iterations: int
    converged: bool
    n: int

    def result(self, *, preference, source, recall, attempts) -> MultiLevelResult:
        numbers = assign.cluster_numbers(self.mapping)
        assignments = self.mapping.join(numbers, "exemplar").select("id", "cluster", "exemplar").persist()
        level_assignments = self.chosen[0]
        for chosen in self.chosen[1:]:
            level_assignments = level_assignments.unionByName(chosen)
        if not self.converged:
            warnings.warn(
                f"The last level did not converge in {self.levels['iterations'].iloc[-1]} iterations; "
                "the clusters may be degenerate.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return MultiLevelResult(
            assignments=assignments,
            exemplars=assign.exemplar_table(assignments),
            levels=self.levels,
            levelAssignments=level_assignments,
            history=self.history,
            preference=preference,
            preferenceSource=source,
            recall=recall,
            attempts=attempts,
            numVertices=self.n,
            numEdges=int(self.levels["edges"].iloc[0]),
            numIterations=self.iterations,
            converged=self.converged,
            resumedFrom=next((int(i) for i in self.levels["resumed_from"] if pd.notna(i)), None),
            _keep=[assignments],
        )
