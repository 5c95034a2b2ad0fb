"""The blocks engine: the edge state as numpy chunks in executors' files, one Spark job per iteration.

An iteration is one job over the partitions (:mod:`~spark_ap.engines.blocks.pack`
made them): each task takes the merged :class:`~spark_ap.engines.blocks.kernel.Top`
of its sources from the exchange, steps its chunks
(:meth:`~spark_ap.engines.blocks.kernel.Chunk.step`), writes the new messages
next to the old (:mod:`~spark_ap.engines.blocks.storage`), computes its partial
Top for the next iteration and hands it to the exchange
(:mod:`~spark_ap.engines.blocks.exchange`): through the driver, or routed by
shuffles to the vertices' owners and back. The driver gets each partition's
counts of exemplar decisions, for the convergence test.

The input similarities stay out of the chunks (which hold ``s``, with the
degeneracy noise) and are joined back when the state is turned into edge rows
(to be saved, or when the result's messages are read). The clusters are
assigned where the chunks are (:mod:`~spark_ap.engines.blocks.finish`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame

from spark_ap.compat import spark_context
from spark_ap.engines import Finished, RunFacts
from spark_ap.engines.blocks import exchange as exchanges
from spark_ap.engines.blocks import finish, pack
from spark_ap.engines.blocks.kernel import NO_COUNTS, Top, add_counts, start_columns
from spark_ap.engines.blocks.storage import Part, Sources, forget
from spark_ap.engines.rules import EDGE_STATE
from spark_ap.errors import DuplicateEdgeError
from spark_ap.lineage import release

log = logging.getLogger("spark_ap")


@dataclass
class Blocks:
    """The block engine's state: one :class:`Part` per partition (a persisted RDD), what the
    exchange delivers to the next iteration, and the counts of exemplar decisions."""

    parts: RDD
    delivery: object  # the exchange's: a broadcast (driver) or an RDD of answers (routed)
    stats: dict
    # What the parts were computed from (a broadcast of the driver exchange), until released.
    made_with: object = None
    # The ids of the vertices the iteration decided are exemplars, sorted, when the run remembers them.
    decided: np.ndarray | None = None


class BlockEngine:
    """Runs iterations on :class:`Blocks`; see the module docstring."""

    name = "blocks"
    sorts_edges = True  # start sorts each chunk's edges by (src, dst)
    on_driver = False

    def __init__(self, facts: RunFacts) -> None:
        # Its chunks live in executors' local files that only RDD tasks find again.
        self.sc = spark_context(
            facts.spark, "engine='blocks'", instead="engine='local' (or 'auto') runs in any session"
        )
        self.spark = facts.spark
        self.damping = facts.damping
        self.capacity = facts.capacity
        # Each iteration's exemplars then come to the driver with its counts (a few ids per cluster).
        self.remembers_decisions = facts.remembers
        self.wanted = facts.exchange
        self.graph = facts.graph  # src, dst, similarity: the chunks leave it out
        self.vertices = facts.vertices
        self.layout: pack.Layout | None = None  # learnt at the first start, reused by later ones
        self.exchange = None
        self._copied: DataFrame | None = None  # after a restart, the similarities copied from the save
        self.run = ""  # names this start's files in the executors
        self.largest_task_values = 0  # the most per-source values a task held (its sources, or n)

    def start(self, state: DataFrame, *, initial: bool = False) -> Blocks:
        """Partitions of chunks from an edge-state DataFrame (:data:`~spark_ap.engines.rules.EDGE_STATE`).

        The run's graph supplies the similarities when the state is turned back
        into rows. ``initial``: ``state`` is before the first iteration, so only
        its ``src, dst, s`` are read.

        Raises
        ------
        DuplicateEdgeError
            A (src, dst) pair occurs more than once (found as each chunk is sorted).
        """
        return self._start(state, initial=initial, copy=False)

    def restart(self, state: DataFrame) -> Blocks:
        """As :meth:`start`, from a save after a failure: the graph's cached blocks may be lost with
        the executor (its lineage holds local checkpoints), so the similarities are copied from
        ``state`` into executor storage, since ``state`` may be a save that a newer one replaces."""
        return self._start(state, initial=False, copy=True)

    @property
    def similarity(self) -> DataFrame:
        """``src, dst, similarity``, which the chunks leave out: the graph, or after a restart its copy."""
        return self.graph if self._copied is None else self._copied

    def _start(self, state: DataFrame, *, initial: bool, copy: bool) -> Blocks:
        # Read from ``state`` every time: after a failure, what an earlier start
        # kept in executor storage may be gone.
        if self._copied is not None:
            release(self._copied)
        if self.layout is None:
            self.layout = pack.layout(state, self.vertices, self.partitions())
            self.exchange = self._exchange(self.layout)
            log.info(
                "blocks engine: %d partitions of %d chunks, %s exchange",
                self.layout.parts,
                self.layout.chunks,
                self.exchange.name,
            )
        self._copied = state.select("src", "dst", "similarity").localCheckpoint() if copy else None
        self.run = uuid.uuid4().hex
        repeated = self.sc.accumulator([], pack.Repeated())
        reports = self.sc.accumulator([], exchanges.Reports())
        parts = pack.pack(state, start_columns(initial), self.layout, self.run, repeated)
        wire = self.exchange.wire(None)
        try:
            sent = _sent(wire, reports, False, self.remembers_decisions)
            blocks = self._run(parts.mapPartitionsWithIndex(sent), reports, None, False)
            found = {chunk: report for chunk, *report in repeated.value}  # a retried task reports again
        finally:
            repeated.value = []
        release(state)
        if found:
            self._forget(blocks)
            reports = [found[chunk] for chunk in sorted(found)]
            raise DuplicateEdgeError(sum(r[0] for r in reports), sum(r[1] for r in reports), reports[0][2])
        return blocks

    def partitions(self) -> int:
        """As many partitions as the application has cores (Spark's default parallelism), so that an
        iteration's tasks all start at once, each on the executor holding its partition's files."""
        return self.sc.defaultParallelism

    def _exchange(self, layout: pack.Layout):
        """The exchange of this run: the param, "auto" resolved by n x P."""
        name = exchanges.choose(self.wanted, layout.n, layout.parts)
        if name == "routed":
            return exchanges.RoutedExchange(self.sc, layout.n, layout.parts)
        return exchanges.DriverExchange(self.sc, layout.n)

    def _run(self, parts: RDD, reports, made_with, reliable: bool) -> Blocks:
        """Compute ``parts`` into executor storage (the exchange runs the job), and what they sent."""
        exchanges.zippable(parts)
        # Persisting also tells PySpark not to fuse the next iteration's function
        # into this one's (it would recompute every iteration from the start).
        parts.persist(StorageLevel.MEMORY_AND_DISK)
        if reliable:
            parts.checkpoint()
        else:
            parts.localCheckpoint()
        delivery, got = self.exchange.run(parts, reports)
        stats, decided = NO_COUNTS, []
        for counts, _, values in got.values():
            stats = add_counts(stats, counts)
            decided.append(counts.get("decided", self.layout.no_ids()))
            self.largest_task_values = max(self.largest_task_values, values, self.exchange.values_per_task)
        decided = np.sort(np.concatenate(decided)) if self.remembers_decisions and decided else None
        return Blocks(parts, delivery, stats, made_with, decided)

    def step(self, blocks: Blocks, reliable: bool = False) -> tuple[Blocks, dict]:
        """One iteration; ``reliable`` also writes the new parts, arrays and all, to the checkpoint directory."""
        reports = self.sc.accumulator([], exchanges.Reports())
        wire = self.exchange.wire(blocks.delivery)
        stepped = self.exchange.inputs(blocks.parts, blocks.delivery).map(_stepped(wire, self.damping, self.capacity))
        sent = _sent(wire, reports, reliable, self.remembers_decisions)
        new = self._run(stepped.mapPartitionsWithIndex(sent), reports, blocks.delivery, reliable)
        return new, new.stats

    def back(self, blocks: Blocks) -> Blocks:
        """The state to go on with from ``blocks``, which a ``reliable`` step wrote to the checkpoint
        directory, after a failure lost what executors held: each partition's arrays, read from there,
        are written to the files of the executor its task runs on, and the exchange runs again from them."""
        # Read from the files themselves: the parts' RDD would serialize, with its tasks, the functions
        # it was computed by and the exchange's broadcasts they read, destroyed since.
        path = blocks.parts.getCheckpointFile()
        saved = self.sc._checkpointFile(path, blocks.parts._jrdd_deserializer)
        reports = self.sc.accumulator([], exchanges.Reports())
        sent = _sent(self.exchange.wire(None), reports, False, self.remembers_decisions)
        return self._run(saved.map(_restored).mapPartitionsWithIndex(sent), reports, None, False)

    def decisions(self, blocks: Blocks) -> np.ndarray:
        """The ids of the vertices the iteration that gave ``blocks`` decided are exemplars, sorted,
        which its tasks reported with their counts."""
        return blocks.decided

    def edges(self, blocks: Blocks) -> DataFrame:
        """The edge state of ``blocks`` (:data:`~spark_ap.engines.rules.EDGE_STATE`)."""
        rows = pack.unpack(self.spark, blocks.parts, self.layout.id_type)
        return rows.join(self.similarity, ["src", "dst"]).select(*EDGE_STATE)

    def saved(self, blocks: Blocks, saved: DataFrame) -> Blocks:
        """Go on with the parts after a save: they are what the save was written from."""
        return blocks

    def release(self, blocks: Blocks) -> None:
        """Free the parts once the next ones are computed from them (their files go when the
        iteration after the next one is written).

        What they deliver lives on in the next parts' RDD (which refers to it until
        it is released in turn); what they were computed from is done with.
        """
        blocks.parts.unpersist(blocking=False)
        self.exchange.release(blocks.made_with)

    def _forget(self, blocks: Blocks) -> None:
        """The run is over: remove every chunk file and free the parts and what they hold."""
        # Each partition's files are where its element is: the task removing them runs there.
        try:
            blocks.parts.foreachPartition(_forget(self.run))
        except Exception as error:  # an executor lost since: Spark deletes its files as it stops
            log.warning("could not remove the chunks' files (%s); Spark removes them with its executors", error)
        self.exchange.release(blocks.delivery)
        self.release(blocks)

    def finish(self, blocks: Blocks, decided: np.ndarray | None = None) -> Finished:
        """The labels, computed where the chunks are (:mod:`~spark_ap.engines.blocks.finish`) from the
        last iteration's decisions or ``decided`` (the exemplars' ids, sorted), and
        the edge state read from the chunks whenever it is read: most runs never read it, and rows
        take about three times the chunks' memory. The chunks stay in executor storage, and the
        similarities they leave out in Spark's cache, until ``free()``."""
        labels, found = finish.labels(self.spark, blocks.parts, self.exchange, self.layout.id_type, decided)
        if self._copied is not None:  # a restart copied the similarities from a save: the graph is done with
            self.graph.unpersist()

        def free() -> None:
            self._forget(blocks)
            if self._copied is not None:
                release(self._copied)
            else:
                self.graph.unpersist()

        return Finished(self.edges(blocks), labels, found, self.similarity, free)


