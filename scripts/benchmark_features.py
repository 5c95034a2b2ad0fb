"""Clusters from feature vectors at scale: spark-ap's multi-level pipeline against the truth and scikit-learn.

    python scripts/benchmark_features.py                       # N = 10,000 (with scikit-learn) and 100,000
    python scripts/benchmark_features.py --points 1e6 --out benchmarks/features-1e6

For each N, Gaussian blobs (50 centres, 10-D, ``make_blobs(random_state=0)``)
are written to Parquet as ``id, x0 .. x9``. Then, in the same run:

* spark-ap: :class:`spark_ap.MultiLevelAffinityPropagation` with its defaults
  (10-NN graph from random projection trees, preference = median of sampled
  pairwise similarities, levels at ``resolution`` 10,000) and ``--damping``,
  from reading the Parquet file to the assignments, on local Spark;
* scikit-learn's dense ``AffinityPropagation`` (euclidean affinity, its default
  median preference, the same damping) in a child process, when N is at most
  ``--dense-max``.

Damping 0.9: at 0.5 scikit-learn does not converge on these blobs at N = 10,000
(200 iterations, 440 clusters), which makes a poor reference.

Reported per N: seconds, peak memory (spark-ap: resident set of Spark's JVM and
its Python workers, polled; scikit-learn: the child's maximum resident set),
clusters, the adjusted Rand index against the truth and against scikit-learn,
the approximate graph's measured recall, and spark-ap's levels. Results go to
``features.json`` and ``features.md`` in ``--out``, rewritten after each N.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import PeakRSS, own_peak_bytes  # noqa: E402  (a script beside this one)

CENTERS, DIMENSIONS = 50, 10


def blobs(n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_blobs

    return make_blobs(n, n_features=DIMENSIONS, centers=CENTERS, random_state=0)


def sklearn_worker(n: int, damping: float, out: str) -> dict:
    """scikit-learn's dense AP on the blobs; its labels go to ``out`` (.npy)."""
    from sklearn.cluster import AffinityPropagation

    X, _ = blobs(n)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ap = AffinityPropagation(damping=damping, max_iter=1000, random_state=0).fit(X)
    seconds = time.perf_counter() - started
    np.save(out, ap.labels_)
    return {
        "seconds": seconds,
        "peak_bytes": own_peak_bytes(),
        "iterations": int(ap.n_iter_),
        "clusters": len(ap.cluster_centers_indices_),
    }


def spark_ap_run(spark, path: str, damping: float, params: dict) -> dict:
    """The multi-level pipeline from the Parquet file; its labels, time and memory."""
    from pyspark.sql import functions as F

    from spark_ap import ConvergenceWarning, MultiLevelAffinityPropagation

    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    memory = PeakRSS(int(jvm))
    warnings.simplefilter("ignore", ConvergenceWarning)
    started = time.perf_counter()
    table = spark.read.parquet(path)
    features = table.select("id", F.array(*[f"x{i}" for i in range(DIMENSIONS)]).alias("features"))
    result = MultiLevelAffinityPropagation(damping=damping, **params).run(features)
    assignments = result.assignments.toPandas().sort_values("id")
    seconds = time.perf_counter() - started
    peak = memory.stop()
    out = {
        "seconds": seconds,
        "peak_bytes": peak,
        "clusters": int(assignments["cluster"].nunique()),
        "recall": result.recall,
        "preference": result.preference,
        "preference_source": result.preferenceSource,
        "levels": json.loads(result.levels.to_json(orient="records")),
        "labels": assignments["cluster"].to_numpy(),
    }
    result.unpersist()
    return out


