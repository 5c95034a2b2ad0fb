"""Small inputs: how long a new user waits, beside scikit-learn in the same run.

    python scripts/benchmark_small.py

Each measurement is the best of ``--repeats``:

* the README's notebook example on ``--points`` blobs (a GraphFrame read from
  Parquet, ``AffinityPropagation().run(graph)``, the assignments and exemplars
  collected), after the session exists, with ``engine="auto"`` (the driver)
  and ``engine="blocks"`` (the executors); scikit-learn's
  ``AffinityPropagation(affinity="precomputed")`` on the same matrix, and the
  clusters compared;
* ``MultiLevelAffinityPropagation().fit`` on the bundled 400-point example,
  after the session exists, and ``fit(numClusters=6)`` with its search on the
  driver and through Spark (a run per attempt);
* the graphframes engine on 60 points under Spark's 200 shuffle partitions,
  ``spark_session()``'s choice and ``spark_ap/app/spark-ap.yaml``'s 8;
* the ``spark-ap`` command on the bundled example, wall time from the shell
  (JVM start-up included), with Spark's default settings and with
  ``spark_ap/app/spark-ap.yaml``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from graphframes import GraphFrame
from pyspark.ml.feature import VectorAssembler
from sklearn.cluster import AffinityPropagation as SklearnAP
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from spark_ap import (
    AffinityPropagation,
    MultiLevelAffinityPropagation,
    edges_from_matrix,
    similarity_matrix,
    spark_session,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_quantile import best_of  # noqa: E402  (a script beside this one)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "blobs_400.csv"


def notebook(spark, folder: Path, engine: str) -> dict:
    """The README's notebook example: read, run, collect; returns {id: exemplar}."""
    graph = GraphFrame(spark.read.parquet(str(folder / "points")), spark.read.parquet(str(folder / "edges")))
    result = AffinityPropagation(engine=engine, seed=0).run(graph)
    result.exemplars.collect()
    return {row.id: row.exemplar for row in result.assignments.collect()}


def command(config: list[str], out: Path) -> float:
    """Wall seconds of one ``spark-ap`` run on the bundled example."""
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "spark-ap"), "--input", str(EXAMPLE), "--kind", "features"]
        + ["--output", str(out), *config],
        check=True,
        capture_output=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spark = spark_session("local[2]", **{"spark.ui.enabled": "false"})
        X, _ = make_blobs(args.points, centers=4, random_state=0)
        S = similarity_matrix(X)
        edges_from_matrix(spark, S).write.parquet(str(folder / "edges"))
        spark.range(args.points).write.parquet(str(folder / "points"))

        # spark-ap's "median" is that of the similarities between distinct points (scikit-learn's
        # default counts the diagonal too): give scikit-learn the same value.
        median = float(np.median(S[~np.eye(args.points, dtype=bool)]))
        sk, sk_time = best_of(
            args.repeats, lambda: SklearnAP(affinity="precomputed", preference=median, random_state=0).fit(S)
        )
        for engine in ("auto", "blocks"):
            chosen, seconds = best_of(args.repeats, lambda e=engine: notebook(spark, folder, e))
            # The same partition of the points as scikit-learn's.
            same = adjusted_rand_score(sk.labels_, [chosen[i] for i in range(args.points)]) == 1.0
            rows.append((f"notebook example, {args.points} points, engine={engine}", seconds, sk_time, same))

        table = spark.read.csv(str(EXAMPLE), header=True, inferSchema=True)
        vectors = VectorAssembler(inputCols=["x", "y"], outputCol="features").transform(table)
        _, fit_time = best_of(args.repeats, lambda: MultiLevelAffinityPropagation().fit(vectors))
        rows.append(("MultiLevelAffinityPropagation.fit, the 400-point example", fit_time, None, None))
        # The search for 6 clusters: on the driver (engine auto, no stateDir), and through Spark's
        # levels, a run per attempt (engine blocks), which compute the same attempts.
        for engine, where in (("auto", "on the driver"), ("blocks", "a Spark run per attempt")):
            fitted, seconds = best_of(
                args.repeats, lambda e=engine: MultiLevelAffinityPropagation(numClusters=6, engine=e).fit(vectors)
            )
            attempts = len(fitted.summary.attempts)
            rows.append(
                (f"fit(numClusters=6), the 400-point example, {where}, {attempts} attempts", seconds, None, None)
            )

        # A notebook's session on a small graph with the graphframes engine: Spark's 200 shuffle
        # partitions, spark_session()'s own choice (two per core), and spark_ap/app/spark-ap.yaml's 8.
        chosen = spark.conf.get("spark.sql.shuffle.partitions")
        small = GraphFrame(spark.range(60), edges_from_matrix(spark, similarity_matrix(X[:60])))
        for partitions, label in (
            ("200", "Spark's default"),
            (chosen, "spark_session()'s"),
            ("8", "spark_ap/app/spark-ap.yaml's"),
        ):
            spark.conf.set("spark.sql.shuffle.partitions", partitions)
            _, seconds = best_of(
                args.repeats, lambda: AffinityPropagation(engine="graphframes").run(small).exemplars.count()
            )
            rows.append(
                (f"graphframes engine, 60 points, {partitions} shuffle partitions ({label})", seconds, None, None)
            )
        spark.conf.set("spark.sql.shuffle.partitions", chosen)
        spark.stop()

        for label, config in (
            ("Spark's default settings", []),
            ("spark_ap/app/spark-ap.yaml", ["--config", "spark_ap/app/spark-ap.yaml"]),
        ):
            runs = [command(config, folder / f"run-{len(rows)}-{k}") for k in range(args.repeats)]
            rows.append((f"spark-ap on the 400-point example, {label}, wall", min(runs), None, None))

    print("| what | seconds | scikit-learn (s) | same clusters as scikit-learn |")
    print("| --- | ---: | ---: | :---: |")
    for what, seconds, sk_seconds, same in rows:
        sk_text = "" if sk_seconds is None else f"{sk_seconds:.3f}"
        print(f"| {what} | {seconds:.2f} | {sk_text} | {'' if same is None else same} |")


if __name__ == "__main__":
    main()
