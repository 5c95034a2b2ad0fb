"""The clusters of the blocks engine's final state, computed where its chunks are.

The rules are :func:`spark_ap.engines.assign.label_vertices`' (scikit-learn's, on
the edges there are), in Spark jobs over the partitions. Per-cluster values come
to the driver (a cluster per exemplar: few), per-vertex values never:

1. The exemplars: each partition's targets that decided to be one (or whose ids are among the
   exemplars chosen: :mod:`spark_ap.run.best`), collected.
2. Each source's nearest exemplar: the most similar of its edges into one, a
   per-source maximum merged across partitions by the engine's exchange, as an
   iteration's :class:`~spark_ap.engines.blocks.kernel.Top` is; exemplars choose
   themselves.
3. Each cluster's refined exemplar: its size, then per target the similarities
   from its cluster's members summed in source order (all in the target's
   chunk), and per cluster the best of the members every member has an edge to
   (largest sum, smallest number on ties), reduced per cluster on the executors
   (``treeReduce``) before the driver gets them.
4. Each source's nearest refined exemplar, merged as in 2; a vertex with no
   edge to one is its own (a singleton cluster).
5. The labels: each partition gives its targets' rows (every vertex is the
   target of its own self-edge in exactly one partition), clusters numbered from
   0 in the order of their exemplars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
from pyspark import RDD, Broadcast, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark_ap.engines.blocks.exchange import Reports, zippable
from spark_ap.engines.blocks.kernel import Top
from spark_ap.engines.blocks.pack import from_ipc, to_ipc
from spark_ap.engines.blocks.storage import Part


def labels(
    spark: SparkSession, parts: RDD, exchange, id_type: T.DataType, chosen: np.ndarray | None = None
) -> tuple[DataFrame, bool]:
    """``id, cluster, exemplar`` of every vertex and whether any decided to be an exemplar; the
    exemplars are those the last iteration decided, or ``chosen`` (their ids, sorted)."""
    sc = spark.sparkContext
    if chosen is None:
        decided = parts.map(_decided).collect()
    else:
        shared = sc.broadcast(chosen)
        decided = parts.map(_numbered(shared)).collect()
        shared.destroy()
    exemplars = np.sort(np.concatenate(decided)) if decided else np.empty(0, np.int32)
    if exemplars.size == 0:
        return _frame(spark, parts.map(_unassigned), id_type), False
    first, done = _nearest(sc, parts, exchange, exemplars)
    try:
        clusters, sizes = first.map(_sizes).treeReduce(_add_sizes)
        shared = sc.broadcast((clusters, sizes))
        refined = first.map(_candidates(shared)).treeReduce(_best)
        shared.destroy()
    finally:
        done()
    numbers, ids = refined["candidate"], refined["id"]
    final, done = _nearest(sc, parts, exchange, np.sort(numbers))
    try:
        alone = final.map(_singletons).collect()
        exemplar_numbers = np.concatenate([numbers, *(a for a, _ in alone)])
        exemplar_ids = np.concatenate([ids, *(b for _, b in alone)])
        order = np.argsort(exemplar_numbers)
        shared = sc.broadcast((exemplar_numbers[order], exemplar_ids[order]))
        frame = _frame(spark, final.map(_labelled(shared)), id_type)
        shared.destroy()
    finally:
        done()
    return frame, True


def _decided(part: Part) -> np.ndarray:
    """The numbers of ``part``'s targets that decided to be exemplars."""
    out = [chunk.vertices[chunk.decided()] for chunk in part.each()]
    return np.concatenate(out) if out else np.empty(0, np.int32)


def _numbered(shared: Broadcast) -> Callable[[Part], np.ndarray]:
    """The function that gives the numbers of a partition's targets whose ids are among the sorted ids ``shared``."""

    def run(part: Part) -> np.ndarray:
        ids = part.sources().ids
        out = [chunk.vertices[_among(ids[at], shared.value)] for chunk, at in _targets(part)]
        return np.concatenate(out) if out else np.empty(0, np.int32)

    return run