def markdown(results: list[dict]) -> str:
    lines = [
        "| N | run | seconds | peak GiB | clusters | ARI vs truth | ARI vs scikit-learn | graph recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name in ("spark-ap", "scikit-learn dense"):
            run = r.get(name)
            if run is None:
                continue
            vs_sklearn, recall = run.get("ari_sklearn"), run.get("recall")
            lines.append(
                f"| {r['points']:,} | {name} | {run['seconds']:.1f} | {run['peak_bytes'] / 2**30:.2f} | "
                f"{run['clusters']} | {run['ari_truth']:.4f} | "
                f"{'' if vs_sklearn is None else f'{vs_sklearn:.4f}'} | "
                f"{'' if recall is None else f'{recall:.3f}'} |"
            )
        if "scikit-learn dense" in r:
            ratio = r["scikit-learn dense"]["seconds"] / r["spark-ap"]["seconds"]
            lines.append(f"|  | scikit-learn / spark-ap time | {ratio:.2f} | | | | | |")
    lines.append("")
    for r in results:
        lines.append(f"Levels at N = {r['points']:,} ({r['spark-ap']['preference_source']}):")
        lines.append("")
        lines.append("| level | points | edges | graph | clusters | iterations | converged | seconds |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for level in r["spark-ap"]["levels"]:
            columns = ("level", "points", "edges", "graph", "clusters", "iterations", "converged", "seconds")
            lines.append("| " + " | ".join(str(level[key]) for key in columns) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default="1e4,1e5", help="sizes N, comma-separated")
    parser.add_argument("--damping", type=float, default=0.9)
    parser.add_argument("--dense-max", type=float, default=2e4, help="run scikit-learn up to this N")
    parser.add_argument(
        "--warmup", type=int, default=5000, help="first cluster this many points, untimed, to warm the JVM (0: no)"
    )
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--out", default="benchmarks")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another MultiLevelAffinityPropagation param, e.g. --param numNeighbors=15 (repeatable)",
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        n, damping, out = args.worker
        print(json.dumps(sklearn_worker(int(n), float(damping), out)))
        return

    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    from spark_ap import spark_session

    sizes = [int(float(p)) for p in args.points.split(",")]
    params = {name: json.loads(value) for name, value in (item.split("=", 1) for item in args.param)}
    spark = spark_session(
        master=args.master,
        **{
            "spark.driver.memory": args.driver_memory,
            "spark.sql.shuffle.partitions": str(max(8, max(sizes) // 50_000)),
            "spark.ui.enabled": "false",
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("spark_ap").setLevel(logging.INFO)

    results, out = [], Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="spark-ap-features-"))
    if args.warmup:
        # A fresh JVM compiles its code paths and starts Python workers on first
        # use; a notebook or a long-lived session has done so already.
        X, _ = blobs(args.warmup)
        warm = pd.DataFrame(X, columns=[f"x{i}" for i in range(DIMENSIONS)])
        warm.insert(0, "id", np.arange(args.warmup))
        warm.to_parquet(scratch / "warmup.parquet", index=False)
        spark_ap_run(spark, str(scratch / "warmup.parquet"), args.damping, params)
    for n in sizes:
        X, truth = blobs(n)
        table = pd.DataFrame(X, columns=[f"x{i}" for i in range(DIMENSIONS)])
        table.insert(0, "id", np.arange(n))
        path = scratch / f"blobs_{n}.parquet"
        table.to_parquet(path, index=False)
        row: dict = {"points": n}
        ours = spark_ap_run(spark, str(path), args.damping, params)
        labels = ours.pop("labels")
        ours["ari_truth"] = adjusted_rand_score(truth, labels)
        row["spark-ap"] = ours
        if n <= args.dense_max:
            saved = scratch / f"sklearn_{n}.npy"
            done = subprocess.run(
                [sys.executable, __file__, "--worker", str(n), str(args.damping), str(saved)],
                capture_output=True,
                text=True,
                check=True,
            )
            dense = json.loads(done.stdout.strip().splitlines()[-1])
            dense_labels = np.load(saved)
            dense["ari_truth"] = adjusted_rand_score(truth, dense_labels)
            ours["ari_sklearn"] = adjusted_rand_score(dense_labels, labels)
            row["scikit-learn dense"] = dense
        results.append(row)
        print(markdown(results[-1:]), flush=True)
        machine = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "master": args.master,
            "driver_memory": args.driver_memory,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
        (out / "features.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
        (out / "features.md").write_text(markdown(results))
    print(f"wrote {out / 'features.json'} and {out / 'features.md'}")


if __name__ == "__main__":
    main()
