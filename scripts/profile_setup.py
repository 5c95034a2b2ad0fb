"""Where the set-up of a blocks run goes, step by step, on a Parquet edge table.

    python scripts/profile_setup.py                      # 1.6e6 points, 2.5e7 edges
    python scripts/profile_setup.py --points 160000      # 2.5e6 edges
    python scripts/profile_setup.py --graph /data/edges.parquet   # made there once, reused after

The set-up is what :meth:`spark_ap.AffinityPropagation.run` does before the
first iteration with the blocks engine: validate the edges, add the self-edges
with the preference, persist the graph and read its facts, and start the
engine on the initial state (number the vertices, split the edges into
chunks, sort them, refuse repeated pairs and write the chunks' files). Here each
step runs on its own, in that order, with the library's own functions, and is
timed; the graph is docs/benchmarks.md's k-NN graph of blob points. Each step is
forced before the next starts, so the times add up to about what a run spends.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

from benchmark import bench_session, write_graph


@contextmanager
def timed(name: str, times: dict[str, float]):
    started = time.perf_counter()
    yield
    times[name] = time.perf_counter() - started
    print(f"{name:<48} {times[name]:7.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_600_000)
    parser.add_argument("--graph", help="a Parquet edge table (src, dst, similarity); made there (and kept) if absent")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument(
        "--spark-duplicates", action="store_true", help="also time the duplicate check in Spark (graphframes' path)"
    )
    args = parser.parse_args()

    from pyspark import StorageLevel

    from spark_ap.engines import RunFacts
    from spark_ap.engines.blocks.engine import BlockEngine
    from spark_ap.prepare.preference import add_self_edges, vertex_table
    from spark_ap.prepare.validation import refuse_duplicates, validate_edges
    from spark_ap.run.cluster import graph_facts
    from spark_ap.run.loop import Settings, initial_state

    path = args.graph
    if path is None or not Path(path).exists():
        path = write_graph(args.points, path)
    spark = bench_session(args.master, args.driver_memory)
    edges = spark.read.parquet(path)
    print(f"{edges.count():,} edges in {path}")

    times: dict[str, float] = {}
    with timed("validation (one aggregate)", times):
        # Repeated pairs are the engine's to find (blocks and local), as AffinityPropagation.run leaves them.
        graph = validate_edges(edges, "src", "dst", "similarity", find_duplicates=False)
    with timed("the vertex table (self-edges, in-degrees)", times):
        vertices = vertex_table(graph).localCheckpoint(eager=True)
    with timed("self-edges and the preference (median)", times):
        graph, _ = add_self_edges(graph, vertices, "median")
    with timed("the graph persisted, with its facts (1st read)", times):
        graph = graph.persist(StorageLevel.MEMORY_AND_DISK)
        graph_facts(graph)
    engine = BlockEngine(RunFacts(spark, 0.9, graph, vertices))
    with timed("engine: start (from the initial state's plan)", times):
        state = initial_state(graph, Settings(noise="none"))
        blocks = engine.start(state, initial=True)
    engine.finish(blocks).free()
    if args.spark_duplicates:
        with timed("(Spark's duplicate check, for comparison)", times):
            refuse_duplicates(graph)
    total = sum(seconds for name, seconds in times.items() if not name.startswith((" ", "(")))
    print(f"{'total':<48} {total:7.1f} s")
    spark.stop()


if __name__ == "__main__":
    main()
