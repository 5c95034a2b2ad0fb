"""The cost model of docs/scaling.md: its constants fitted to the benchmarks, and its projections.

    python scripts/scaling_model.py            # prints the fit and the projection tables (markdown)

Reads what ``scripts/benchmark.py`` wrote in ``benchmarks/``:

* ``exchanges.json`` (``--edges 1.6e6 --exchanges``: 2.55e6 edges at P = 2, 8, 32, 128)
  and ``exchanges-large.json`` (``--edges 1.6e7 --exchanges --parallelism 2``: 2.5e7
  edges), both exchanges of the blocks engine on ``local[2]``;
* ``results.json`` (``--large``): the graphframes engine and the one-core numpy reference,
  whose seconds per edge stand for the local engine's and give the graphframes engine's
  cost relative to numpy (that run was on another day; the numpy reference of the day's
  large run scales it).

On ``local[2]`` (C = 2 cores) a stage of P tasks runs in P / C waves. Per iteration:

    driver:  T = T0 + t_e E / C + tau P / C + k_d S
    routed:  T = T0 + t_e E / C + 2 (tau + beta P) P / C + k_r S / C

with E edges, S the sum over partitions of the sources each touches (from the bytes: 24 per
source reported to the driver, 42 per source shuffled both ways), t_e the seconds per edge
per core of a task, tau the fixed seconds of a task, beta the seconds per shuffle block a
task writes or reads (P of each), k_d the seconds per source on the driver (reports and
merge, serial), k_r the seconds per source per core of the routed exchange (encoding,
shuffling, the owners' merge). A least-squares fit over the ten measured iterations gives
them. On a cluster of X executors of c cores each stage is one wave (P = X c); the
projections add the network (B bytes per second per executor and for the driver) and the
driver's scheduling of each task (sigma seconds):

    driver:  T = T0 + t_e E / P + tau + sigma P + k_d S + 24 S / B + 20 n / B
    routed:  T = T0 + t_e E / P + 2 (tau + beta P + sigma P) + k_r S / P + 44 S / (X B)

The local engine iterates on one core at the numpy reference's seconds per edge and holds about
100 bytes per edge on the driver; the graphframes engine costs its measured seconds per edge per
core, a fixed 1.5 s, the scheduling of about 50 stages and two messages per edge shuffled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CORES = 2  # of the machine the benchmarks ran on (local[2])
# Assumed of a cluster: cores per executor, network bytes per second per executor (10 GbE) and
# for the driver, the driver's seconds to schedule a task and take its result.
EXECUTOR_CORES = 4
BANDWIDTH = 1.25e9
SIGMA = 1e-3
GRAPHFRAMES_FIXED = 1.5  # seconds of a graphframes iteration on the smallest graphs (docs/benchmarks.md)
DEGREE = 16  # edges per vertex, self-edge included: the benchmarks' k-NN graphs have 16
SIZES = (1e8, 1e9, 1e10)
EXECUTORS = (10, 100, 1000)


def sources(n: float, parts: int, degree: float = DEGREE) -> float:
    """S, the sum over P partitions of the sources each touches, for ids unrelated to the graph's
    neighbourhoods: a vertex's ``degree`` edges fall in 1 - exp(-degree / P) of the partitions."""
    return n * parts * (1 - math.exp(-degree / parts))


def fit() -> dict[str, float]:
    """The constants, least squares over the exchanges' measured seconds per iteration."""
    rows = []
    for name in ("exchanges.json", "exchanges-large.json"):
        rows += json.loads((ROOT / "benchmarks" / name).read_text())
    design, seconds = [], []
    for row in rows:
        edges, parts, waves = row["edges"], row["parallelism"], row["parallelism"] / CORES
        if row["exchange"] == "driver":
            s = row["result_bytes"] / 24
            design.append([1, edges / CORES, waves, 0, s, 0])
        else:
            s = row["shuffle_write_bytes"] / 42
            design.append([1, edges / CORES, 2 * waves, 2 * parts * waves, 0, s / CORES])
        seconds.append(row["seconds_per_iteration"])
    design, seconds = np.array(design), np.array(seconds)
    solution = np.linalg.lstsq(design, seconds, rcond=None)[0]
    constants = dict(zip(("T0", "t_e", "tau", "beta", "k_d", "k_r"), solution.tolist(), strict=True))
    constants["residuals"] = [(m, f) for m, f in zip(seconds.tolist(), (design @ solution).tolist(), strict=True)]
    return constants


