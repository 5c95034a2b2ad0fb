"""Seconds per iteration of spark-ap's three engines, the numpy sparse reference and scikit-learn, in one run.

    python scripts/benchmark.py                        # 1e3, 1.6e4 and 1.6e5 points
    python scripts/benchmark.py --large                # and 1.6e6 points (2.5e7 edges)
    python scripts/benchmark.py --edges 2e4 --iterations 10 --out /tmp/bench
    python scripts/benchmark.py --edges 1.6e5 --knobs  # the graphframes engine's settings, against each other
    python scripts/benchmark.py --edges 1.6e6 --blocks-only --driver-memory 4g  # blocks' memory, another heap
    python scripts/benchmark.py --edges 1.6e6 --exchanges   # the blocks engine's two exchanges at P = 2 .. 128

For each size, Gaussian blobs (50 centres, 10-D) become a symmetrised k-nearest-
neighbour graph (k = 10, similarity = -squared distance, preference = the median
edge). On it run, for a fixed number of iterations without early stopping:

* spark-ap with ``engine="blocks"`` (what ``engine="auto"`` runs above 5
  million edges) on local Spark (``--master``, default ``local[2]``),
  ``--iterations`` iterations;
* spark-ap with ``engine="graphframes"``, two ``GraphFrame.aggregateMessages``
  rounds per iteration, ``--graphframes-iterations`` iterations, with where each
  iteration's time goes (the two rounds, and the availabilities with the
  checkpoint, which counts the exemplar decisions on the way);
* spark-ap with ``engine="local"``: the same numpy step as blocks, on the
  driver, Spark doing the set-up and the final assignment (up to
  ``--local-max-edges``);
* ``spark_ap.testing.reference.SparseReference``, the numpy sparse reference the
  tests use as oracle, on one core, in a child process;
* scikit-learn's dense ``AffinityPropagation`` on the complete similarity matrix
  of the same points, in a child process, when five N x N matrices fit in
  ``--dense-memory-gib``: that is what a user would otherwise run.

Reported per size: median seconds per iteration, edge updates per second (one
edge's r and a recomputed once), total seconds, peak memory (for spark-ap the
resident set of Spark's JVM and its Python workers, polled, plus what the
driver's Python process grew by during the run, which is where the local
engine holds its state; for the child processes their maximum resident set),
the memory in use after iteration 1 and after the last one, and each engine's
time relative to the blocks engine. For spark-ap, a second table splits the
run: set-up (from the call to the first iteration: validation, self-edges,
preference, the initial state and the engine's own layout), iterations and
finish (exemplars and labels), the peak memory of each, and the tax: seconds
per iteration against the one-core numpy reference's divided by Spark's cores.
Results go to ``results.json``, ``results.md`` and ``time_per_iteration.png`` in
``--out``.

``--exchanges`` runs the blocks engine alone on the first size with each
exchange (``driver``, ``routed``) at ``spark.default.parallelism`` 2, 8, 32 and
128 (``--parallelism``), a Spark application per P (in a child process), and
reports per iteration what crosses the driver and the network, read from
Spark's own metrics (its REST API) and from the engine: the bytes of task
results into the driver (accumulator reports included), the bytes broadcast
out of it, the bytes shuffled, and the largest per-source arrays a task holds:
``exchanges.json`` and ``exchanges.md``, with the one-core numpy reference's seconds per
iteration on the same graph (``scripts/scaling_model.py`` fits its cost model to them).

``--knobs`` runs the graphframes engine alone on the first size under each
setting (aggregateMessages' storage level, broadcast joins, adaptive query
execution, a reliable rather than a local checkpoint every iteration), in
interleaved rounds after a warm-up round, and reports each against the
defaults of the same round: ``knobs.json`` and ``knobs.md``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

K = 10
CENTERS = 50
FAST, BASELINE, LOCAL = "spark-ap blocks", "spark-ap graphframes", "spark-ap local"
DIMENSIONS = 10


def knn_graph(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetrised k-NN edges (src, dst, -squared distance) of n blob points, self-edges excluded."""
    from sklearn.datasets import make_blobs
    from sklearn.neighbors import NearestNeighbors

    X, _ = make_blobs(n, n_features=DIMENSIONS, centers=CENTERS, random_state=seed)
    distance, index = NearestNeighbors(n_neighbors=K + 1, n_jobs=-1).fit(X).kneighbors(X)
    src = np.repeat(np.arange(n), K)
    dst = index[:, 1:].ravel()
    s = -(distance[:, 1:].ravel() ** 2)
    # Symmetrise: keep each pair in both directions once (sorted by src, dst).
    keys = np.concatenate([src * n + dst, dst * n + src])
    values = np.concatenate([s, s])
    keys, first = np.unique(keys, return_index=True)
    return keys // n, keys % n, values[first]


