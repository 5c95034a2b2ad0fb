"""The levels of :class:`~spark_ap.MultiLevelAffinityPropagation`, and the coarse graph between them.

Level 0 clusters the points; each next level clusters the exemplars left, each
standing for its whole cluster (:func:`coarse_similarity`), and every point
follows its exemplar.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_ap.compat import frame_from_arrow, to_arrow
from spark_ap.engines import assign
from spark_ap.engines.capacity import merge_within
from spark_ap.errors import ConvergenceWarning, user_stacklevel
from spark_ap.multilevel import neighbors
from spark_ap.multilevel.result import LEVEL_COLUMNS, LevelGraph, MultiLevelResult
from spark_ap.prepare.inputs import prepare_validated
from spark_ap.run.cluster import cluster
from spark_ap.run.loop import Settings

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


@dataclass(frozen=True)
class LevelConfig:
    """What the levels read of :class:`~spark_ap.MultiLevelAffinityPropagation`'s params, checked."""

    settings: Settings  # every level's run; ``max_iter`` for all-pairs levels
    knn_max_iter: int
    state_dir: str | None
    metric: str
    num_neighbors: int
    num_trees: int
    leaf_size: int
    resolution: int
    max_levels: int
    level_exact_below: int
    num_clusters: int
    cluster_tolerance: int
    max_attempts: int

    def run_settings(self, complete: bool, level: int = 0) -> Settings:
        """A level's settings: ``maxIter`` on all pairs, ``knnMaxIter`` on a k-NN graph; above level
        0 no capacity in the messages, whose points then stand for whole clusters (the bound is on
        their members: :func:`bounded_merges` keeps it)."""
        settings = self.settings if complete else replace(self.settings, max_iter=self.knn_max_iter)
        return replace(settings, capacity=None) if level else settings


def level_params(settings: Settings, preference: float) -> dict:
    """What a level's run computes, by name: the identity its saves must match."""
    return {
        "damping": settings.damping,
        "maxIter": settings.max_iter,
        "convergenceIter": settings.convergence_iter,
        "preference": preference,
        "noise": settings.noise,
        "seed": settings.seed,
        "maxClusterSize": settings.capacity or 0,
    }


def knn_graph(config: LevelConfig, points: DataFrame) -> DataFrame:
    """(src, dst, d2): about numNeighbors nearest neighbours of every point, from the trees."""
    return neighbors.knn_candidates(
        points, config.num_neighbors, trees=config.num_trees, leaf_size=config.leaf_size, seed=config.settings.seed
    )


def run_levels(config: LevelConfig, points: DataFrame, graph: LevelGraph, preference: float, label: str) -> Levels:
    """Run the levels at one preference; ``label`` prefixes the levels' save folders (a search's attempt)."""
    n = graph.points
    scale = min(1.0, config.resolution / n) if config.resolution else 1.0
    factor = 1.0 if config.metric == "sqeuclidean" else 0.5
    ids, edges, count, level_preference = points.select("id"), graph.edges, n, preference
    mapping = None  # every point -> its current exemplar, from the first level on (maxLevels >= 1)
    done: list[Level] = []
    for level in range(config.max_levels):
        complete = graph.complete if level == 0 else count <= config.level_exact_below
        state_dir = f"{config.state_dir.rstrip('/')}/{label}level-{level}" if config.state_dir else None
        this = run_level(config, level, edges, ids, count, level_preference, complete, state_dir)
        if level and config.settings.capacity:
            this = bounded_merges(this, edges, mapping, config.settings.capacity)
        done.append(this)
        mapping = follow(mapping, this.chosen)
        if (level == 0 and graph.complete) or this.clusters >= count or this.clusters <= 1:
            break
        ids, edges = next_level(config, points, mapping, this.clusters, scale * factor)
        # An exemplar that stays one pays the preference instead of its own
        # similarity to itself, which the shifted similarities count (cosine: 1).
        level_preference = preference - (scale if config.metric == "cosine" else 0.0)
        count = this.clusters
    return Levels.of(done, mapping, preference, n)


@dataclass
class Level:
    """One level's run: each of its points' choice (``id, next``), its clusters and its table row."""

    chosen: DataFrame
    clusters: int
    row: tuple
    history: pd.DataFrame
    iterations: int
    converged: bool


def run_level(
    config: LevelConfig,
    level: int,
    edges: DataFrame,
    ids: DataFrame,
    count: int,
    preference: float,
    complete: bool,
    state_dir: str | None,
) -> Level:
    """Cluster one level's ``count`` points (``ids``) on ``edges`` at ``preference``."""
    started = time.time()
    settings = config.run_settings(complete, level)
    with warnings.catch_warnings():
        # A level's convergence goes into the levels table; only the last level's warns.
        warnings.simplefilter("ignore", ConvergenceWarning)
        prepared = prepare_validated(edges, ids, preference)
        done = cluster(prepared, settings, state_dir=state_dir, params=level_params(settings, preference))
    outcome = done.outcome
    # No exemplar at all: every point is its own. Else a null exemplar is a point the capacity's
    # placement left out (level 0 only): it stays in no cluster (next null) and goes to no level above.
    nxt = F.col("exemplar") if outcome.found else F.coalesce("exemplar", "id")
    chosen = outcome.labels.select("id", nxt.alias("next")).localCheckpoint()
    clusters = chosen.where(F.col("next").isNotNull()).select("next").distinct().count()
    outcome.release()
    log.info(
        "level %d: %d points -> %d clusters in %d iterations (converged=%s)",
        level,
        count,
        clusters,
        outcome.n_iter,
        outcome.converged,
    )
    graph = "all pairs" if complete else "k-NN"
    seconds = round(time.time() - started, 3)
    row = (level, count, done.edges, graph, clusters, outcome.n_iter, outcome.converged, outcome.resumed_from, seconds)
    history = pd.DataFrame(outcome.history, columns=["iteration", "exemplars", "changed"]).assign(level=level)
    return Level(chosen, clusters, row, history, outcome.n_iter, outcome.converged)


