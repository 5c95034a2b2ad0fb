"""Similarity graphs from dense matrices and feature tables, for small data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.errors import InvalidInputError, InvalidParamError
from spark_ap.params import METRICS
from spark_ap.prepare.validation import refuse_zero_vectors, validate_features


def edges_from_matrix(
    spark: SparkSession,
    S: np.ndarray,
    *,
    ids: Sequence | None = None,
    diagonal: bool = False,
) -> DataFrame:
    """Turn a dense similarity matrix into an edge table ``src, dst, similarity``.

    Parameters
    ----------
    spark : SparkSession
    S : ndarray of shape (n, n)
        ``S[i, k]`` is the similarity of i to k. Entries that are ``-inf`` or
        NaN become missing edges, which makes a sparse graph.
    ids : sequence of length n, optional
        Vertex ids (integers or strings); ``0 .. n-1`` by default.
    diagonal : bool, default False
        Keep the diagonal as self-edges, i.e. as the preferences.
    """
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise InvalidInputError(f"A similarity matrix must be square; got shape {S.shape}")
    n = S.shape[0]
    keep = np.isfinite(S)
    if not diagonal:
        np.fill_diagonal(keep, False)
    src, dst = np.nonzero(keep)
    if ids is None:
        names = np.arange(n)
        id_type: T.DataType = T.LongType()
    else:
        names = np.asarray(ids, dtype=object)
        if len(names) != n:
            raise InvalidInputError(f"{len(names)} ids given for a {n} x {n} matrix")
        id_type = T.StringType() if isinstance(names[0], str) else T.LongType()
    cast = str if isinstance(id_type, T.StringType) else int
    rows = [(cast(names[i]), cast(names[k]), float(S[i, k])) for i, k in zip(src, dst, strict=True)]
    schema = T.StructType(
        [T.StructField("src", id_type), T.StructField("dst", id_type), T.StructField("similarity", T.DoubleType())]
    )
    return spark.createDataFrame(rows, schema)


def similarity_matrix(X: np.ndarray, metric: str = "sqeuclidean") -> np.ndarray:
    """Dense similarities of the rows of ``X``: negative squared Euclidean distance, or cosine similarity."""
    X = np.asarray(X, dtype=float)
    if metric == "sqeuclidean":
        sq = np.sum(X * X, axis=1)
        return -np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0)
    if metric == "cosine":
        unit = X / np.linalg.norm(X, axis=1, keepdims=True)
        return unit @ unit.T
    raise InvalidParamError(f"metric must be one of {METRICS}; got {metric!r}")


def edges_from_features(
    features: DataFrame,
    *,
    idCol: str = "id",
    featuresCol: str = "features",
    metric: str = "sqeuclidean",
) -> DataFrame:
    """All-pairs similarity edges ``src, dst, similarity`` from a feature table.

    Every ordered pair of distinct rows becomes an edge, so this is for small
    tables (n rows give n (n - 1) edges).

    Parameters
    ----------
    features : DataFrame
        ``idCol`` and ``featuresCol``, the latter an array of numbers or an ML vector.
    metric : {"sqeuclidean", "cosine"}
        Negative squared Euclidean distance (scikit-learn's ``affinity="euclidean"``)
        or cosine similarity.
    """
    if metric not in METRICS:
        raise InvalidParamError(f"metric must be one of {METRICS}; got {metric!r}")
    points = validate_features(features, idCol, featuresCol)
    if metric == "cosine":
        refuse_zero_vectors(points)
    return all_pairs(points, metric)


def all_pairs(points: DataFrame, metric: str) -> DataFrame:
    """(src, dst, similarity) of every ordered pair of distinct rows of a validated (id, x) table."""
    left = points.select(F.col("id").alias("src"), F.col("x").alias("xs"))
    right = points.select(F.col("id").alias("dst"), F.col("x").alias("xd"))
    pairs = left.crossJoin(right).filter(F.col("src") != F.col("dst"))
    return pairs.select("src", "dst", similarity("xs", "xd", metric).alias("similarity"))


def similarity(xs: str, xd: str, metric: str) -> Column:
    """s(x, y) of two array columns: the negative squared Euclidean distance, or the cosine."""

    def total(values):
        return F.aggregate(values, F.lit(0.0), lambda acc, v: acc + v)

    if metric == "sqeuclidean":
        return -total(F.zip_with(xs, xd, lambda a, b: (a - b) * (a - b)))
    dot = total(F.zip_with(xs, xd, lambda a, b: a * b))
    return dot / (F.sqrt(total(F.transform(xs, lambda a: a * a))) * F.sqrt(total(F.transform(xd, lambda a: a * a))))
