"""The estimator :class:`MultiLevelAffinityPropagation`: params, level 0's graph, the run."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_ap.compat import is_connect
from spark_ap.estimators._params import SharedParams, spec_param
from spark_ap.estimators.affinity import result_params
from spark_ap.estimators.model import AffinityPropagationModel, nearest_exemplar, unit_rows
from spark_ap.multilevel import neighbors
from spark_ap.multilevel.driver import DriverGraph
from spark_ap.multilevel.levels import LevelConfig, knn_graph, run_levels
from spark_ap.multilevel.result import LevelGraph, MultiLevelResult
from spark_ap.multilevel.search import search_preference
from spark_ap.params import MULTILEVEL
from spark_ap.prepare.builders import all_pairs, similarity, similarity_matrix
from spark_ap.prepare.preference import preference_value, sampled_similarities, statistic
from spark_ap.prepare.validation import refuse_zero_vectors, validate_features

log = logging.getLogger("spark_ap")


class _MultiLevelParams(SharedParams):
    """MultiLevelAffinityPropagation's params; names, docs, defaults and bounds are in :mod:`spark_ap.params`."""

    _estimator = MULTILEVEL
    featuresCol = spec_param("featuresCol")
    metric = spec_param("metric")
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

    def getFeaturesCol(self) -> str:
        return self._get("featuresCol")

    def getMetric(self) -> str:
        return self._get("metric")

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


class MultiLevelAffinityPropagation(_MultiLevelParams, Estimator, DefaultParamsReadable, DefaultParamsWritable):
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
        :func:`spark_ap.multilevel.neighbors.knn_candidates`).
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
    damping, maxIter, convergenceIter, checkpointInterval, checkpointKind, engine, exchange, noise, seed, endOn
        Passed to :class:`~spark_ap.AffinityPropagation` at every level.
    maxClusterSize : int, default 0
        No cluster above this many points (0: no bound). Capacitated AP's
        messages run at level 0 only; the levels above, whose points stand for
        whole clusters, run plain AP and undo the merges that would exceed the
        bound (docs/capacity.md). A point level 0 cannot place is in no
        cluster: cluster -1, a null exemplar and a ``CapacityWarning``, as in
        :class:`~spark_ap.AffinityPropagation` (docs/capacity.md#points-left-out).
        The fitted model keeps the bound and the clusters' sizes
        (:class:`~spark_ap.AffinityPropagationModel`).
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
        exchange: str = "auto",
        noise: str | bool = "edge",
        seed: int = 0,
        maxClusterSize: int = 0,
        endOn: str = "best",
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
        exchange: str = "auto",
        noise: str | bool = "edge",
        seed: int = 0,
        maxClusterSize: int = 0,
        endOn: str = "best",
    ) -> MultiLevelAffinityPropagation:
        """Set the params given by keyword."""
        return self._setChecked(**self._input_kwargs)

    def setFeaturesCol(self, value: str) -> MultiLevelAffinityPropagation:
        return self._setChecked(featuresCol=value)

    def setMetric(self, value: str) -> MultiLevelAffinityPropagation:
        return self._setChecked(metric=value)

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

    def _config(self) -> LevelConfig:
        """What the levels read of the params, checked."""
        settings = self._settings()
        return LevelConfig(
            settings=settings,
            knn_max_iter=self.getKnnMaxIter(),
            state_dir=self.getStateDir(),
            metric=self.getMetric(),
            num_neighbors=self.getNumNeighbors(),
            num_trees=self.getNumTrees(),
            leaf_size=self.getLeafSize(),
            resolution=self.getResolution(),
            max_levels=self.getMaxLevels(),
            level_exact_below=self.getLevelExactBelow(),
            num_clusters=self.getNumClusters(),
            cluster_tolerance=self.getClusterTolerance(),
            max_attempts=self.getMaxAttempts(),
        )

    def _points(self, features: DataFrame) -> DataFrame:
        """(id, x), validated; for cosine, x scaled to unit length (then d2 = 2 - 2 cos)."""
        points = validate_features(features, self.getIdCol(), self.getFeaturesCol())
        if self.getMetric() == "cosine":
            refuse_zero_vectors(points)
            points = points.select("id", unit_rows(F.col("x")).alias("x"))  # as the model's transform scales them
        return points.localCheckpoint()

    def _similarity(self, d2):
        """Similarity from squared distance (of unit vectors for cosine)."""
        return -d2 if self.getMetric() == "sqeuclidean" else 1 - d2 / 2

    def _dense(self, X: np.ndarray) -> np.ndarray:
        return similarity_matrix(X, self.getMetric())

    def buildGraph(self, features: DataFrame) -> tuple[DataFrame, LevelGraph]:
        """Level 0's graph of a feature table: (points (id, x), :class:`LevelGraph`).

        All pairs up to exactBelow points, else an approximate k-NN graph.
        """
        points = self._points(features)
        return points, self._graph(points, points.count())

    def _graph(self, points: DataFrame, n: int) -> LevelGraph:
        if n <= self.getExactBelow():
            return LevelGraph(all_pairs(points, self.getMetric()).localCheckpoint(), True, None, n)
        near = knn_graph(self._config(), points).localCheckpoint()
        recall = neighbors.recall(points, near, self.getNumNeighbors(), seed=self.getSeed())
        log.info("approximate %d-NN graph: recall %.3f on a sample", self.getNumNeighbors(), recall)
        pairs = neighbors.symmetrise(near)
        edges = pairs.select("src", "dst", self._similarity(F.col("d2")).alias("similarity")).localCheckpoint()
        return LevelGraph(edges, False, recall, n)

    def run(self, features: DataFrame) -> MultiLevelResult:
        """Cluster the rows of ``features`` (``idCol``, ``featuresCol``)."""
        return self._cluster(features)[1]

    def _fit(self, dataset: DataFrame) -> AffinityPropagationModel:
        """The model of :meth:`run` on ``dataset``: its exemplars, to assign new points (see :meth:`fit`)."""
        points, result = self._cluster(dataset)
        return fitted_model(self, points, result)

    def _cluster(self, features: DataFrame) -> tuple[DataFrame, MultiLevelResult]:
        """The validated points (``id, x``) and the run's result.

        A complete graph that the local engine runs without saves is clustered on the driver
        (:class:`~spark_ap.multilevel.driver.DriverGraph`): the same result, without a Spark job
        per attempt of the search.
        """
        config = self._config()
        points = self._points(features)
        n = points.count()
        driver = None
        if DriverGraph.applies(config, n, n <= self.getExactBelow(), is_connect(points.sparkSession)):
            driver = DriverGraph.read(config, points, all_pairs(points, self.getMetric()))
        graph = LevelGraph(None, True, None, n) if driver is not None else self._graph(points, n)
        value, source, values = self._preference(points, graph, driver)
        if self.getNumClusters():
            values = self._sampled(points) if values is None else values

            def attempt(preference: float, k: int):
                if driver is not None:
                    return driver.run(preference, k)
                return run_levels(config, points, graph, preference, f"attempt-{k}/")

            weight = min(n, config.resolution or n)
            best, attempts = search_preference(
                attempt, config.num_clusters, config.cluster_tolerance, config.max_attempts, values, value, weight
            )
            value, source = best.preference, f"searched for {self.getNumClusters()} clusters"
        else:
            best = driver.run(value) if driver is not None else run_levels(config, points, graph, value, "")
            attempts = [(value, best.clusters)]
        outcome = driver.levels(best) if driver is not None else best
        result = outcome.result(
            preference=value,
            source=source,
            recall=graph.recall,
            attempts=pd.DataFrame(attempts, columns=["preference", "clusters"]),
        )
        if driver is not None:
            result.netSimilarity = driver.net_similarity(best)
        else:
            result.netSimilarity = self._net_similarity(points, result.assignments, value)
        return points, result

    def _preference(
        self, points: DataFrame, graph: LevelGraph, driver: DriverGraph | None
    ) -> tuple[float, str, np.ndarray | None]:
        """The preference asked for, as a number; where it comes from; the sampled similarities
        when they were drawn for it (a k-NN graph's statistic), else None."""
        pref = self.getPreference()
        if not isinstance(pref, str):
            return float(pref), "given", None
        if graph.complete:
            value = driver.preference_value(pref) if driver is not None else preference_value(graph.edges, pref)
            return value, f"{pref} of all pairwise similarities", None
        values = self._sampled(points)
        sample = min(graph.points, self.getPreferenceSample())
        return (
            statistic(values, pref),
            f"{pref} of the {values.size} pairwise similarities of {sample} sampled points",
            values,
        )

    def _net_similarity(self, points: DataFrame, assignments: DataFrame, preference: float) -> float:
        """Frey and Dueck's objective of the final clusters: s(i, exemplar(i)) summed over the other
        points, plus the preference of every exemplar, with the similarities computed from the features."""
        x = points.select("id", "x")
        e = points.select(F.col("id").alias("exemplar"), F.col("x").alias("e"))
        pairs = assignments.filter(F.col("id") != F.col("exemplar")).join(x, "id").join(e, "exemplar")
        total = pairs.agg(F.sum(similarity("x", "e", self.getMetric()))).first()[0] or 0.0
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


