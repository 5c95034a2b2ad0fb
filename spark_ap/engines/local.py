"""The local engine: a graph that fits one process iterates on the driver, with numpy.

Spark still reads, validates and numbers the input, computes the preference,
saves the state and assigns the clusters; only the iterations move. The edges
become one :class:`~spark_ap.engines.blocks.Chunk`, the blocks engine's numpy
layout, holding every edge: an iteration is the blocks engine's step on it,
with the per-source maxima taken over the whole chunk. The messages are
therefore bit for bit those of the Spark engines and of the numpy references.

What it costs: the edge state on the driver (about 100 bytes per edge, with
the arrays an iteration makes), and one copy of the state into Spark at every
save and at the end. What it saves: Spark's fixed cost per iteration (a job,
its tasks, a broadcast), a tenth of a second and more, which is most of an
iteration below a few million edges (see docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DataType

from spark_ap.compat import frame_from_arrow, to_arrow
from spark_ap.engines import Finished, RunFacts, assign
from spark_ap.engines.assign import arrow_id_type
from spark_ap.engines.blocks.kernel import Chunk, Top, by_pair, numbers, repeated_pairs, start_columns
from spark_ap.errors import DuplicateEdgeError


class LocalEngine:
    """Runs iterations on a :class:`Chunk` of every edge, held by the driver."""

    name = "local"
    sorts_edges = True  # start sorts every edge by (src, dst)
    on_driver = True  # the state is numpy arrays in the driver's process

    def __init__(self, facts: RunFacts) -> None:
        self.spark: SparkSession = facts.spark
        self.damping = facts.damping
        self.capacity = facts.capacity
        self.remembers_decisions = facts.remembers  # each iteration's exemplars are read off the driver's arrays
        self.graph = facts.graph  # not read: the chunk holds every similarity
        self.ids: np.ndarray | None = None  # vertex number -> id (rules: ids)
        self.similarity: np.ndarray | None = None  # per edge, in the chunk's order
        self.schema = None  # the edge state's, as Spark gave it
        self.schema_arrow: pa.Schema | None = None

    def start(self, state: DataFrame, *, initial: bool = False) -> Chunk:
        """The chunk of ``state``'s edges, sorted by (source, target) number; ``initial``: ``state``
        is before the first iteration, and only its ``src, dst, similarity, s`` are read.

        Raises
        ------
        DuplicateEdgeError
            A (src, dst) pair occurs more than once.
        """
        self.schema = state.schema
        self.schema_arrow = _arrow_schema(state.schema["src"].dataType)
        table = to_arrow(state.select(*start_columns(initial), "similarity"))
        src = table.column("src").to_numpy(zero_copy_only=False)
        dst = table.column("dst").to_numpy(zero_copy_only=False)
        self.ids, i, j, order = number_edges(src, dst)
        self.similarity = table.column("similarity").to_numpy()[order]
        read = start_columns(initial)[2:]
        columns = {name: table.column(name).to_numpy(zero_copy_only=False)[order] for name in read}
        return Chunk.from_arrays({"i": i, "j": j, **columns})

    def restart(self, state: DataFrame) -> Chunk:
        """As :meth:`start`: the state lives on the driver, nothing the run keeps in executors is read."""
        return self.start(state)

    def step(self, chunk: Chunk, reliable: bool = False) -> tuple[Chunk, dict]:
        """One iteration. ``reliable`` is moot: the state lives on the driver, not in executors."""
        return chunk, step(chunk, self.damping, self.capacity)

    def edges(self, chunk: Chunk) -> pa.Table:
        """The edge state of ``chunk`` (:data:`~spark_ap.engines.rules.EDGE_STATE`), as an Arrow
        table: a save writes it from the driver (:meth:`~spark_ap.run.state.StateStore.save`)."""
        col = chunk.columns()
        columns = {"src": self.ids[col.pop("i")], "dst": self.ids[col.pop("j")], "similarity": self.similarity, **col}
        return pa.Table.from_pydict(columns, schema=self.schema_arrow)

    def saved(self, chunk: Chunk, saved: DataFrame) -> Chunk:
        return chunk

    def release(self, chunk: Chunk) -> None:
        """Nothing to free: an iteration replaces the chunk's arrays."""

    def decisions(self, chunk: Chunk) -> np.ndarray:
        """The ids of the vertices ``chunk``'s last iteration decided are exemplars, sorted."""
        return self.ids[np.flatnonzero(chunk.e)]

    def finish(self, chunk: Chunk, decided: np.ndarray | None = None) -> Finished:
        """The edge state, copied into executor storage once, and the labels, assigned on the driver
        (:func:`~spark_ap.engines.assign.label_on_driver`) from the last iteration's decisions or
        ``decided`` (the exemplars' ids, sorted); the graph is no longer read."""
        self.graph.unpersist()
        exemplar = exemplars(chunk, None if decided is None else np.isin(self.ids, decided))
        labels = assign.labels_frame(self.spark, self.ids, self.schema["src"].dataType, exemplar)
        state = frame_from_arrow(self.spark, self.edges(chunk), self.schema).localCheckpoint(eager=True)
        return Finished(state, labels, exemplar is not None, state, free=lambda: None)


def _arrow_schema(id_type: DataType) -> pa.Schema:
    """The edge state's columns as Arrow types, ids as Spark gave them (long or string)."""
    ids = arrow_id_type(id_type)
    messages = [(name, pa.from_numpy_dtype(kind)) for name, kind in Chunk.KINDS.items()]
    return pa.schema([("src", ids), ("dst", ids), ("similarity", pa.float64()), ("s", pa.float64()), *messages])


def number_edges(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The vertex ids in number order, and each edge's source and target numbers in (source,
    target) order, with that order (``[order]`` puts any other column of the edges in it).

    Raises
    ------
    DuplicateEdgeError
        A (src, dst) pair occurs more than once.
    """
    # Every vertex has a self-edge, so the sources are all of them (rules: ids).
    ids = np.unique(src)
    i, j = numbers(ids, src), numbers(ids, dst)
    order = by_pair(i, j)
    i, j = i[order], j[order]
    found = repeated_pairs(i, j)
    if found is not None:
        pairs, edges, (a, b, count) = found
        raise DuplicateEdgeError(pairs, edges, (*ids[[a, b]].tolist(), count))
    return ids, i, j, order


def step(chunk: Chunk, damping: float, capacity: int | None = None) -> dict:
    """One iteration on the chunk of every edge (all sources in it, sorted); its decision counts."""
    chunk.step(Top.of_sorted(chunk), damping, capacity)
    return chunk.counts()


def exemplars(chunk: Chunk, decided: np.ndarray | None = None) -> np.ndarray | None:
    """Each vertex's exemplar number in the chunk of every edge's state (None: no exemplar),
    as :func:`~spark_ap.engines.assign.label_vertices` decides it from the state's decisions,
    or from ``decided`` (a boolean per vertex)."""
    decided = chunk.decided() if decided is None else decided
    return assign.label_on_driver(chunk.i, chunk.vertices[chunk.jl], chunk.s, decided)
