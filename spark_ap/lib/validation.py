"""Checks on the input edge table, run once before iterating."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.errors import (
    ColumnTypeError,
    DuplicateEdgeError,
    EmptyInputError,
    InvalidValueError,
    MissingColumnError,
)

_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_NUMERIC = (*_INTEGRAL, T.FloatType, T.DoubleType, T.DecimalType)


def _example(df: DataFrame, condition: Column) -> dict:
    row = df.filter(condition).limit(1).collect()
    return row[0].asDict() if row else {}


def require_columns(df: DataFrame, columns: list[str], what: str) -> None:
    """Raise :class:`MissingColumnError` naming every missing column."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnError(
            f"{what} is missing column(s) {missing}; it has {df.columns}. "
            "Set srcCol, dstCol, weightCol (or idCol) to the names your table uses."
        )


def id_type(df: DataFrame, columns: list[str], what: str) -> T.DataType:
    """The common id type of ``columns``: long for integers, or string."""
    kinds = {}
    for c in columns:
        dtype = df.schema[c].dataType
        if isinstance(dtype, _INTEGRAL):
            kinds[c] = "integer"
        elif isinstance(dtype, T.StringType):
            kinds[c] = "string"
        else:
            raise ColumnTypeError(
                f"{what} column '{c}' has type {dtype.simpleString()}; ids must be integers or strings."
            )
    if len(set(kinds.values())) > 1:
        raise ColumnTypeError(
            f"{what} id columns have mixed types {kinds}; cast them to one type (all integers or all strings)."
        )
    return T.LongType() if "integer" in kinds.values() else T.StringType()


def validate_edges(edges: DataFrame, src: str, dst: str, weight: str) -> DataFrame:
    """Return ``edges`` as (src, dst, similarity) with long or string ids and double similarities.

    Raises
    ------
    MissingColumnError, ColumnTypeError
        A column is absent or of a type that cannot be used.
    EmptyInputError
        There are no edges.
    InvalidValueError
        Null ids, or null, NaN or infinite similarities.
    DuplicateEdgeError
        A (src, dst) pair occurs more than once.
    """
    require_columns(edges, [src, dst, weight], "The edge table")
    dtype = edges.schema[weight].dataType
    if not isinstance(dtype, _NUMERIC):
        raise ColumnTypeError(
            f"The similarity column '{weight}' has type {dtype.simpleString()}; it must be numeric "
            "(cast it, e.g. F.col(weightCol).cast('double'), after checking the values parse)."
        )
    kind = id_type(edges, [src, dst], "The edge table")
    out = edges.select(
        F.col(src).cast(kind).alias("src"),
        F.col(dst).cast(kind).alias("dst"),
        F.col(weight).cast("double").alias("similarity"),
    )

    s = F.col("similarity")
    bad_id = F.col("src").isNull() | F.col("dst").isNull()
    bad_s = s.isNull() | F.isnan(s) | (F.abs(s) == float("inf"))
    counts = out.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(bad_id.cast("long")).alias("bad_id"),
        F.sum(bad_s.cast("long")).alias("bad_s"),
    ).first()
    if counts["rows"] == 0:
        raise EmptyInputError("The edge table has no rows; there is nothing to cluster.")
    if counts["bad_id"]:
        raise InvalidValueError(
            f"{counts['bad_id']} of {counts['rows']} edges have a null id in '{src}' or '{dst}'; "
            f"for example {_example(out, bad_id)}."
        )
    if counts["bad_s"]:
        raise InvalidValueError(
            f"{counts['bad_s']} of {counts['rows']} edges have a null, NaN or infinite similarity in "
            f"'{weight}'; for example {_example(out, bad_s)}. Drop those edges to mean 'no similarity known'."
        )

    dup = out.groupBy("src", "dst").count().filter(F.col("count") > 1)
    dup_stats = dup.agg(F.count(F.lit(1)).alias("pairs"), F.sum("count").alias("rows")).first()
    if dup_stats["pairs"]:
        example = dup.limit(1).collect()[0]
        raise DuplicateEdgeError(
            f"{dup_stats['pairs']} (src, dst) pairs occur more than once ({dup_stats['rows']} rows in all); "
            f"for example {src}={example['src']!r}, {dst}={example['dst']!r} occurs {example['count']} times. "
            "Combine them (e.g. groupBy + max) before clustering."
        )
    return out


def validate_preferences(vertices: DataFrame, id_col: str, pref_col: str, kind: T.DataType) -> DataFrame:
    """(id, preference) from the vertices table; nulls mean 'use the preference param'."""
    dtype = vertices.schema[pref_col].dataType
    if not isinstance(dtype, _NUMERIC):
        raise ColumnTypeError(f"The vertices table's preference column '{pref_col}' has type {dtype.simpleString()}")
    out = vertices.select(F.col(id_col).cast(kind).alias("id"), F.col(pref_col).cast("double").alias("preference"))
    p = F.col("preference")
    bad = F.isnan(p) | (F.abs(p) == float("inf"))
    n_bad = out.filter(bad).count()
    if n_bad:
        raise InvalidValueError(
            f"{n_bad} vertices have a NaN or infinite preference in '{pref_col}'; for example {_example(out, bad)}."
        )
    return out
