"""The preference's exact quantile: spark-ap's bucketed selection against Spark's ``percentile``.

    python scripts/benchmark_quantile.py                 # 2.5e6 and 1e7 similarities
    python scripts/benchmark_quantile.py --sizes 2.5e7

For each size, uniform random similarities in [-100, 0) are generated and
locally checkpointed on local[2]; then, in the same run and on the same data,
the median by Spark's exact ``percentile`` aggregate and by
:func:`spark_ap.prepare.preference.exact_quantile` (which must agree bit for bit),
each timed ``--repeats`` times (the best is reported) after a warm-up count.
"""

from __future__ import annotations

import argparse
import time

from pyspark.sql import functions as F

from spark_ap import spark_session
from spark_ap.prepare.preference import exact_quantile


def best_of(repeats: int, compute) -> tuple[float, float]:
    """(value, the fastest of ``repeats`` runs in seconds)."""
    times, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = compute()
        times.append(time.perf_counter() - started)
    return value, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2.5e6,1e7", help="comma-separated numbers of similarities")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args()
    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8", "spark.driver.memory": args.driver_memory}
    spark = spark_session("local[2]", **conf)
    print("| similarities | Spark percentile (s) | exact_quantile (s) | speed-up | equal |")
    print("| ---: | ---: | ---: | ---: | :---: |")
    for size in (int(float(s)) for s in args.sizes.split(",")):
        frame = spark.range(size).select((F.rand(1) * -100).alias("similarity")).localCheckpoint()
        frame.count()
        spark_value, spark_time = best_of(
            args.repeats, lambda f=frame: f.agg(F.percentile("similarity", 0.5)).first()[0]
        )
        ours, our_time = best_of(args.repeats, lambda f=frame: exact_quantile(f, "similarity", 0.5))
        print(
            f"| {size:.2e} | {spark_time:.2f} | {our_time:.2f} | {spark_time / our_time:.1f}x | {ours == spark_value} |"
        )


if __name__ == "__main__":
    main()
