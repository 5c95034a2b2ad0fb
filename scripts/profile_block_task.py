"""Where one blocks-engine task's time goes, numpy alone in one process (no Spark).

    python scripts/profile_block_task.py                    # 12 chunks of 2**20 edges, 1.6e6 vertices
    python scripts/profile_block_task.py --chunks 2 --vertices 160000

A task of an iteration steps each chunk of its partition in turn: it reads the
chunk's files (:class:`spark_ap.engines.blocks.Resident`), computes r and a
(:meth:`Chunk.step`) and writes the new messages; then it reads them back and
computes each source's top two over all its chunks' edges (:meth:`Top.over`).
The defaults are one task's share of the 2.5e7-edge graph of docs/benchmarks.md on
2 cores: a chunk holds the edges into its targets (16 each, self-edge
included) from sources spread over every vertex, as a k-NN graph's are.
Reported: seconds per task and phase, the median of ``--repeats`` iterations.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from spark_ap.engines.blocks import CHUNK_EDGES, Chunk, Resident, Top

CHUNK_PHASES = ("read", "step", "write")  # per chunk
PHASES = (*CHUNK_PHASES, "top")  # then the top two over the task's chunks


def chunks(count: int, vertices: int, degree: int, rng: np.random.Generator) -> list[Chunk]:
    """``count`` chunks of about CHUNK_EDGES edges, each into its own range of targets."""
    targets_per_chunk = CHUNK_EDGES // degree
    made = []
    for c in range(count):
        targets = np.arange(c * targets_per_chunk, (c + 1) * targets_per_chunk) % vertices
        j = np.repeat(targets, degree)
        i = rng.integers(0, vertices, j.size)
        i[::degree] = targets  # each target's self-edge
        order = np.lexsort((j, i))
        i, j = i[order], j[order]
        once = np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])]
        i, j = i[once], j[once]
        m = i.size
        zeros = np.zeros(m)
        made.append(
            Chunk.from_arrays(
                {
                    "i": i,
                    "j": j,
                    "s": -rng.random(m),
                    "r": zeros,
                    "a": zeros,
                    "e": np.zeros(m, bool),
                    "run": np.zeros(m, np.int32),
                    "changed": np.zeros(m, bool),
                }
            )
        )
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--vertices", type=int, default=1_600_000)
    parser.add_argument("--degree", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    made = chunks(args.chunks, args.vertices, args.degree, rng)
    with tempfile.TemporaryDirectory() as local:
        os.environ["SPARK_LOCAL_DIRS"] = local  # where Resident puts the files, as in an executor
        top = Top.over(args.vertices, made)
        places = [Resident("profile", f"0-{k}", 0).keep(chunk) for k, chunk in enumerate(made)]
        seconds = {phase: [] for phase in PHASES}
        for version in range(1, args.repeats + 1):
            spent = dict.fromkeys(PHASES, 0.0)
            for k, place in enumerate(places):
                marks = [time.perf_counter()]  # the end of each of CHUNK_PHASES, in order
                chunk = place.load()
                marks.append(time.perf_counter())
                chunk.step(top, 0.9)
                marks.append(time.perf_counter())
                places[k] = Resident("profile", f"0-{k}", version).keep(chunk)
                marks.append(time.perf_counter())
                for phase, started, ended in zip(CHUNK_PHASES, marks[:-1], marks[1:], strict=True):
                    spent[phase] += ended - started
            started = time.perf_counter()
            top = Top.over(args.vertices, places)
            spent["top"] = time.perf_counter() - started
            for phase in PHASES:
                seconds[phase].append(spent[phase])
    edges = sum(chunk.i.size for chunk in made)
    medians = {phase: statistics.median(values) for phase, values in seconds.items()}
    print(f"{args.chunks} chunks, {edges:,} edges, {args.vertices:,} vertices; seconds per task (median):")
    for phase, value in medians.items():
        print(f"  {phase:6s} {value:.3f}")
    print(f"  total  {sum(medians.values()):.3f}")


if __name__ == "__main__":
    main()
