"""Every difference between the Spark sessions spark-ap runs in, in one place.

Two kinds of difference:

* **Classic or Spark Connect.** A classic session has a SparkContext, RDDs,
  broadcasts and a JVM in the driver's process; a Spark Connect session has
  only DataFrames, planned and run by a server. What needs the classic API
  asks for it here (:func:`spark_context`), so that in a Connect
  session it fails in one line naming the feature
  (:class:`~spark_ap.ClassicSessionRequiredError`), never with a JVM
  attribute traceback; what has a DataFrame-only equivalent gets it here
  (:func:`checkpoint_dir`, :func:`describe_jobs`, :func:`shared`).
* **Spark lines.** Spark 3.5 lacks ``DataFrame.toArrow`` and
  ``createDataFrame`` of a pyarrow Table (both Spark 4.0): :func:`to_arrow`
  and :func:`frame_from_arrow` stand in for them; its pyspark.ml readers and
  writers take a SparkContext, not a session (:func:`ml_io`).

At the bottom of the layout: it imports pyspark and spark_ap.errors only.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from spark_ap.errors import ClassicSessionRequiredError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyspark import SparkContext
    from pyspark.sql import DataFrame, SparkSession


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect session (``pyspark.sql.connect``), not a classic one.

    Decided by the class's module, so that a classic-only install (no grpcio)
    never imports Spark Connect's client to ask.
    """
    return type(spark).__module__.startswith("pyspark.sql.connect")


def require_classic(spark: SparkSession, feature: str, instead: str = "") -> None:
    """Raise :class:`~spark_ap.ClassicSessionRequiredError` naming ``feature`` if ``spark`` is a Connect session.

    ``instead`` is what works in a Connect session, when something does
    ("engine='local' runs in any session").
    """
    if is_connect(spark):
        raise ClassicSessionRequiredError(
            f"{feature} needs a classic SparkSession (a SparkContext in the driver's process) and this "
            "is a Spark Connect session: "
            + (f"{instead}, or use" if instead else "use")
            + " a classic session (SparkSession.builder without .remote(), or spark_ap.spark_session())."
        )


def spark_context(spark: SparkSession, feature: str, instead: str = "") -> SparkContext:
    """``spark.sparkContext`` for ``feature``, refused in one line on Spark Connect."""
    require_classic(spark, feature, instead)
    return spark.sparkContext


def checkpoint_dir(spark: SparkSession) -> str | None:
    """The reliable checkpoint directory ``DataFrame.checkpoint`` writes to, or None.

    Classic sessions set it with ``SparkContext.setCheckpointDir``; Spark
    Connect's server reads ``spark.checkpoint.dir``.
    """
    if is_connect(spark):
        return spark.conf.get("spark.checkpoint.dir", None) or None
    return spark.sparkContext.getCheckpointDir()


@contextmanager
def describe_jobs(spark: SparkSession, text: str) -> Iterator[None]:
    """Name the Spark jobs run inside the block in Spark's UI (classic sessions: Connect has no job descriptions)."""
    if is_connect(spark):
        yield
        return
    sc = spark.sparkContext
    sc.setJobDescription(text)
    try:
        yield
    finally:
        sc.setJobDescription(None)


@dataclass(frozen=True)
class _Inline:
    """A value that travels inside the functions that read it (Spark Connect has no broadcasts)."""

    value: Any


def shared(spark: SparkSession, value: Any) -> Any:
    """``value`` for the executors, read as ``.value``: a broadcast in a classic session.

    Spark Connect has no broadcasts; there the value is pickled with the
    function that reads it, as any closure's values are. Meant for values of
    a few megabytes at most (projection directions, sorted ids of a level).
    """
    if is_connect(spark):
        return _Inline(value)
    return spark.sparkContext.broadcast(value)


def ml_io(spark: SparkSession) -> Any:
    """What pyspark.ml's ``DefaultParamsWriter.saveMetadata`` / ``DefaultParamsReader.loadMetadata``
    take: the session on Spark 4 (a Connect session too), the SparkContext on Spark 3.5."""
    return spark if _spark_major() >= 4 else spark.sparkContext


def to_arrow(df: DataFrame) -> pa.Table:
    """``df.toArrow()``; on Spark 3.5 the same Arrow batches, collected with ``_collect_as_arrow``."""
    if hasattr(type(df), "toArrow"):
        return df.toArrow()
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(df.schema)
    batches = df._collect_as_arrow()
    return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()


def frame_from_arrow(spark: SparkSession, table: pa.Table, schema: Any = None) -> DataFrame:
    """``spark.createDataFrame(table, schema)``; on Spark 3.5 through pandas, with Arrow enabled."""
    if _spark_major() >= 4:
        return spark.createDataFrame(table, schema)
    from pyspark.sql.pandas.types import from_arrow_schema

    if schema is None:
        schema = from_arrow_schema(table.schema)
    with _arrow_enabled(spark):
        return spark.createDataFrame(table.to_pandas(), schema)


@contextmanager
def _arrow_enabled(spark: SparkSession) -> Iterator[None]:
    """Spark 3.5 converts pandas through Arrow only when asked to (a row at a time otherwise)."""
    key = "spark.sql.execution.arrow.pyspark.enabled"
    before = spark.conf.get(key, "false")
    spark.conf.set(key, "true")
    try:
        yield
    finally:
        spark.conf.set(key, before)


def _spark_major() -> int:
    import pyspark

    return int(pyspark.__version__.split(".")[0])
