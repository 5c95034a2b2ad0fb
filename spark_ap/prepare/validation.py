"""Checks on the input edge table, run once before iterating."""

from __future__ import annotations

import sys

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.errors import (
    ColumnTypeError,
    DuplicateEdgeError,
    EmptyInputError,
    InvalidInputError,
    InvalidValueError,
    MissingColumnError,
)

_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_NUMERIC = (*_INTEGRAL, T.FloatType, T.DoubleType, T.DecimalType)
_LONG_MAX = 2**63 - 1
# The replacement character, which decoders put in place of bytes that are not text.
REPLACEMENT = "\ufffd"
# The largest finite double. A message adds up to one similarity per vertex (an availability sums a
# column's responsibilities), so similarities must stay below it divided by the count: else sums
# overflow to inf and the run ends in NaN labels.
_DOUBLE_MAX = sys.float_info.max


def _example(df: DataFrame, condition: Column) -> dict:
    row = df.filter(condition).limit(1).collect()
    return row[0].asDict() if row else {}


def _refuse_repeated_ids(table: DataFrame, id_col: str, row: str) -> None:
    """Raise :class:`InvalidValueError` naming how many ids (column ``id`` of ``table``, ``id_col``
    in the input) occur on more than one ``row``, with one of them."""
    repeated = table.groupBy("id").count().filter(F.col("count") > 1)
    example = repeated.limit(1).collect()[0]
    raise InvalidValueError(
        f"{repeated.count()} ids occur on more than one {row} in '{id_col}'; "
        f"for example {example['id']!r} occurs {example['count']} times."
    )


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
        elif isinstance(dtype, T.DecimalType) and dtype.scale == 0:
            # What a CSV's inferred schema gives whole numbers beyond the long range: never wrapped.
            example = _example(df.select(c), (F.col(c) > _LONG_MAX) | (F.col(c) < -_LONG_MAX - 1))
            if example:
                raise ColumnTypeError(
                    f"{what} column '{c}' has type {dtype.simpleString()}, whole numbers beyond the 64-bit range "
                    f"(-2**63 to 2**63-1) of integer ids; for example {example}. Read the ids as strings."
                )
            raise ColumnTypeError(
                f"{what} column '{c}' has type {dtype.simpleString()}; ids must be integers or strings "
                f"(its values fit a long: cast it, F.col('{c}').cast('long'))."
            )
        else:
            raise ColumnTypeError(
                f"{what} column '{c}' has type {dtype.simpleString()}; ids must be integers or strings."
            )
    if len(set(kinds.values())) > 1:
        raise ColumnTypeError(
            f"{what} id columns have mixed types {kinds}; cast them to one type (all integers or all strings)."
        )
    return T.LongType() if "integer" in kinds.values() else T.StringType()


def validate_edges(
    edges: DataFrame, src: str, dst: str, weight: str, duplicates: str = "error", *, find_duplicates: bool = True
) -> DataFrame:
    """Return ``edges`` as (src, dst, similarity) with long or string ids and double similarities.

    ``duplicates`` says what repeated (src, dst) pairs mean: an error, or one
    edge with the largest or the mean of their similarities.
    ``find_duplicates=False`` leaves the error to the caller (see
    :func:`refuse_duplicates`): the blocks and local engines find repeated
    pairs as they sort the edges into their own layout, which saves a shuffle
    of every edge.

    Raises
    ------
    MissingColumnError, ColumnTypeError
        A column is absent or of a type that cannot be used.
    EmptyInputError
        There are no edges.
    InvalidValueError
        Null ids, or null, NaN or infinite similarities.
    DuplicateEdgeError
        A (src, dst) pair occurs more than once and ``duplicates`` is "error".
    """
    out = _edge_columns(edges, src, dst, weight)
    _refuse_bad_edges(out, src, dst, weight)
    if duplicates != "error":
        combine = F.max if duplicates == "max" else F.mean
        return out.groupBy("src", "dst").agg(combine("similarity").alias("similarity"))
    if find_duplicates:
        refuse_duplicates(out, src, dst)
    return out


def _edge_columns(edges: DataFrame, src: str, dst: str, weight: str) -> DataFrame:
    """``src, dst, similarity`` of the edge table, ids as long or string, similarities as double."""
    require_columns(edges, [src, dst, weight], "The edge table")
    dtype = edges.schema[weight].dataType
    if not isinstance(dtype, _NUMERIC):
        raise ColumnTypeError(
            f"The similarity column '{weight}' has type {dtype.simpleString()}; it must be numeric "
            "(cast it, e.g. F.col(weightCol).cast('double'), after checking the values parse)."
        )
    kind = id_type(edges, [src, dst], "The edge table")
    return edges.select(
        F.col(src).cast(kind).alias("src"),
        F.col(dst).cast(kind).alias("dst"),
        F.col(weight).cast("double").alias("similarity"),
    )


