"""The levels of :class:`~spark_ap.MultiLevelAffinityPropagation`, and the coarse graph between them.

Level 0 clusters the points; each next level clusters the exemplars left, each
standing for its whole cluster (:func:`coarse_similarity`), and every point
follows its exemplar.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.engines import assign
from spark_ap.errors import ConvergenceWarning, user_stacklevel
from spark_ap.estimators.affinity import AffinityPropagation
from spark_ap.multilevel import neighbors
from spark_ap.multilevel.result import LEVEL_COLUMNS, Graph, MultiLevelResult

if TYPE_CHECKING:
    from spark_ap.multilevel.estimator import MultiLevelAffinityPropagation

log = logging.getLogger("spark_ap")


def coarse_similarity(weight, sum_dot_xk, sum_dot_xi, size_i, sq_k, sq_i):
    """s'(i, k): what the members of exemplar i's cluster gain by moving to exemplar k, times ``weight``.

    ``s'(i, k) = weight * sum over members m of i of (s(m, k) - s(m, i))``.
    With s = -|x - y|^2 a member's term is
    ``2 x_m . (x_k - x_i) - (|x_k|^2 - |x_i|^2)``, so the sum needs only the
    cluster's size and feature sum: ``sum_i . x_k``, ``sum_i . x_i``,
    ``size_i``, ``|x_k|^2`` and ``|x_i|^2``, as numpy arrays (all pairs, on
    the driver) or Spark columns (the pairs of a k-NN graph). Cosine similarity
    on unit vectors is 1 - |x - y|^2 / 2: half of that (``weight`` carries the half).
    """
    return weight * (2 * (sum_dot_xk - sum_dot_xi) - size_i * (sq_k - sq_i))


def level_estimator(
    ap: MultiLevelAffinityPropagation, preference: float, max_iter: int, state_dir: str | None
) -> AffinityPropagation:
    """The AffinityPropagation that clusters one level."""
    return AffinityPropagation(
        damping=ap.getDamping(),
        maxIter=max_iter,
        convergenceIter=ap.getConvergenceIter(),
        preference=preference,
        checkpointInterval=ap.getCheckpointInterval(),
        checkpointKind=ap.getCheckpointKind(),
        stateDir=state_dir,
        engine=ap.getEngine(),
        exchange=ap.getExchange(),
        noise=ap.getNoise(),
        seed=ap.getSeed(),
    )


def knn_graph(ap: MultiLevelAffinityPropagation, points: DataFrame) -> DataFrame:
    """(src, dst, d2): about numNeighbors nearest neighbours of every point, from the trees."""
    return neighbors.knn_candidates(
        points, ap.getNumNeighbors(), trees=ap.getNumTrees(), leaf_size=ap.getLeafSize(), seed=ap.getSeed()
    )


def run_levels(
    ap: MultiLevelAffinityPropagation, points: DataFrame, graph: Graph, n: int, preference: float, label: str
) -> Levels:
    """Run the levels at one preference; ``label`` prefixes the levels' save folders (a search's attempt)."""
    scale = min(1.0, ap.getResolution() / n) if ap.getResolution() else 1.0
    factor = 1.0 if ap.getMetric() == "sqeuclidean" else 0.5
    root = ap.getStateDir()
    level_preference = preference
    mapping = None  # every point -> its current exemplar, from the first level on (maxLevels >= 1)
    level_points, edges, count = points.select("id"), graph.edges, n
    rows, histories, chosen_all = [], [], []
    iterations, converged = 0, True
    for level in range(ap.getMaxLevels()):
        started = time.time()
        state_dir = f"{root.rstrip('/')}/{label}level-{level}" if root else None
        complete = graph.complete if level == 0 else count <= ap.getLevelExactBelow()
        max_iter = ap.getMaxIter() if complete else ap.getKnnMaxIter()
        with warnings.catch_warnings():
            # A level's convergence goes into the levels table; only the last level's warns.
            warnings.simplefilter("ignore", ConvergenceWarning)
            level_ap = level_estimator(ap, level_preference, max_iter, state_dir)
            result = level_ap.run(edges, level_points, validated=True)
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
        if mapping is None:  # level 0's points are the points: its choice is the mapping
            mapping = chosen.select("id", F.col("next").alias("exemplar"))
        else:
            mapping = (
                mapping.join(chosen.withColumnRenamed("id", "exemplar"), "exemplar")
                .select("id", F.col("next").alias("exemplar"))
                .localCheckpoint()
            )
        if (level == 0 and graph.complete) or clusters >= count or clusters <= 1:
            break
        level_points, edges = next_level(ap, points, mapping, clusters, scale * factor)
        # An exemplar that stays one pays the preference instead of its own
        # similarity to itself, which the shifted similarities count (cosine: 1).
        level_preference = preference - (scale if ap.getMetric() == "cosine" else 0.0)
        count = clusters
    return Levels(
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


def next_level(
    ap: MultiLevelAffinityPropagation, points: DataFrame, mapping: DataFrame, count: int, weight: float
) -> tuple[DataFrame, DataFrame]:
    """The exemplars (id) and their graph for the next level: all pairs up to levelExactBelow, else k-NN."""
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
    if count <= ap.getLevelExactBelow():
        return exemplars.select("id"), complete_level(exemplars, weight)
    pairs = neighbors.symmetrise(knn_graph(ap, exemplars.select("id", "x")))

    def dot(a, b):
        return F.aggregate(F.zip_with(a, b, lambda u, v: u * v), F.lit(0.0), lambda s, v: s + v)

    xs = exemplars.select(F.col("id").alias("src"), F.col("x").alias("xs"), "sum", "size")
    xd = exemplars.select(F.col("id").alias("dst"), F.col("x").alias("xd"))
    joined = pairs.select("src", "dst").join(xs, "src").join(xd, "dst")
    similarity = coarse_similarity(
        F.lit(weight), dot("sum", "xd"), dot("sum", "xs"), F.col("size"), dot("xd", "xd"), dot("xs", "xs")
    )
    edges = joined.select("src", "dst", similarity.alias("similarity")).localCheckpoint()
    return exemplars.select("id"), edges


def complete_level(exemplars: DataFrame, weight: float) -> DataFrame:
    """All pairs of at most ``levelExactBelow`` exemplars: small enough to compute on the driver with numpy."""
    rows = exemplars.select("id", "x", "sum", "size").collect()
    kind = pa.string() if isinstance(exemplars.schema["id"].dataType, T.StringType) else pa.int64()
    ids = np.array([row.id for row in rows], dtype=object if kind == pa.string() else np.int64)
    X = np.array([row.x for row in rows], dtype=float)
    sums = np.array([row.sum for row in rows], dtype=float)
    size = np.array([row.size for row in rows], dtype=float)
    sq = np.einsum("ij,ij->i", X, X)
    # Row i, column k: exemplar i choosing exemplar k.
    S = coarse_similarity(
        weight, sums @ X.T, np.einsum("ij,ij->i", sums, X)[:, None], size[:, None], sq[None, :], sq[:, None]
    )
    src, dst = np.nonzero(~np.eye(len(ids), dtype=bool))
    table = pa.table(
        {
            "src": pa.array(ids[src], type=kind),
            "dst": pa.array(ids[dst], type=kind),
            "similarity": S[src, dst],
        }
    )
    return exemplars.sparkSession.createDataFrame(table).localCheckpoint()


@dataclass
class Levels:
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
        numbers = assign.cluster_numbers(self.mapping, self.clusters)
        assignments = self.mapping.join(numbers, "exemplar").select("id", "cluster", "exemplar").persist()
        level_assignments = self.chosen[0]
        for chosen in self.chosen[1:]:
            level_assignments = level_assignments.unionByName(chosen)
        if not self.converged:
            warnings.warn(
                f"The last level did not converge in {self.levels['iterations'].iloc[-1]} iterations; "
                "the clusters may be degenerate.",
                ConvergenceWarning,
                stacklevel=user_stacklevel(),
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
