"""Approximate k-nearest-neighbour graphs on Spark, and how good they are.

The candidates come from random projection trees (Dasgupta and Freund, 2008):
each tree splits the space at the median of a random projection, again and
again, until a leaf holds about ``leaf_size`` points, and every point is
compared with all the others in its leaf. Points close together tend to share
a leaf; several independent trees catch most of the pairs one tree cuts apart.
The split values come from a sample on the driver; the points are then sorted
into leaves and the leaves compared with numpy, one Spark group per leaf.

Distances are squared Euclidean. A pair's distance is always computed the same
way, ``((x_i - x_j) ** 2).sum()``, whichever leaf or tree found it, so the
same pair found twice is the same row and d(i, j) == d(j, i) exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap import compat

# Points per tree node in the driver's sample, so that the medians it sets are
# good to a few percent.
_SAMPLE_PER_LEAF = 64
_MAX_SAMPLE = 200_000


def _matrix(x: pd.Series) -> np.ndarray:
    return np.stack(x.to_numpy()) if len(x) else np.zeros((0, 0))


def _pair_d2(X: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Squared distances of the pairs (i, j), computed the same way for every pair."""
    diff = X[i] - X[j]
    return np.einsum("ij,ij->i", diff, diff)


def build_trees(sample: np.ndarray, depth: int, trees: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random directions and median split values of ``trees`` trees of ``depth`` levels.

    Node ``v`` of a tree (numbered heap-wise, children ``2v+1`` and ``2v+2``)
    sends a point left when its projection on ``directions[t, v]`` is at most
    ``thresholds[t, v]``.
    """
    nodes = (1 << depth) - 1
    dim = sample.shape[1]
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((trees, max(nodes, 1), dim))
    thresholds = np.zeros((trees, max(nodes, 1)))
    for t in range(trees):
        node = np.zeros(len(sample), dtype=np.int64)
        for level in range(depth):
            projection = np.einsum("ij,ij->i", sample, directions[t, node])
            first = (1 << level) - 1
            for v in range(first, 2 * first + 1):
                here = node == v
                thresholds[t, v] = np.median(projection[here]) if here.any() else 0.0
            node = 2 * node + 1 + (projection > thresholds[t, node])
    return directions, thresholds


def leaves(X: np.ndarray, directions: np.ndarray, thresholds: np.ndarray, depth: int) -> np.ndarray:
    """The leaf of every row of ``X`` in every tree, shape (trees, rows)."""
    out = np.zeros((directions.shape[0], len(X)), dtype=np.int64)
    for t in range(directions.shape[0]):
        node = np.zeros(len(X), dtype=np.int64)
        for _ in range(depth):
            projection = np.einsum("ij,ij->i", X, directions[t, node])
            node = 2 * node + 1 + (projection > thresholds[t, node])
        out[t] = node - ((1 << depth) - 1)
    return out


def leaf_neighbors(ids: np.ndarray, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` nearest other points of every point among ``X``: (src, dst, d2)."""
    m = len(X)
    kk = min(k, m - 1)
    if kk <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return ids[empty], ids[empty], np.zeros(0)
    sq = np.einsum("ij,ij->i", X, X)
    # Only to rank; the distances kept are recomputed pair by pair.
    approx = sq[:, None] + sq[None, :] - 2 * (X @ X.T)
    np.fill_diagonal(approx, np.inf)
    nearest = np.argpartition(approx, kk - 1, axis=1)[:, :kk]
    i = np.repeat(np.arange(m), kk)
    j = nearest.ravel()
    return ids[i], ids[j], _pair_d2(X, i, j)


def knn_candidates(points: DataFrame, k: int, *, trees: int = 4, leaf_size: int = 1000, seed: int = 0) -> DataFrame:
    """About the ``k`` nearest neighbours of every point: (src, dst, d2), at most k rows per src.

    Parameters
    ----------
    points : DataFrame
        (id, x): ids and equally long arrays of doubles.
    k : int
        Neighbours per point.
    trees : int, default 4
        Random projection trees; more find more true neighbours and cost more.
    leaf_size : int, default 1000
        Points per leaf, about; each leaf costs O(leaf_size^2) distances.
    seed : int, default 0
    """
    spark = points.sparkSession
    n = points.count()
    depth = max(0, math.ceil(math.log2(max(n / leaf_size, 1))))
    wanted = min(n, _MAX_SAMPLE, _SAMPLE_PER_LEAF << depth)
    sample_rows = points.sample(fraction=min(1.0, 1.2 * wanted / n), seed=seed).select("x").limit(wanted).collect()
    sample = np.array([row.x for row in sample_rows], dtype=float)
    directions, thresholds = build_trees(sample, depth, trees, seed)
    shared = compat.shared(spark, (directions, thresholds))
    id_type = points.schema["id"].dataType

    def to_leaves(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        dirs, thr = shared.value
        for batch in batches:
            where = leaves(_matrix(batch["x"]), dirs, thr, depth)
            for t in range(where.shape[0]):
                yield pd.DataFrame({"tree": t, "leaf": where[t], "id": batch["id"], "x": batch["x"]})

    def compare(leaf: pd.DataFrame) -> pd.DataFrame:
        src, dst, d2 = leaf_neighbors(leaf["id"].to_numpy(), _matrix(leaf["x"]), k)
        return pd.DataFrame({"src": src, "dst": dst, "d2": d2})

    placed = points.mapInPandas(
        to_leaves,
        T.StructType(
            [
                T.StructField("tree", T.IntegerType()),
                T.StructField("leaf", T.LongType()),
                T.StructField("id", id_type),
                T.StructField("x", T.ArrayType(T.DoubleType())),
            ]
        ),
    )
    found = placed.groupBy("tree", "leaf").applyInPandas(
        compare,
        T.StructType(
            [T.StructField("src", id_type), T.StructField("dst", id_type), T.StructField("d2", T.DoubleType())]
        ),
    )
    # The same pair found by several trees is the same row (see the module
    # docstring); a set keeps it once, sorting by distance (then id) keeps the k nearest.
    best = found.groupBy("src").agg(F.slice(F.array_sort(F.collect_set(F.struct("d2", "dst"))), 1, k).alias("near"))
    return best.select("src", F.explode("near").alias("n")).select("src", "n.dst", "n.d2")


def symmetrise(neighbors: DataFrame) -> DataFrame:
    """(src, dst, d2) with every pair in both directions, once each."""
    both = neighbors.unionByName(neighbors.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "d2"))
    return both.dropDuplicates(["src", "dst"])


def recall(points: DataFrame, neighbors: DataFrame, k: int, *, queries: int = 200, seed: int = 0) -> float:
    """The fraction of true k nearest neighbours that ``neighbors`` holds, on a sample of points.

    The truth comes from comparing each sampled point with every point. A found
    neighbour counts as true when it is no farther than the true k-th nearest,
    so ties between equally distant points do not count as misses.

    Parameters
    ----------
    points : DataFrame
        (id, x), as given to :func:`knn_candidates`.
    neighbors : DataFrame
        (src, dst, d2), at most ``k`` rows per src.
    queries : int, default 200
        Points sampled (by a seeded hash of their ids).
    """
    picked = points.orderBy(F.xxhash64("id", F.lit(seed))).limit(queries).collect()
    ids = [row.id for row in picked]
    Q = np.array([row.x for row in picked], dtype=float)
    kk = min(k, points.count() - 1)
    shared = compat.shared(points.sparkSession, (ids, Q))
    id_type = points.schema["id"].dataType

    def nearest(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        qids, q = shared.value
        for batch in batches:
            X = _matrix(batch["x"])
            if not len(X):
                continue
            diff = q[:, None, :] - X[None, :, :]
            d2 = np.einsum("qij,qij->qi", diff, diff)
            d2[np.asarray(qids, dtype=object)[:, None] == batch["id"].to_numpy()[None, :]] = np.inf
            take = min(kk, d2.shape[1])
            part = np.sort(np.partition(d2, take - 1, axis=1)[:, :take], axis=1)
            yield pd.DataFrame({"q": np.repeat(np.arange(len(q)), take), "d2": part.ravel()})

    exact = points.mapInPandas(nearest, "q int, d2 double").toPandas()
    kth = exact.groupby("q")["d2"].apply(lambda d: np.sort(d.to_numpy())[kk - 1]).to_numpy()
    index = {key: i for i, key in enumerate(ids)}
    got = neighbors.join(
        points.sparkSession.createDataFrame([(key,) for key in ids], T.StructType([T.StructField("src", id_type)])),
        "src",
    ).toPandas()
    got["q"] = got["src"].map(index)
    bound = kth[got["q"].to_numpy()]
    hits = (got["d2"].to_numpy() <= bound + 1e-9 * np.maximum(bound, 1)).sum()
    return float(hits) / (len(ids) * kk)