def _refuse_bad_edges(out: DataFrame, src: str, dst: str, weight: str) -> None:
    """Refuse an empty edge table, null ids, and null, NaN or infinite similarities (one aggregate)."""
    s = F.col("similarity")
    bad_id = F.col("src").isNull() | F.col("dst").isNull()
    bad_s = s.isNull() | F.isnan(s) | (F.abs(s) == float("inf"))
    # A reader puts U+FFFD where a file's bytes are not UTF-8 (Spark's CSV reader does, silently):
    # two different ids would become one.
    strings = isinstance(out.schema["src"].dataType, T.StringType)
    undecoded = (F.instr("src", REPLACEMENT) > 0) | (F.instr("dst", REPLACEMENT) > 0) if strings else F.lit(False)
    counts = out.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(bad_id.cast("long")).alias("bad_id"),
        F.sum(bad_s.cast("long")).alias("bad_s"),
        F.sum(undecoded.cast("long")).alias("undecoded"),
        F.max(F.when(~bad_s, F.abs(s))).alias("largest"),
    ).first()
    if counts["rows"] == 0:
        raise EmptyInputError("The edge table has no rows; there is nothing to cluster.")
    if counts["bad_id"]:
        raise InvalidValueError(
            f"{counts['bad_id']} of {counts['rows']} edges have a null id in '{src}' or '{dst}'; "
            f"for example {_example(out, bad_id)}."
        )
    if counts["undecoded"]:
        raise InvalidValueError(
            f"{counts['undecoded']} of {counts['rows']} edges have an id in '{src}' or '{dst}' holding U+FFFD, "
            f"the character a reader puts where the input's bytes are not UTF-8; for example "
            f"{_example(out, undecoded)}. Save the input as UTF-8, or read it with its own encoding."
        )
    if counts["bad_s"]:
        raise InvalidValueError(
            f"{counts['bad_s']} of {counts['rows']} edges have a null, NaN or infinite similarity in "
            f"'{weight}'; for example {_example(out, bad_s)}. Drop those edges to mean 'no similarity known'."
        )
    limit = largest_similarity(counts["rows"])
    if counts["largest"] > limit:
        huge = F.abs(s) > limit
        raise InvalidValueError(
            f"{out.filter(huge).count()} of {counts['rows']} edges have a similarity in '{weight}' beyond "
            f"±{limit:.3g}, where the sums of AP's messages overflow; for example {_example(out, huge)}. "
            "Scale the similarities down (AP's clusters do not change when all similarities are scaled)."
        )


def largest_similarity(edges: int) -> float:
    """The largest similarity magnitude whose messages cannot overflow on a graph of ``edges`` edges: a
    message sums at most one similarity-sized value per vertex (up to ``edges + 1`` of them), twice over."""
    return _DOUBLE_MAX / (4 * (edges + 2))


def refuse_duplicates(edges: DataFrame, src: str = "src", dst: str = "dst") -> None:
    """Raise :class:`DuplicateEdgeError` if a (src, dst) pair of ``edges`` occurs more than once;
    ``src`` and ``dst`` name the input's columns in the message."""
    dup = edges.groupBy("src", "dst").count().filter(F.col("count") > 1)
    dup_stats = dup.agg(F.count(F.lit(1)).alias("pairs"), F.sum("count").alias("rows")).first()
    if dup_stats["pairs"]:
        example = dup.limit(1).collect()[0]
        raise DuplicateEdgeError(dup_stats["pairs"], dup_stats["rows"], tuple(example), (src, dst))


def validate_vertices(vertices: DataFrame, id_col: str, pref_col: str, kind: T.DataType) -> DataFrame:
    """(id, preference) from the vertices table, one row per vertex; a null preference, or no
    ``pref_col`` column, means 'use the preference param'.

    Raises
    ------
    ColumnTypeError
        The preference column is not numeric.
    InvalidValueError
        Null or repeated ids (a repeated id would give its vertex two self-edges), NaN or
        infinite preferences.
    """
    if pref_col in vertices.columns:
        dtype = vertices.schema[pref_col].dataType
        if not isinstance(dtype, _NUMERIC):
            raise ColumnTypeError(
                f"The vertices table's preference column '{pref_col}' has type {dtype.simpleString()}"
            )
        preference = F.col(pref_col).cast("double")
    else:
        preference = F.lit(None).cast("double")
    out = vertices.select(F.col(id_col).cast(kind).alias("id"), preference.alias("preference"))
    p = F.col("preference")
    bad = F.isnan(p) | (F.abs(p) == float("inf"))
    checks = out.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct("id").alias("ids"),
        F.sum(F.col("id").isNull().cast("long")).alias("null_id"),
        F.sum(F.coalesce(bad, F.lit(False)).cast("long")).alias("bad"),
    ).first()
    rows = checks["rows"]
    if checks["null_id"]:
        raise InvalidValueError(
            f"{checks['null_id']} of {rows} rows of the vertices table have a null id in '{id_col}'; "
            f"for example {_example(out, F.col('id').isNull())}."
        )
    if checks["ids"] != rows:
        _refuse_repeated_ids(out, id_col, "row of the vertices table")
    if checks["bad"]:
        raise InvalidValueError(
            f"{checks['bad']} vertices have a NaN or infinite preference in '{pref_col}'; "
            f"for example {_example(out, bad)}."
        )
    return out


