"""Spark Connect: the local engine against the cheapest DataFrame-only iteration a blocks engine could have.

    python scripts/benchmark_connect.py [--points 1000] [--iterations 30]

The blocks engine keeps its edge state in executor-local files that the next
iteration's tasks find again through the SparkContext; a Spark Connect client
has neither. A DataFrame-only blocks engine would have to carry the state in a
DataFrame and rewrite it every iteration (``mapInArrow`` over the chunks, then
``localCheckpoint``). This measures, in one Connect session to a local server,
on a complete graph of ``--points`` points:

* ``local``: the local engine's run (``engine="local"``), per iteration, and
  the bytes of the edge table brought into the client once;
* ``dataframe floor``: one pass of ``mapInArrow`` that returns every Arrow batch
  unchanged, then ``localCheckpoint``, over the same edge state (src, dst, s,
  r, a): no arithmetic at all, so a lower bound for such an iteration;
* the same floor in a classic session, for scale.

Prints one table; the ratios are what docs/support.md quotes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, similarity_matrix
from spark_ap.compat import frame_from_arrow


def edge_table(spark, S) -> DataFrame:
    """The complete graph ``S`` (self-edges aside) as src, dst, similarity, sent as Arrow."""
    n = len(S)
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    table = pa.table({"src": src.astype(np.int64), "dst": dst.astype(np.int64), "similarity": S[src, dst]})
    return frame_from_arrow(spark, table).localCheckpoint()


def unchanged(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield from batches


def state_of(edges: DataFrame) -> DataFrame:
    """The edge state an iteration rewrites: src, dst, s and two messages."""
    return edges.select("src", "dst", F.col("similarity").alias("s"), F.lit(0.0).alias("r"), F.lit(0.0).alias("a"))


def floor_per_iteration(edges: DataFrame, iterations: int) -> float:
    """Seconds per pass of mapInArrow + localCheckpoint over the edge state."""
    state = state_of(edges).localCheckpoint()
    started = time.perf_counter()
    for _ in range(iterations):
        state = state.mapInArrow(unchanged, state.schema).localCheckpoint()
    return (time.perf_counter() - started) / iterations


def local_per_iteration(edges: DataFrame, iterations: int) -> float:
    """Seconds per iteration of the local engine, its set-up (reading the edges) spread over them."""
    ap = AffinityPropagation(engine="local", maxIter=iterations, convergenceIter=iterations, noise="sklearn")
    started = time.perf_counter()
    result = ap.run(edges)
    result.assignments.count()
    return (time.perf_counter() - started) / result.numIterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    X, _ = make_blobs(args.points, centers=8, random_state=0)
    S = similarity_matrix(X)
    n_edges = args.points * (args.points - 1)

    from pyspark.sql import SparkSession

    from spark_ap import spark_session

    # The classic session first: a local Connect server starts a SparkContext of its own.
    classic = spark_session(master="local[2]", **{"spark.ui.enabled": "false", "spark.driver.memory": "4g"})
    edges = edge_table(classic, S)
    classic_floor = floor_per_iteration(edges, max(3, args.iterations // 10))
    classic.stop()

    connect = SparkSession.builder.remote("local[2]").config("spark.driver.memory", "4g").getOrCreate()
    edges = edge_table(connect, S)
    rows = [
        ("connect", "local engine", local_per_iteration(edges, args.iterations)),
        ("connect", "dataframe floor", floor_per_iteration(edges, max(3, args.iterations // 10))),
        ("classic", "dataframe floor", classic_floor),
    ]
    connect.stop()

    base = rows[0][2]
    print(f"{args.points} points, {n_edges:.3g} edges; edge table into the client once: {n_edges * 24 / 2**20:.1f} MiB")
    print(f"{'session':<8} {'iteration':<16} {'s/iter':>8} {'x local':>8}")
    for session, what, seconds in rows:
        print(f"{session:<8} {what:<16} {seconds:8.3f} {seconds / base:8.1f}")


if __name__ == "__main__":
    main()