def bounded_merges(this: Level, edges: DataFrame, mapping: DataFrame, capacity: int) -> Level:
    """The level ``this`` with the merges that would put more than ``capacity`` points in a cluster
    undone (:func:`~spark_ap.engines.capacity.merge_within`), on the driver, its clusters recounted: a
    level's points are the exemplars left, ``mapping`` (every point -> its exemplar) gives their sizes."""
    chosen = this.chosen
    sizes = mapping.groupBy(F.col("exemplar").alias("id")).agg(F.count(F.lit(1)).alias("size"))
    table = to_arrow(chosen.join(sizes, "id").select("id", "next", "size"))
    ids = table.column("id").to_numpy(zero_copy_only=False)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    next_ = np.searchsorted(ids, table.column("next").to_numpy(zero_copy_only=False)[order])
    size = table.column("size").to_numpy()[order].astype(float)
    centres = chosen.filter(F.col("id") == F.col("next")).select(F.col("id").alias("dst"))
    pairs = edges.join(F.broadcast(centres), "dst").filter(F.col("src") != F.col("dst"))
    into = to_arrow(pairs.select("src", "dst", "similarity"))
    merged = merge_within(
        np.searchsorted(ids, into.column("src").to_numpy(zero_copy_only=False)),
        np.searchsorted(ids, into.column("dst").to_numpy(zero_copy_only=False)),
        into.column("similarity").to_numpy(),
        size,
        next_,
        capacity,
    )
    if merged is next_:
        return this
    kind = assign.arrow_id_type(chosen.schema["id"].dataType)
    frame = pa.table({"id": pa.array(ids, kind), "next": pa.array(ids[merged], kind)})
    clusters = int(np.unique(merged).size)
    return replace(
        this,
        chosen=frame_from_arrow(chosen.sparkSession, frame, chosen.schema).localCheckpoint(),
        clusters=clusters,
        row=(*this.row[:4], clusters, *this.row[5:]),
    )


def follow(mapping: DataFrame | None, chosen: DataFrame) -> DataFrame:
    """Every placed point -> its exemplar after a level whose points chose ``chosen`` (``id, next``);
    a point level 0 left out (``next`` null) is in no cluster and not in the mapping."""
    if mapping is None:  # level 0's points are the points: its choice is the mapping
        return chosen.where(F.col("next").isNotNull()).select("id", F.col("next").alias("exemplar"))
    return (
        mapping.join(chosen.withColumnRenamed("id", "exemplar"), "exemplar")
        .select("id", F.col("next").alias("exemplar"))
        .localCheckpoint()
    )


def next_level(
    config: LevelConfig, points: DataFrame, mapping: DataFrame, count: int, weight: float
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
    if count <= config.level_exact_below:
        return exemplars.select("id"), complete_level(exemplars, weight)
    pairs = neighbors.symmetrise(knn_graph(config, exemplars.select("id", "x")))

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
    kind = assign.arrow_id_type(exemplars.schema["id"].dataType)
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
    return frame_from_arrow(exemplars.sparkSession, table).localCheckpoint()


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

    @classmethod
    def of(cls, done: list[Level], mapping: DataFrame, preference: float, n: int) -> Levels:
        """The levels ``done`` at ``preference``, ``mapping`` every one of the ``n`` points to its exemplar."""
        return cls(
            mapping=mapping,
            clusters=done[-1].clusters,
            preference=preference,
            levels=pd.DataFrame([d.row for d in done], columns=LEVEL_COLUMNS).astype({"resumed_from": "Int64"}),
            history=pd.concat([d.history for d in done], ignore_index=True)[
                ["level", "iteration", "exemplars", "changed"]
            ],
            chosen=[
                d.chosen.select(F.lit(level).alias("level"), "id", F.col("next").alias("exemplar"))
                for level, d in enumerate(done)
            ],
            iterations=sum(d.iterations for d in done),
            converged=done[-1].converged,
            n=n,
        )

    def result(self, *, preference, source, recall, attempts) -> MultiLevelResult:
        numbers = assign.cluster_numbers(self.mapping, self.clusters)
        placed = self.mapping.join(numbers, "exemplar").select("id", "cluster", "exemplar")
        # Left out by level 0's placement (docs/capacity.md#points-left-out): cluster -1, no exemplar.
        left = self.chosen[0].where(F.col("exemplar").isNull())
        left = left.select("id", F.lit(-1).cast("int").alias("cluster"), F.col("exemplar"))
        assignments = placed.unionByName(left).persist()
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
            exemplars=assign.exemplar_table(assignments.where(F.col("cluster") >= 0)),
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
