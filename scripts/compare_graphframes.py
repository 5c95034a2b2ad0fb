"""The graphframes engine of this checkout against another git revision's, in one process.

    python scripts/compare_graphframes.py --base HEAD~1
    python scripts/compare_graphframes.py --base main --points 16000 --iterations 4 --rounds 3

The other revision's ``spark_ap/engines/graphframes.py`` (with its
``spark_ap/lineage.py``; ``spark_ap/lib/`` before them) is loaded beside this checkout's; both start
from the same initial edge state of the k-NN graph ``scripts/benchmark.py``
builds, on one local session. A warm-up round runs both, then each round runs
both again, alternating which runs first (the JVM keeps getting faster for
minutes). Per run: the median seconds of iterations 2 onwards; per round: this
checkout's median over the base's. Every round also checks that both end with
the same r and a on every edge and the same counts after every iteration.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


# Where the engine and its lineage helpers are, in this layout and in the one before it.
LAYOUTS = (
    {"checkpoints": "spark_ap/lineage.py", "graphframes": "spark_ap/engines/graphframes.py"},
    {"checkpoints": "spark_ap/lib/checkpoints.py", "graphframes": "spark_ap/lib/graphframes.py"},
)


def _show(revision: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def engine_at(revision: str) -> type:
    """``GraphFramesEngine`` as ``revision`` has it, with that revision's checkpoint helpers."""
    for layout in LAYOUTS:
        sources = {name: _show(revision, path) for name, path in layout.items()}
        if None not in sources.values():
            break
    else:
        raise SystemExit(f"{revision} has no graphframes engine where this script looks")
    modules = {}
    for name in ("checkpoints", "graphframes"):
        source = sources[name]
        # The engine imports this revision's checkpoint helpers, registered under their own name.
        for helpers in ("spark_ap.lineage", "spark_ap.lib.checkpoints"):
            source = source.replace(f"from {helpers} import", "from base_checkpoints import")
        module = types.ModuleType(f"base_{name}")
        sys.modules[module.__name__] = module
        exec(compile(source, f"{revision}:{layout[name]}", "exec"), module.__dict__)
        modules[name] = module
    return modules["graphframes"].GraphFramesEngine


def build(engine_class: type, spark, graph):
    """An engine of either protocol: built from the run's facts, or (before them) from spark and damping."""
    from spark_ap.engines import RunFacts

    if "facts" in inspect.signature(engine_class).parameters:
        return engine_class(RunFacts(spark, 0.5, graph))
    return engine_class(spark, 0.5)


def run(engine_class: type, spark, state, iterations: int) -> tuple[float, np.ndarray, list[dict]]:
    """Median seconds per iteration (from the second), the final (src, dst, r, a) sorted, the counts."""
    from spark_ap.lineage import release

    engine = build(engine_class, spark, state.select("src", "dst", "similarity"))
    current = engine.start(state, initial=True)
    seconds, counts = [], []
    for i in range(iterations):
        start = time.perf_counter()
        new, stats = engine.step(current)
        seconds.append(time.perf_counter() - start)
        if i:  # the initial state is the caller's
            release(current)
        current, counts = new, [*counts, stats]
    final = current.select("src", "dst", "r", "a").toPandas().sort_values(["src", "dst"]).to_numpy()
    engine.final(current) if hasattr(engine, "final") else engine.finish(current)
    release(current)
    return statistics.median(seconds[1:]), final, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--points", type=int, default=1000, help="blob points of the k-NN graph (1000: 13,596 edges)")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    from benchmark import bench_session, knn_graph, with_preferences

    from spark_ap.engines.graphframes import GraphFramesEngine
    from spark_ap.lineage import materialize
    from spark_ap.run.loop import Settings, initial_state

    engines = {"base": engine_at(args.base), "this checkout": GraphFramesEngine}
    spark = bench_session("local[2]", "6g")
    src, dst, s = with_preferences(*knn_graph(args.points))
    graph = spark.createDataFrame(pd.DataFrame({"src": src, "dst": dst, "similarity": s}))
    state = materialize(initial_state(graph, Settings(noise="edge")))
    print(f"{len(src):,} edges, {args.iterations} iterations per run", flush=True)
    ratios = []
    for round_ in range(args.rounds + 1):  # round 0 warms up
        names = list(engines) if round_ % 2 else list(engines)[::-1]
        runs = {name: run(engines[name], spark, state, args.iterations) for name in names}
        (base, base_final, base_counts), (new, new_final, new_counts) = runs["base"], runs["this checkout"]
        if not (np.array_equal(base_final, new_final) and base_counts == new_counts):
            raise SystemExit(f"round {round_}: the two engines computed different states or counts")
        if round_:
            ratios.append(new / base)
        label = "warm-up" if not round_ else f"round {round_}"
        print(f"{label}: base {base:.3f} s, this checkout {new:.3f} s per iteration ({new / base:.2f})", flush=True)
    print(f"this checkout / base, median over {args.rounds} rounds: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
