"""A spark-submit application for the standalone cluster tests: AffinityPropagation on an edge table with
no state dir, the session's checkpoint directory set, and its assignments and counts written out.

Arguments: INPUT (parquet edges) OUTPUT (a folder URI) CHECKPOINTS (a folder URI) [PARAM=VALUE ...].
"""

import json
import logging
import sys

from pyspark.sql import SparkSession

from spark_ap import AffinityPropagation


def main(inp: str, out: str, checkpoints: str, *params: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spark = SparkSession.builder.getOrCreate()
    spark.sparkContext.setCheckpointDir(checkpoints)
    given = {key: json.loads(value) for key, value in (param.split("=", 1) for param in params)}
    result = AffinityPropagation(**given).run(spark.read.parquet(inp))
    result.assignments.write.parquet(f"{out}/assignments.parquet")
    counts = {
        "iterations": result.numIterations,
        "converged": result.converged,
        "history": result.history.values.tolist(),
    }
    spark.createDataFrame([(json.dumps(counts),)], "counts string").write.text(f"{out}/counts")
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