def _stepped(wire, damping: float, capacity: int | None) -> Callable[[tuple[Part, object]], Part]:
    """The function that steps a partition's chunks, given what the exchange delivered to it."""

    def run(element: tuple[Part, object]) -> Part:
        part, inbox = element
        sources = part.sources()
        top = wire.top(inbox, sources)
        new = part.next()
        if part.payload is not None:  # read from the checkpoint directory: this executor has no files yet
            new.keep_sources(sources)
        for k in range(part.chunks):
            chunk = part.load(k)
            chunk.step(top, damping, capacity)
            new.keep(k, chunk)
            if part.payload is not None:
                new.keep_indices(k, chunk.i)
        return new

    return run


def _restored(part: Part) -> Part:
    """``part`` as the checkpoint directory holds it (its arrays in a payload), written to this
    executor's files: the part that reads them."""
    sources = part.sources()
    kept = replace(part, payload=None)
    kept.keep_sources(sources)
    for k in range(part.chunks):
        chunk = part.load(k)
        kept.keep(k, chunk)
        kept.keep_indices(k, chunk.i)
    return kept


def _sent(wire, reports, whole: bool, decisions: bool) -> Callable[[int, Iterator[Part]], Iterator[Part]]:
    """The function that ends a partition's task: its counts of exemplar decisions (with
    ``decisions``, also the ids of its exemplars, as ``decided``) and its partial Top, read back
    from the files it wrote, to the driver and to the exchange. ``whole``: the part carries its
    arrays, for the checkpoint directory."""

    def run(index: int, parts: Iterator[Part]) -> Iterator[Part]:
        for part in parts:
            sources: Sources = part.sources()
            counts, decided = NO_COUNTS, [sources.ids[:0]]
            for chunk in part.each():
                counts = add_counts(counts, chunk.counts())
                if decisions:
                    decided.append(sources.ids[sources.at(chunk.vertices[chunk.e])])
            if decisions:
                counts = {**counts, "decided": np.concatenate(decided)}
            top = Top.over(len(sources), part.each)
            outbox, sent = wire.send(index, sources, top)
            reports.add([(index, counts, sent, len(sources))])
            part = part.sent(outbox)
            yield part.whole() if whole else part

    return run


def _forget(run: str) -> Callable[[Iterator], None]:
    """The function that removes this executor's files of ``run``."""
    return lambda _: forget(run)