def validate_features(features: DataFrame, id_col: str, features_col: str) -> DataFrame:
    """Return ``features`` as (id, x): long or string ids, equally long arrays of finite doubles.

    Raises
    ------
    MissingColumnError, ColumnTypeError
        A column is absent, or the features are not numbers.
    InvalidInputError
        Fewer than 2 rows: there is nothing to compare.
    InvalidValueError
        Null or repeated ids; null vectors, or vectors holding null, NaN or
        infinite values; vectors of different lengths.
    """
    require_columns(features, [id_col, features_col], "The feature table")
    kind = id_type(features, [id_col], "The feature table")
    x = _feature_array(features, features_col)
    out = features.select(F.col(id_col).cast(kind).alias("id"), x.cast("array<double>").alias("x"))
    _refuse_bad_features(out, id_col, features_col)
    return out


def _feature_array(features: DataFrame, features_col: str) -> Column:
    """The feature column as an array of numbers (an ML vector converted)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT

    dtype = features.schema[features_col].dataType
    if isinstance(dtype, VectorUDT):
        return vector_to_array(F.col(features_col))
    if not (isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, _NUMERIC)):
        raise ColumnTypeError(
            f"The feature column '{features_col}' has type {dtype.simpleString()}; "
            "it must be an array of numbers or an ML vector."
        )
    return F.col(features_col)


def _refuse_bad_features(out: DataFrame, id_col: str, features_col: str) -> None:
    """Refuse fewer than 2 rows, null or repeated ids, null vectors or values, and ragged vectors
    of the (id, x) table ``out`` (one aggregate, then a pass for an example of what is wrong)."""
    x = F.col("x")
    bad_value = F.exists(x, lambda v: v.isNull() | F.isnan(v) | (F.abs(v) == float("inf")))
    checks = out.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct("id").alias("ids"),
        F.sum(F.col("id").isNull().cast("long")).alias("null_id"),
        F.sum(x.isNull().cast("long")).alias("null_x"),
        F.sum(F.coalesce(bad_value, F.lit(False)).cast("long")).alias("bad_value"),
        F.min(F.size(x)).alias("min_size"),
        F.max(F.size(x)).alias("max_size"),
        F.max(
            F.array_max(F.transform(x, lambda v: F.when(~(F.isnan(v) | (F.abs(v) == float("inf"))), F.abs(v))))
        ).alias("largest"),
    ).first()
    rows = checks["rows"]
    if rows < 2:
        raise InvalidInputError(f"The feature table has {rows} row(s); clustering needs at least 2.")
    if checks["null_id"]:
        raise InvalidValueError(
            f"{checks['null_id']} of {rows} feature rows have a null id in '{id_col}'; "
            f"for example {_example(out, F.col('id').isNull())}."
        )
    if checks["ids"] != rows - checks["null_id"]:
        _refuse_repeated_ids(out, id_col, "feature row")
    if checks["null_x"]:
        raise InvalidValueError(
            f"{checks['null_x']} of {rows} feature rows have a null '{features_col}'; "
            f"for example {_example(out, x.isNull())}."
        )
    if checks["bad_value"]:
        raise InvalidValueError(
            f"{checks['bad_value']} of {rows} feature rows hold a null, NaN or infinite value in "
            f"'{features_col}'; for example {_example(out, bad_value)}."
        )
    if checks["min_size"] != checks["max_size"]:
        sizes = out.groupBy(F.size(x).alias("size")).count().orderBy(F.desc("count"), "size").collect()
        common = sizes[0]["size"]
        ragged = sum(r["count"] for r in sizes[1:])
        raise InvalidValueError(
            f"{ragged} of {rows} feature rows in '{features_col}' do not have the {common} values most rows "
            f"have; for example {_example(out, F.size(x) != common)}."
        )
    # A squared distance sums (2 * value)**2 over the dimensions and becomes a similarity: it must stay
    # below the edges' limit (rows * rows edges at most, the complete graph), else it overflows to -inf.
    limit = (largest_similarity(rows * rows) / (4 * max(checks["max_size"], 1))) ** 0.5
    if (checks["largest"] or 0) > limit:
        huge = F.exists(x, lambda v: F.abs(v) > limit)
        raise InvalidValueError(
            f"{out.filter(huge).count()} of {rows} feature rows hold a value in '{features_col}' beyond "
            f"±{limit:.3g}, where squared distances between rows overflow; for example {_example(out, huge)}. "
            "Scale the features down."
        )


def refuse_zero_vectors(points: DataFrame) -> None:
    """Raise :class:`InvalidValueError` for (id, x) rows of length zero, which have no cosine similarity."""
    zero = F.forall("x", lambda v: v == 0) | (F.aggregate("x", F.lit(0.0), lambda acc, v: acc + v * v) == 0)
    n_zero = points.filter(zero).count()
    if n_zero:
        example = points.filter(zero).select("id").first()["id"]
        raise InvalidValueError(
            f"{n_zero} feature rows are all zeros, which have no cosine similarity; for example id {example!r}."
        )