def fitted_model(
    estimator: MultiLevelAffinityPropagation, points: DataFrame, result: MultiLevelResult
) -> AffinityPropagationModel:
    """The model of ``result``: its exemplars with their features (``points``: ``id, x`` as validated)
    and sizes, the bound, and the points whose cluster is not their most similar exemplar's (the
    model's ``displaced``), so that its transform gives the fit's labels on the points of the fit."""
    exemplars = (
        result.exemplars.select("cluster", "exemplar", "size")
        .join(points.select(F.col("id").alias("exemplar"), F.col("x").alias("features")), "exemplar")
        .orderBy("cluster")
        .toPandas()[["cluster", "exemplar", "features", "size"]]
    )
    centers, metric = [np.asarray(v, dtype=float) for v in exemplars["features"]], estimator.getMetric()

    @F.pandas_udf("int")
    def nearest(x: pd.Series) -> pd.Series:
        cluster, _ = nearest_exemplar(np.array(x.tolist(), dtype=float), centers, metric)
        return pd.Series(cluster, dtype="int32")

    displaced = (
        result.assignments.select("id", "cluster")
        .join(points.select("id", "x"), "id")
        .where(nearest(F.col("x")) != F.col("cluster"))
        .select("id", F.col("x").alias("features"), "cluster")
        .toPandas()
    )
    model = AffinityPropagationModel(exemplars, summary=result, displaced=displaced)
    model._set(
        featuresCol=estimator.getFeaturesCol(),
        idCol=estimator.getIdCol(),
        metric=metric,
        maxClusterSize=estimator.getMaxClusterSize(),
    )
    return model
