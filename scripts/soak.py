"""Run many iterations and show that an iteration costs the same at the end as at the start.

    python scripts/soak.py [--iterations 500] [--points 40] [--engine graphframes]

Runs a short and a long run on the same graph in one process and prints the
seconds per iteration of each and their ratio: growing lineage or leaked state
would make the long run's iterations slower.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np

from spark_ap import AffinityPropagation, ConvergenceWarning, edges_from_matrix, spark_session
from spark_ap.params import ENGINES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--checkpoint-interval", type=int, default=10)
    parser.add_argument("--engine", choices=ENGINES, default="graphframes")
    args = parser.parse_args()

    spark = spark_session(**{"spark.sql.shuffle.partitions": "4"})
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="spark-ap-soak-"))
    S = -np.random.RandomState(0).rand(args.points, args.points)
    edges = edges_from_matrix(spark, S).cache()
    edges.count()
    warnings.simplefilter("ignore", ConvergenceWarning)

    per_iteration = {}
    for n in (args.iterations // 10, args.iterations):
        ap = AffinityPropagation(
            maxIter=n,
            convergenceIter=n + 1,
            damping=0.9,
            checkpointInterval=args.checkpoint_interval,
            engine=args.engine,
        )
        started = time.perf_counter()
        result = ap.run(edges)
        per_iteration[n] = (time.perf_counter() - started) / result.numIterations
        result.unpersist()
        print(f"{n:5d} iterations: {per_iteration[n]:.3f} s/iteration")
    short, long = per_iteration.values()
    print(f"long / short seconds per iteration: {long / short:.2f} (about 1 means no growth)")


if __name__ == "__main__":
    main()