def _nearest(sc, parts: RDD, exchange, exemplars: np.ndarray) -> tuple[RDD, Callable[[], None]]:
    """``(part, choice)`` per partition, persisted: for each of its sources the number of the exemplar
    (among the sorted ``exemplars``) it has its most similar edge to, ties to the smallest, -1 for
    none; exemplars choose themselves. And the function that frees it once it has been read (the
    broadcasts its function reads go with it: a job over it serializes that function)."""
    shared = sc.broadcast(exemplars)
    reports = sc.accumulator([], Reports())
    partials = parts.mapPartitionsWithIndex(_nearest_partials(shared, exchange.wire(None), reports))
    zippable(partials).persist(StorageLevel.MEMORY_AND_DISK)
    delivery, _ = exchange.run(partials, reports)
    chosen = exchange.inputs(partials, delivery).map(_chosen(exchange.wire(delivery), shared))
    chosen.persist(StorageLevel.MEMORY_AND_DISK)
    chosen._jrdd.count()

    def done() -> None:
        chosen.unpersist()
        partials.unpersist()
        exchange.release(delivery)
        shared.destroy()

    return chosen, done


def _nearest_partials(shared: Broadcast, wire, reports) -> Callable[[int, Iterator[Part]], Iterator[Part]]:
    def run(index: int, parts: Iterator[Part]) -> Iterator[Part]:
        for part in parts:
            sources = part.sources()
            top = Top.empty(len(sources))
            for chunk in part.each():
                top.merge(*chunk.nearest(_among(chunk.vertices, shared.value)))
            outbox, report = wire.send(index, sources, top)
            reports.add([(index, None, report, len(sources))])
            yield part.sent(outbox)

    return run


def _chosen(wire, shared: Broadcast) -> Callable[[tuple[Part, object]], tuple[Part, np.ndarray]]:
    def run(element: tuple[Part, object]) -> tuple[Part, np.ndarray]:
        part, inbox = element
        sources = part.sources()
        top = wire.top(inbox, sources)
        choice = np.where(top.largest > -np.inf, top.arg, -1).astype(np.int32)
        own = _among(sources.numbers, shared.value)
        choice[own] = sources.numbers[own]
        return part.sent(()), choice

    return run


def _among(numbers: np.ndarray, sorted_numbers: np.ndarray) -> np.ndarray:
    """Whether each of ``numbers`` is among ``sorted_numbers``."""
    at = np.minimum(np.searchsorted(sorted_numbers, numbers), max(sorted_numbers.size - 1, 0))
    return (sorted_numbers[at] == numbers) if sorted_numbers.size else np.zeros(numbers.size, bool)


def _targets(part: Part):
    """Per chunk of ``part``: the chunk, and its targets' positions among the partition's sources."""
    sources = part.sources()
    for chunk in part.each():
        yield chunk, sources.at(chunk.vertices)


