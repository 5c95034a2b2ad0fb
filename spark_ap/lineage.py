"""Lineage and storage helpers the whole library shares: cut a DataFrame's plan, free its blocks.

At the bottom of the layout (it imports only pyspark), so that the preparation,
the engines, the loop and the estimators use one copy.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Observation

INF = float("inf")


def materialize(df: DataFrame) -> DataFrame:
    """Compute ``df`` into executor storage and cut its lineage.

    A chain of merely persisted iterations would keep every earlier plan inside
    the next one; Spark describes such nested cached plans in text that doubles
    with every level, so each iteration is checkpointed locally instead.
    """
    return df.localCheckpoint(eager=True)


def release(df: DataFrame) -> None:
    """Free the blocks of a locally checkpointed state now rather than at the next JVM GC."""
    jdf = getattr(df, "_jdf", None)  # absent on Spark Connect, where the server cleans up
    if jdf is None:
        return
    plan = jdf.queryExecution().analyzed()
    if plan.nodeName() == "LogicalRDD":
        plan.rdd().unpersist(False)


def save_reliably(df: DataFrame) -> DataFrame:
    """Write ``df`` to the reliable checkpoint directory and read it back from there."""
    saved = df.checkpoint(eager=True)
    release(df)
    return saved


def materialize_observing(df: DataFrame, aggregates: list[Column]) -> tuple[DataFrame, dict]:
    """:func:`materialize` ``df``, computing the named ``aggregates`` over its rows on the way.

    The aggregates are observed while the checkpoint is computed, not read by a
    pass of their own: they sit in the checkpoint's final stage, whose tasks
    Spark counts once per partition, so a retried task does not count twice.
    """
    observation = Observation()
    materialized = materialize(df.observe(observation, *aggregates))
    return materialized, observation.get