def with_preferences(src, dst, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add a self-edge per vertex carrying the median edge similarity."""
    n = int(max(src.max(), dst.max())) + 1
    ids = np.arange(n)
    return np.r_[src, ids], np.r_[dst, ids], np.r_[s, np.full(n, np.median(s))]


def own_peak_bytes() -> int:
    """This process's own peak resident set since it started its program.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries that over from the parent
    through fork and exec, so a child of a large driver reports the driver's peak.
    """
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def numpy_worker(n: int, iterations: int) -> dict:
    """In a child process: the sparse reference's seconds per iteration and peak memory."""
    from spark_ap.testing.reference import SparseReference

    ref = SparseReference(*with_preferences(*knn_graph(n)))
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        ref.step(0.9)
        times.append(time.perf_counter() - started)
    return {"seconds": times, "peak_bytes": own_peak_bytes()}


def sklearn_worker(n: int, iterations: int) -> dict:
    """In a child process: scikit-learn's dense AP on all pairs of the same points."""
    import warnings

    from sklearn.cluster import AffinityPropagation
    from sklearn.datasets import make_blobs
    from sklearn.exceptions import ConvergenceWarning

    from spark_ap.prepare.builders import similarity_matrix

    X, _ = make_blobs(n, n_features=DIMENSIONS, centers=CENTERS, random_state=0)
    S = similarity_matrix(X)
    ap = AffinityPropagation(
        affinity="precomputed",
        damping=0.9,
        max_iter=iterations,
        convergence_iter=iterations + 1,
        preference=float(np.median(S)),
        random_state=0,
    )
    warnings.simplefilter("ignore", ConvergenceWarning)
    started = time.perf_counter()
    ap.fit(S)
    total = time.perf_counter() - started
    return {"seconds": [total / ap.n_iter_] * ap.n_iter_, "peak_bytes": own_peak_bytes()}


def in_child(kind: str, n: int, iterations: int) -> dict:
    """Run a worker in a fresh interpreter, so its peak memory is its own."""
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--points", str(n), "--iterations", str(iterations)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


class PeakRSS:
    """Poll the resident set of a process tree (here: Spark's JVM and its Python workers) from a thread,
    plus what this (the driver's) process holds beyond what it held at the start: the local engine's state."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.driver = psutil.Process()
        self.driver_start = self.driver.memory_info().rss
        self.peak = self.current = 0
        self.samples: list[tuple[float, int]] = []  # (time.time(), bytes), for the peaks of phases
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = max(0, self.driver.memory_info().rss - self.driver_start)
            try:
                for process in [self.process, *self.process.children(recursive=True)]:
                    total += process.memory_info().rss
            except psutil.NoSuchProcess:  # a Python worker that just exited
                pass
            self.current = total
            self.peak = max(self.peak, total)
            self.samples.append((time.time(), total))
            time.sleep(0.05)

    def peak_between(self, start: float, end: float) -> int:
        """The largest sample taken from ``start`` to ``end`` (time.time()), or the one just before."""
        inside = [b for at, b in self.samples if start <= at <= end]
        before = [b for at, b in self.samples if at < start][-1:]
        return max(inside or before or [0])

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


class IterationClock(logging.Handler):
    """Seconds between the engine's per-iteration log lines, the memory in use at each, and the
    graphframes engine's phases."""

    def __init__(self, memory: PeakRSS) -> None:
        super().__init__(logging.DEBUG)
        self.memory = memory
        self.ready: float | None = None  # when the engine had its state and iteration 1 began
        self.stamps: list[float] = []  # when each iteration ended
        self.rss: list[int] = []
        self.phases: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("iterating with"):
            self.ready = record.created
        elif re.match(r"iteration \d+/", record.getMessage()):
            self.stamps.append(record.created)
            self.rss.append(self.memory.current)
        elif record.getMessage().startswith("graphframes phases"):
            self.phases.append(dict(record.args))  # logging unpacks a lone dict argument

    def seconds(self) -> list[float]:
        return list(np.diff([self.ready, *self.stamps]))


def write_graph(n: int, path: str | None = None) -> str:
    """The k-NN graph of n blob points as a Parquet edge table at ``path`` (kept), or in a
    folder removed as this script exits; its path."""
    import pandas as pd

    src, dst, s = knn_graph(n)
    if path is None:
        folder = tempfile.mkdtemp(prefix="spark-ap-bench-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # 314 MB at 2.5e7 edges
        path = str(Path(folder) / "edges.parquet")
    pd.DataFrame({"src": src, "dst": dst, "similarity": s}).to_parquet(path, index=False)
    return path


def bench_session(master: str, driver_memory: str):
    """The local SparkSession benchmarks run in: 8 shuffle partitions, no UI, Spark's warnings off."""
    from spark_ap import spark_session

    spark = spark_session(
        master=master,
        **{
            "spark.driver.memory": driver_memory,
            "spark.sql.shuffle.partitions": "8",
            "spark.ui.enabled": "false",
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    logging.basicConfig(level=logging.WARNING)
    return spark


def spark_run(spark, path: str, n: int, iterations: int, engine: str, **params) -> dict:
    """spark-ap's seconds per iteration and the memory of Spark's JVM and Python workers."""
    import warnings

    from spark_ap import AffinityPropagation, ConvergenceWarning

    edges = spark.read.parquet(path)
    n_edges = edges.count()
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    memory = PeakRSS(int(jvm))
    clock = IterationClock(memory)
    logging.getLogger("spark_ap").addHandler(clock)
    warnings.simplefilter("ignore", ConvergenceWarning)
    started = time.time()
    ap = AffinityPropagation(
        damping=0.9,
        maxIter=iterations,
        convergenceIter=iterations + 1,
        preference="median",
        noise=False,
        engine=engine,
        **params,
    )
    result = ap.run(edges)
    result.assignments.count()  # the labels, which Spark may compute lazily
    ended = time.time()
    logging.getLogger("spark_ap").removeHandler(clock)
    peak = memory.stop()
    result.unpersist()
    ready, last = clock.ready, clock.stamps[-1]
    return {
        "seconds": clock.seconds(),
        "iterations": result.numIterations,
        "total": ended - started,
        # Set-up: validation, self-edges, preference, the initial state, the engine's own layout.
        # Finish: the exemplars and the labels, after the last iteration.
        "setup": ready - started,
        "finish": ended - last,
        "phase_peak_bytes": {
            "set-up": memory.peak_between(started, ready),
            "iterations": memory.peak_between(ready, last),
            "finish": memory.peak_between(last, ended),
        },
        "peak_bytes": peak,
        "edges": n_edges + n,
        "rss_bytes": clock.rss,
        # The first iteration's phases include planning what later ones reuse.
        "phases": {key: statistics.median(p[key] for p in clock.phases[1:]) for key in clock.phases[0]}
        if len(clock.phases) > 1
        else None,
    }


def summarise(name: str, run: dict, updates: int) -> dict:
    per_iteration = statistics.median(run["seconds"])
    return {
        "engine": name,
        "seconds_per_iteration": per_iteration,
        "edge_updates_per_second": updates / per_iteration,
        "total_seconds": run.get("total", sum(run["seconds"])),
        "peak_gib": run["peak_bytes"] / 2**30,
        "iterations": run.get("iterations", len(run["seconds"])),
        # Memory in use when iteration 1 and the last iteration ended: flat means no growth.
        "gib_at_iteration_1": run["rss_bytes"][0] / 2**30 if run.get("rss_bytes") else None,
        "gib_at_last_iteration": run["rss_bytes"][-1] / 2**30 if run.get("rss_bytes") else None,
        "phases": run.get("phases"),
        "setup_seconds": run.get("setup"),
        "finish_seconds": run.get("finish"),
        "phase_peak_gib": {k: v / 2**30 for k, v in run["phase_peak_bytes"].items()}
        if run.get("phase_peak_bytes")
        else None,
    }


def markdown(results: list[dict], cores: int) -> str:
    lines = [
        "| edges | points | engine | iterations | s / iteration | edge updates / s | total s | peak GiB "
        "| GiB at it. 1 / last | spark-ap / this |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in results:
        spark_time = next(r for r in size["engines"] if r["engine"] == FAST)["seconds_per_iteration"]
        for r in size["engines"]:
            flat = ""
            if r.get("gib_at_iteration_1") is not None:
                flat = f"{r['gib_at_iteration_1']:.2f} / {r['gib_at_last_iteration']:.2f}"
            lines.append(
                f"| {size['edges']:,} | {size['points']:,} | {r['engine']} | {r['iterations']} "
                f"| {r['seconds_per_iteration']:.4f} | {r['edge_updates_per_second']:.3g} | {r['total_seconds']:.1f} "
                f"| {r['peak_gib']:.2f} | {flat} | {spark_time / r['seconds_per_iteration']:.2f} |"
            )
        for skipped in size["skipped"]:
            lines.append(f"| {size['edges']:,} | {size['points']:,} | {skipped} | | n/a | | | | | |")
    lines += [
        "",
        f"| edges | engine | set-up s | s / iteration | finish s | tax vs numpy on {cores} cores "
        "| peak GiB: set-up / iterations / finish |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in results:
        numpy_time = next(
            (r["seconds_per_iteration"] for r in size["engines"] if r["engine"] == "numpy sparse reference"), None
        )
        for r in size["engines"]:
            if r.get("setup_seconds") is None:
                continue
            # The tax: spark-ap's time per iteration against the one-core reference's spread over `cores`.
            tax = "" if numpy_time is None else f"{r['seconds_per_iteration'] / (numpy_time / cores):.2f}x"
            peaks = " / ".join(f"{v:.2f}" for v in r["phase_peak_gib"].values())
            lines.append(
                f"| {size['edges']:,} | {r['engine']} | {r['setup_seconds']:.1f} | {r['seconds_per_iteration']:.4f} "
                f"| {r['finish_seconds']:.1f} | {tax} | {peaks} |"
            )
    phased = [(size, r) for size in results for r in size["engines"] if r.get("phases")]
    if phased:
        names = list(phased[0][1]["phases"])
        lines += ["", "| edges | engine | " + " | ".join(f"{p} s" for p in names) + " |"]
        lines.append("| ---: | --- |" + " ---: |" * len(names))
        for size, r in phased:
            total = sum(r["phases"].values())
            cells = " | ".join(f"{r['phases'][p]:.3f} ({r['phases'][p] / total:.0%})" for p in names)
            lines.append(f"| {size['edges']:,} | {r['engine']} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), dpi=100)
    panels = (
        ("seconds_per_iteration", "seconds per iteration (median)", "time per iteration"),
        ("edge_updates_per_second", "edge updates per second", "throughput (scikit-learn: N² pairs)"),
    )
    for ax, (key, label, title) in zip(axes, panels, strict=True):
        for name in (FAST, BASELINE, LOCAL, "numpy sparse reference", "scikit-learn dense"):
            points = [(s["edges"], r[key]) for s in results for r in s["engines"] if r["engine"] == name]
            if points:
                ax.loglog(*zip(*points, strict=True), marker="o", label=name)
        ax.set_xlabel("edges (self-edges included)")
        ax.set_ylabel(label)
        ax.set_title(f"Affinity propagation: {title}")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--edges",
        default="1e4,1.6e5,1.6e6",
        help="sizes as points x k, comma-separated (symmetrised, with self-edges, a graph has about 1.6 times that)",
    )
    parser.add_argument("--large", action="store_true", help="also run 1.6e7 (1,600,000 points, 2.5e7 edges)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument(
        "--graphframes-iterations",
        type=int,
        default=6,
        help="iterations of the graphframes engine (at most --iterations)",
    )
    parser.add_argument("--knobs", action="store_true", help="compare the graphframes engine's settings instead")
    parser.add_argument(
        "--exchanges", action="store_true", help="the blocks engine's exchanges at several parallelisms instead"
    )
    parser.add_argument("--parallelism", default="2,8,32,128", help="spark.default.parallelism values of --exchanges")
    parser.add_argument(
        "--local-max-edges", type=float, default=3e7, help="run the local engine on graphs up to this many edges"
    )
    parser.add_argument(
        "--blocks-only",
        action="store_true",
        help="run the blocks engine and the numpy reference only (e.g. its memory under another --driver-memory)",
    )
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="12g")
    parser.add_argument("--dense-memory-gib", type=float, default=16, help="run scikit-learn if 5 N^2 doubles fit")
    parser.add_argument("--out", default="benchmarks")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--graph", help=argparse.SUPPRESS)
    parser.add_argument("--points", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "exchanges":
        print(json.dumps(exchange_worker(args)))
        return
    if args.worker:
        worker = numpy_worker if args.worker == "numpy" else sklearn_worker
        print(json.dumps(worker(args.points, args.iterations)))
        return

    targets = [float(e) for e in args.edges.split(",")] + ([1.6e7] if args.large else [])
    if args.exchanges:
        exchanges(int(targets[0] / K), args, Path(args.out))
        return
    spark = bench_session(args.master, args.driver_memory)
    logging.getLogger("spark_ap").setLevel(logging.DEBUG)
    if args.knobs:
        knobs(spark, int(targets[0] / K), args, Path(args.out))
        return

    results, out = [], Path(args.out)
    cores = spark.sparkContext.defaultParallelism  # Spark's cores, against the one-core numpy reference
    for target in targets:
        n = int(target / K)  # a 10-NN graph has 10-16 edges per point once symmetrised
        path = write_graph(n)
        fast = spark_run(spark, path, n, args.iterations, "blocks")
        updates = fast["edges"]
        engines, skipped = [summarise(FAST, fast, updates)], []
        others = [(BASELINE, "graphframes", min(args.iterations, args.graphframes_iterations))]
        if args.blocks_only:
            others = []
        elif updates <= args.local_max_edges:
            others.append((LOCAL, "local", args.iterations))
        else:
            skipped.append(f"{LOCAL} (more than --local-max-edges {args.local_max_edges:,.0f} edges)")
        for name, engine, iterations in others:
            try:
                engines.append(summarise(name, spark_run(spark, path, n, iterations, engine), updates))
            except Exception as error:  # e.g. out of memory: say so and go on with the others
                skipped.append(f"{name} (failed: {str(error).strip().splitlines()[0][:120]})")
        engines.append(summarise("numpy sparse reference", in_child("numpy", n, args.iterations), updates))
        if args.blocks_only:
            pass
        elif 5 * n * n * 8 <= args.dense_memory_gib * 2**30:
            engines.append(summarise("scikit-learn dense", in_child("sklearn", n, args.iterations), n * n))
        else:
            skipped.append(f"scikit-learn dense (N x N does not fit in {args.dense_memory_gib:g} GiB)")
        results.append({"points": n, "edges": updates, "engines": engines, "skipped": skipped})
        print(markdown(results[-1:], cores), flush=True)
        write(results, args, out, cores)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'time_per_iteration.png'}")


def write(results: list[dict], args: argparse.Namespace, out: Path, cores: int) -> None:
    """The results so far, as JSON, markdown and a plot (rewritten after each size)."""
    out.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "master": args.master,
        "cores": cores,
        "driver_memory": args.driver_memory,
        "iterations": args.iterations,
        "graphframes_iterations": min(args.iterations, args.graphframes_iterations),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    (out / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results, cores))
    plot(results, out / "time_per_iteration.png")


EXCHANGES = ("driver", "routed")


def exchanges(n: int, args: argparse.Namespace, out: Path) -> None:
    """The blocks engine with each exchange at each parallelism, one Spark application per P."""
    path = write_graph(n)
    rows = []
    for parallelism in [int(p) for p in args.parallelism.split(",")]:
        command = [sys.executable, __file__, "--worker", "exchanges", "--graph", path, "--points", str(n)]
        command += ["--parallelism", str(parallelism), "--iterations", str(args.iterations)]
        command += ["--master", args.master, "--driver-memory", args.driver_memory]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        for row in json.loads(done.stdout.strip().splitlines()[-1]):
            rows.append(row)
            print(exchange_line(row), flush=True)
    # The one-core numpy reference on the same graph, the same day: what the machine's speed was.
    reference = statistics.median(in_child("numpy", n, args.iterations)["seconds"])
    for row in rows:
        row["numpy_seconds_per_iteration"] = reference
    out.mkdir(parents=True, exist_ok=True)
    (out / "exchanges.json").write_text(json.dumps(rows, indent=2) + "\n")
    header = [
        f"blocks engine on {rows[0]['edges']:,} edges ({n:,} points), {args.iterations} iterations per run, "
        f"{args.master}; per iteration, medians over iterations 2 to {args.iterations}",
        "",
        "| P | exchange | s / iteration | into the driver (task results) | broadcast out, per executor "
        "| shuffled (written) | largest per-source arrays of a task | per task, bytes |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    (out / "exchanges.md").write_text("\n".join(header + [exchange_line(r) for r in rows]) + "\n")


def exchange_line(row: dict) -> str:
    def size(b: float) -> str:
        return f"{b / 2**20:.2f} MiB" if b >= 2**20 else f"{b / 2**10:.1f} KiB"

    cells = [
        str(row["parallelism"]),
        row["exchange"],
        f"{row['seconds_per_iteration']:.3f}",
        size(row["result_bytes"]),
        size(row["broadcast_bytes"]),
        size(row["shuffle_write_bytes"]),
        f"{row['task_values']:,} values",
        size(row["task_values"] * 20),
    ]
    return "| " + " | ".join(cells) + " |"


def exchange_worker(args: argparse.Namespace) -> list[dict]:
    """In a child process: one Spark application at ``--parallelism``, both exchanges, each iteration's
    metrics from Spark's REST API (task results into the driver, bytes shuffled) and from the engine
    (bytes broadcast, the largest per-source arrays of a task)."""
    import urllib.request

    from spark_ap import spark_session
    from spark_ap.run import cluster as runs

    spark = spark_session(
        master=args.master,
        **{
            "spark.driver.memory": args.driver_memory,
            "spark.default.parallelism": str(args.parallelism),
            "spark.sql.shuffle.partitions": "8",
            "spark.ui.enabled": "true",
            "spark.ui.port": "0",
            "spark.ui.retainedStages": "5000",
            "spark.ui.retainedJobs": "5000",
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("spark_ap").setLevel(logging.DEBUG)
    sc = spark.sparkContext
    api = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages"

    def stages() -> list[dict]:
        with urllib.request.urlopen(api) as response:
            return json.load(response)

    made = []
    make_engine = runs.make_engine

    def capture(*a, **k):
        made.append(make_engine(*a, **k))
        return made[-1]

    runs.make_engine = capture
    rows = []
    for exchange in EXCHANGES:
        seen = {stage["stageId"] for stage in stages()}
        run = spark_run(spark, args.graph, args.points, args.iterations, "blocks", exchange=exchange)
        engine = made[-1]
        per_iteration: dict[int, dict] = {}
        for stage in stages():
            match = re.match(r"affinity propagation: iteration (\d+)/", stage.get("description") or "")
            if stage["stageId"] in seen or not match or stage["status"] != "COMPLETE":
                continue
            totals = per_iteration.setdefault(int(match.group(1)), {"result": 0, "shuffle": 0})
            totals["result"] += stage["resultSize"]
            totals["shuffle"] += stage["shuffleWriteBytes"]
        later = [per_iteration[t] for t in sorted(per_iteration) if t > 1]
        broadcasts = [t.broadcast for t in engine.exchange.traffic[1:]]
        rows.append(
            {
                "parallelism": int(args.parallelism),
                "exchange": engine.exchange.name,
                "edges": run["edges"],
                "points": args.points,
                "seconds_per_iteration": statistics.median(run["seconds"][1:]),
                "result_bytes": statistics.median(t["result"] for t in later),
                "shuffle_write_bytes": statistics.median(t["shuffle"] for t in later),
                "broadcast_bytes": statistics.median(broadcasts) if broadcasts else 0,
                "task_values": engine.largest_task_values,
                "setup_seconds": run["setup"],
                "finish_seconds": run["finish"],
            }
        )
    spark.stop()
    return rows


def knobs(spark, n: int, args: argparse.Namespace, out: Path, rounds: int = 3) -> None:
    """The graphframes engine on one graph under each setting, in interleaved rounds.

    The JVM keeps getting faster for minutes (it compiles what runs often), so
    a warm-up round runs every setting once, settings then run one after the
    other in each counted round, and each is reported as the median over
    rounds of its time divided by the defaults' time in the same round. Each
    round starts at a different setting, so that no setting always runs first
    (right after the previous round's garbage).
    """
    from pyspark import StorageLevel

    from spark_ap.engines import graphframes

    path = write_graph(n)
    iterations = args.graphframes_iterations
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="spark-ap-bench-checkpoints-"))
    defaults = (graphframes.STORAGE_LEVEL, graphframes.BROADCAST_VERTICES, spark.conf.get("spark.sql.adaptive.enabled"))
    variants = {
        "defaults (local checkpoint every iteration)": {},
        "aggregateMessages at MEMORY_ONLY": {"storage": StorageLevel.MEMORY_ONLY},
        "aggregateMessages at MEMORY_AND_DISK (serialised)": {"storage": StorageLevel.MEMORY_AND_DISK},
        "aggregateMessages at DISK_ONLY": {"storage": StorageLevel.DISK_ONLY},
        "no broadcast joins": {"broadcast": 0},
        "adaptive query execution off": {"aqe": "false"},
        "reliable checkpoint every iteration": {"params": {"checkpointInterval": 1, "checkpointKind": "reliable"}},
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, float] = dict.fromkeys(variants, 0.0)
    names = list(variants)
    for round_ in range(-1, rounds):  # a warm-up round first: every setting's plans compiled once
        counted = round_ >= 0
        for name in names[max(round_, 0) :] + names[: max(round_, 0)]:
            variant = variants[name]
            graphframes.STORAGE_LEVEL = variant.get("storage", defaults[0])
            graphframes.BROADCAST_VERTICES = variant.get("broadcast", defaults[1])
            spark.conf.set("spark.sql.adaptive.enabled", variant.get("aqe", defaults[2]))
            run = spark_run(spark, path, n, iterations, "graphframes", **variant.get("params", {}))
            print(f"{name}: {statistics.median(run['seconds']):.3f} s/iteration", flush=True)
            if counted:
                times[name].append(statistics.median(run["seconds"]))
                peaks[name] = max(peaks[name], run["peak_bytes"] / 2**30)
    graphframes.STORAGE_LEVEL, graphframes.BROADCAST_VERTICES = defaults[:2]
    spark.conf.set("spark.sql.adaptive.enabled", defaults[2])
    base = times[next(iter(variants))]
    rows = [
        {
            "setting": name,
            "seconds_per_iteration": statistics.median(seconds),
            "ratio_to_defaults": statistics.median(t / b for t, b in zip(seconds, base, strict=True)),
            "peak_gib": peaks[name],
            "rounds": seconds,
        }
        for name, seconds in times.items()
    ]
    lines = [
        f"graphframes engine on {run['edges']:,} edges ({n:,} points): after a warm-up round, {rounds} "
        f"interleaved rounds (each starting at another setting) of {iterations} iterations per setting",
        "",
        "| setting | s / iteration (median) | this / defaults (median of rounds) | range over rounds | peak GiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratios = [t / b for t, b in zip(r["rounds"], base, strict=True)]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        cells = f"{r['seconds_per_iteration']:.3f} | {r['ratio_to_defaults']:.2f} | {spread} | {r['peak_gib']:.2f}"
        lines.append(f"| {r['setting']} | {cells} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "knobs.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "knobs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