def per_edge_of_others() -> dict[str, float]:
    """Seconds per edge per core of the numpy reference (the local engine's step, one core) and of
    the graphframes engine, at the largest size, scaled to the day of the exchanges' large run."""
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())["results"]
    largest = max(results, key=lambda r: r["edges"])
    seconds = {e["engine"]: e["seconds_per_iteration"] for e in largest["engines"]}
    numpy_then = seconds["numpy sparse reference"] / largest["edges"]
    graphframes_then = seconds["spark-ap graphframes"] * CORES / largest["edges"]
    large = json.loads((ROOT / "benchmarks" / "exchanges-large.json").read_text())
    today = large[0].get("numpy_seconds_per_iteration")
    scale = today / seconds["numpy sparse reference"] if today else 1.0
    return {"local": numpy_then * scale, "graphframes": graphframes_then * scale, "scale": scale}


def project(c: dict[str, float], other: dict[str, float]) -> list[dict]:
    """Seconds per iteration and bytes of each path at each size and number of executors."""
    out = []
    for edges in SIZES:
        n = edges / DEGREE
        for executors in EXECUTORS:
            parts = executors * EXECUTOR_CORES
            s = sources(n, parts)
            driver = (
                c["T0"]
                + c["t_e"] * edges / parts
                + c["tau"]
                + SIGMA * parts
                + c["k_d"] * s
                + 24 * s / BANDWIDTH
                + 20 * n / BANDWIDTH
            )
            routed = (
                c["T0"]
                + c["t_e"] * edges / parts
                + 2 * (c["tau"] + c["beta"] * parts + SIGMA * parts)
                + c["k_r"] * s / parts
                + 44 * s / (executors * BANDWIDTH)
            )
            # A graphframes iteration: its fixed cost on local[2] (about 1.5 s, some 25 jobs), the
            # scheduling of about 50 stages of P tasks, and every edge's two messages shuffled
            # (about 40 bytes each).
            graphframes = (
                GRAPHFRAMES_FIXED
                + 50 * SIGMA * parts
                + other["graphframes"] * edges / parts
                + 80 * edges / (executors * BANDWIDTH)
            )
            out.append(
                {
                    "edges": edges,
                    "executors": executors,
                    "vertices": n,
                    "sources": s,
                    "driver_s": driver,
                    "routed_s": routed,
                    "graphframes_s": graphframes,
                    "local_s": other["local"] * edges,
                    "local_driver_bytes": 100 * edges,
                    "driver_in_bytes": 24 * s,
                    "broadcast_bytes": 20 * n,
                    "routed_shuffle_bytes_per_executor": 44 * s / executors,
                    "driver_task_bytes": 20 * n + 20 * s / parts,
                    "routed_task_bytes": 20 * s / parts + 20 * n / parts,
                    "chunk_bytes_per_executor": 48 * edges / executors,
                }
            )
    return out


def _size(b: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.3g} B"


def main() -> None:
    c = fit()
    other = per_edge_of_others()
    print("Fitted on local[2] (seconds):")
    for name in ("T0", "t_e", "tau", "beta", "k_d", "k_r"):
        print(f"  {name} = {c[name]:.3g}")
    print("  measured / fitted seconds per iteration:", ", ".join(f"{m:.3g}/{f:.3g}" for m, f in c["residuals"]))
    print(
        f"  numpy reference (local engine) {other['local']:.3g} s per edge; graphframes {other['graphframes']:.3g} "
        f"s per edge per core (scaled by {other['scale']:.2f} to the day of the large run)"
    )
    print()
    columns = [
        "edges",
        f"executors ({EXECUTOR_CORES} cores)",
        "blocks, routed s",
        "blocks, driver s",
        "graphframes s",
        "local s (driver memory)",
        "into the driver, driver exchange",
        "shuffled per executor, routed",
        "per task, driver",
        "per task, routed",
        "chunk files per executor",
    ]
    print("| " + " | ".join(columns) + " |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in project(c, other):
        print(
            f"| {p['edges']:.0e} | {p['executors']} | {p['routed_s']:.1f} | {p['driver_s']:.1f} | "
            f"{p['graphframes_s']:.1f} | {p['local_s']:.0f} ({_size(p['local_driver_bytes'])}) | "
            f"{_size(p['driver_in_bytes'])} | "
            f"{_size(p['routed_shuffle_bytes_per_executor'])} | {_size(p['driver_task_bytes'])} | "
            f"{_size(p['routed_task_bytes'])} | {_size(p['chunk_bytes_per_executor'])} |"
        )


if __name__ == "__main__":
    main()
