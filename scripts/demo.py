"""Cluster the bundled 2-D example and write a run folder with tables and plots.

python scripts/demo.py [--output output/demo]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import functions as F

from spark_ap import AffinityPropagation, edges_from_features, spark_session
from spark_ap.export import export_run

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "blobs_400.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=str(EXAMPLE), help="CSV with id, x, y (default: the bundled example)")
    parser.add_argument("--output", default="output/demo", help="run folder to create; a timestamp is appended")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    spark = spark_session(**{"spark.sql.shuffle.partitions": "4"})
    spark.sparkContext.setLogLevel("ERROR")
    points = pd.read_csv(args.input)
    features = spark.createDataFrame(points[["id", "x", "y"]]).select("id", F.array("x", "y").alias("features"))
    params = {"damping": 0.7, "preference": "0.1", "maxIter": 200, "convergenceIter": 15}

    started = time.time()
    edges = edges_from_features(features).localCheckpoint()
    built = time.time()
    result = AffinityPropagation(**params).run(edges)
    clustered = time.time()

    out = Path(f"{args.output}-{time.strftime('%Y%m%d-%H%M%S')}")
    export_run(
        result,
        out,
        params={**params, "input": args.input, "similarity": "negative squared euclidean"},
        points=points,
        timings={"graph": round(built - started, 2), "clustering": round(clustered - built, 2)},
    )
    print(f"\n{result.exemplars.count()} clusters, {result.numIterations} iterations, converged={result.converged}")
    for name in ("summary.json", "assignments.parquet", "exemplars.csv", "clusters.png", "convergence.png"):
        print(f"  {out / name}")


if __name__ == "__main__":
    main()