def _sizes(element: tuple[Part, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The clusters of a partition's targets and how many of them each has."""
    part, choice = element
    chosen = [choice[at] for _, at in _targets(part)]
    chosen = np.concatenate(chosen) if chosen else np.empty(0, np.int32)
    return np.unique(chosen[chosen >= 0], return_counts=True)


def _add_sizes(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    clusters, inverse = np.unique(np.r_[a[0], b[0]], return_inverse=True)
    return clusters, np.bincount(inverse, weights=np.r_[a[1], b[1]]).astype(np.int64)


def _candidates(shared: Broadcast) -> Callable[[tuple[Part, np.ndarray]], dict[str, np.ndarray]]:
    """Per cluster of a partition's targets, its best candidate to be the cluster's exemplar: the largest
    summed similarity from the members (ties: the smallest number) among the members every member
    of the cluster has an edge to."""

    def run(element: tuple[Part, np.ndarray]) -> dict[str, np.ndarray]:
        part, choice = element
        clusters, sizes = shared.value
        sources = part.sources()
        found = []
        for chunk, at in _targets(part):
            score, edges_in = chunk.scores(choice, at)
            cluster = choice[at]
            member = cluster >= 0
            size = np.where(member, sizes[np.minimum(np.searchsorted(clusters, cluster), clusters.size - 1)], -1)
            keep = member & (edges_in == size)
            found.append((cluster[keep], score[keep], chunk.vertices[keep], sources.ids[at[keep]]))
        names = ("cluster", "score", "candidate", "id")
        columns = {name: np.concatenate([f[k] for f in found]) for k, name in enumerate(names)} if found else None
        return _first_per_cluster(columns) if columns else _none(sources)

    return run


def _none(sources) -> dict[str, np.ndarray]:
    return {
        "cluster": np.empty(0, np.int32),
        "score": np.empty(0),
        "candidate": np.empty(0, np.int32),
        "id": sources.ids[:0],
    }


def _first_per_cluster(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per cluster, the row with the largest score, ties to the smallest candidate number."""
    order = np.lexsort((columns["candidate"], -columns["score"], columns["cluster"]))
    columns = {name: x[order] for name, x in columns.items()}
    cluster = columns["cluster"]
    first = np.r_[True, cluster[1:] != cluster[:-1]] if cluster.size else np.empty(0, bool)
    return {name: x[first] for name, x in columns.items()}


def _best(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return _first_per_cluster({name: np.concatenate([a[name], b[name]]) for name in a})


def _singletons(element: tuple[Part, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The numbers and ids of a partition's targets with no edge to a refined exemplar."""
    part, choice = element
    sources = part.sources()
    alone = [at[choice[at] < 0] for _, at in _targets(part)]
    alone = np.concatenate(alone) if alone else np.empty(0, np.int32)
    return sources.numbers[alone], sources.ids[alone]


def _labelled(shared: Broadcast) -> Callable[[tuple[Part, np.ndarray]], bytes]:
    """A partition's targets as label rows ``id, cluster, exemplar`` (Arrow IPC)."""

    def run(element: tuple[Part, np.ndarray]) -> bytes:
        part, choice = element
        numbers, ids = shared.value
        sources = part.sources()
        at = [a for _, a in _targets(part)]
        at = np.concatenate(at) if at else np.empty(0, np.int32)
        if not at.size:
            return b""
        exemplar = np.where(choice[at] >= 0, choice[at], sources.numbers[at])
        cluster = np.searchsorted(numbers, exemplar).astype(np.int32)
        table = pa.table({"id": sources.ids[at], "cluster": cluster, "exemplar": ids[cluster]})
        return to_ipc(table).to_pybytes()

    return run


def _unassigned(part: Part) -> bytes:
    """A partition's targets as label rows of a run without exemplars: cluster -1, no exemplar."""
    sources = part.sources()
    at = [a for _, a in _targets(part)]
    at = np.concatenate(at) if at else np.empty(0, np.int32)
    if not at.size:
        return b""
    ids = pa.array(sources.ids[at])
    table = pa.table({"id": ids, "cluster": np.full(at.size, -1, np.int32), "exemplar": pa.nulls(at.size, ids.type)})
    return to_ipc(table).to_pybytes()


def _frame(spark: SparkSession, encoded: RDD, id_type: T.DataType) -> DataFrame:
    """The label rows of ``encoded`` (Arrow IPC per partition) as a DataFrame in executor storage."""
    schema = T.StructType(
        [
            T.StructField("id", id_type, False),
            T.StructField("cluster", T.IntegerType(), False),
            T.StructField("exemplar", id_type, True),
        ]
    )

    def decoded(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for data in batch.column(0):
                if data.as_buffer().size:  # a partition without vertices has no rows
                    yield from from_ipc(data.as_buffer()).to_batches()

    rows = spark.createDataFrame(encoded.map(lambda data: (data,)), "data binary").mapInArrow(decoded, schema)
    return rows.localCheckpoint(eager=True)
