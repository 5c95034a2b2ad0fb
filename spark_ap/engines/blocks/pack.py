"""From edge-state rows to the blocks engine's partitions of chunks, and back, with no per-vertex array on the driver.

:func:`pack` turns ``src, dst, s`` (and ``r, a, e, run, changed`` unless the
state is the initial one) into one :class:`~spark_ap.engines.blocks.storage.Part`
per partition:

1. **Facts** (:func:`layout`): the number of vertices and edges, the smallest
   and largest id: one aggregate over the vertices. **Bounds**: C - 1 ids that
   cut the targets into C *chunks* of about :data:`CHUNK_EDGES` edges each, the
   quantiles of a sample of the edges' targets (about :data:`SAMPLE_PER_CHUNK`
   ids per chunk reach the driver). C is a multiple of the P partitions, and
   partition p holds the consecutive chunks c with ``c * P // C == p``: a range
   of targets. Every vertex has its self-edge, so it is a target in exactly one
   partition, which *owns* its id.
2. **Split**: each input task cuts its rows by the chunk of their target into
   Arrow pieces; one shuffle gathers each chunk's pieces in its partition.
3. **Numbers**: vertices are numbered 0..n-1 in id order. Consecutive integer
   ids by a subtraction. Other ids the way ``zipWithIndex`` numbers a sorted
   RDD: the ids are split by the same bounds, each partition counts its own (P
   counts reach the driver, which adds them up into offsets), and each
   partition asks the owners of its sources' ids for their numbers (one
   shuffle there and one back, of each partition's distinct sources).
4. **Pack**: each partition sorts each chunk's edges by (source, target)
   number, refuses repeated pairs, writes the chunk's files, and once it knows
   all its sources rewrites each chunk's sources as positions among them, so
   that its arrays are sized by the sources it touches, not by n.

:func:`unpack` turns the parts back into rows, ids and all, where they are.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark import RDD, Accumulator, AccumulatorParam
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.compat import to_arrow
from spark_ap.engines.blocks.kernel import Chunk, by_pair, repeated_pairs, runs
from spark_ap.engines.blocks.storage import Part, Sources, decode, encode
from spark_ap.errors import InvalidParamError

# Edges per chunk: large enough that numpy's per-call cost vanishes, small enough
# that a Python worker holds a few copies of one comfortably (about 50 MB).
CHUNK_EDGES = 1 << 20
# Sampled targets per chunk for the bounds: the chunks' sizes are then within a few
# percent of each other, and a sample is a few ids per partition-to-be.
SAMPLE_PER_CHUNK = 100


@dataclass(frozen=True)
class Layout:
    """What a start learns of the vertices; a later start of the same run (a resume, a recovery) reuses it.

    ``bounds`` cut the targets into ``chunks`` chunks (``np.searchsorted(bounds, id,
    "right")``), ``parts`` partitions hold them in order. ``low`` is the smallest id:
    with ``consecutive`` ids a vertex's number is its id less ``low``.
    """

    n: int
    edges: int
    parts: int
    chunks: int
    bounds: np.ndarray
    low: int | str
    consecutive: bool
    id_type: T.DataType

    def no_ids(self) -> np.ndarray:
        """An empty array of ids of this graph's type."""
        return np.empty(0, str if isinstance(self.id_type, T.StringType) else np.int64)

    def chunk_of(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.bounds, ids, side="right").astype(np.int32)

    def part_of(self, chunk: np.ndarray | int) -> np.ndarray | int:
        return chunk * self.parts // self.chunks

    def key_of(self, part: int) -> int:
        """The first chunk of partition ``part``: the key under which a record goes there."""
        return part * self.chunks // self.parts


class ByChunk:
    """The partition of a chunk (``partitionFunc`` of the shuffles here): one object per start,
    so that RDDs partitioned with it line up (Spark compares partitioners by the function's id)."""

    def __init__(self, layout: Layout) -> None:
        self.parts, self.chunks = layout.parts, layout.chunks

    def __call__(self, chunk: int) -> int:
        return chunk * self.parts // self.chunks


def layout(state: DataFrame, vertices: DataFrame | None, parts: int) -> Layout:
    """The :class:`Layout` of ``state`` (``src, dst, ...``), from ``vertices`` (``id, into``) when given,
    else from the state's self-edges (one per vertex)."""
    id_type = state.schema["src"].dataType
    if vertices is not None:
        row = vertices.agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("into").alias("edges"),
            F.min("id").alias("low"),
            F.max("id").alias("high"),
        ).first()
    else:
        loop = F.col("src") == F.col("dst")
        row = state.agg(
            F.sum(loop.cast("long")).alias("n"),
            F.count(F.lit(1)).alias("edges"),
            F.min(F.when(loop, F.col("src"))).alias("low"),
            F.max(F.when(loop, F.col("src"))).alias("high"),
        ).first()
    n, edges = int(row["n"] or 0), int(row["edges"] or 0)
    if n >= 2**31 - 1:
        raise InvalidParamError(
            f"engine='blocks' numbers vertices with 32-bit integers; {n} vertices are too many. "
            "Use engine='graphframes'."
        )
    chunks = parts * max(1, math.ceil(edges / (CHUNK_EDGES * parts)))
    consecutive = isinstance(id_type, T.LongType) and n > 0 and row["high"] - row["low"] == n - 1
    return Layout(n, edges, parts, chunks, _bounds(state, edges, chunks), row["low"], consecutive, id_type)


def _bounds(state: DataFrame, edges: int, chunks: int) -> np.ndarray:
    """C - 1 target ids that cut the edges into ``chunks`` ranges of about equal size."""
    targets = state.select("dst")
    fraction = SAMPLE_PER_CHUNK * chunks / max(edges, 1)
    if fraction < 1:
        targets = targets.sample(withReplacement=False, fraction=fraction, seed=20071)
    sample = np.sort(id_values(to_arrow(targets).column("dst")))
    if sample.size == 0:
        return sample
    return sample[np.arange(1, chunks) * sample.size // chunks]


def id_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Ids as numpy sorts them as Spark does: longs by value, strings (fixed-width unicode) by code point."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=str)
    return column.to_numpy()


def to_ipc(table: pa.Table | pa.RecordBatch) -> pa.Buffer:
    """``table`` in Arrow's IPC stream format (schema included)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write(table)
    return sink.getvalue()


def from_ipc(data: bytes | pa.Buffer) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def binary(value: pa.Buffer) -> pa.Array:
    """A one-row binary column over ``value`` without copying it."""
    offsets = pa.py_buffer(np.array([0, value.size], dtype=np.int32))
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, value])


def _split(layout: Layout) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function that cuts edge-state rows by the chunk of their target into pieces ``chunk, piece``
    (Arrow IPC): the shuffle that gathers a chunk moves a few large values, not a row per edge."""

    def pieces(held: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = pa.Table.from_batches(held)
        chunk = layout.chunk_of(id_values(table.column("dst")))
        if layout.consecutive:  # numbered here: the pieces carry 4 bytes per id, not 8
            for name in ("src", "dst"):
                numbers = pa.array((table.column(name).to_numpy() - layout.low).astype(np.int32))
                table = table.set_column(table.schema.get_field_index(name), name, numbers)
        order = np.argsort(chunk, kind="stable")
        chunk, table = chunk[order], table.take(order)
        for a, b in runs(chunk):
            piece = binary(to_ipc(table.slice(a, b - a)))
            yield pa.RecordBatch.from_arrays([pa.array([chunk[a]], pa.int32()), piece], names=["chunk", "piece"])

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held, rows = [], 0
        for batch in batches:
            held.append(batch)
            rows += batch.num_rows
            if rows >= CHUNK_EDGES:  # bounds what a task holds
                yield from pieces(held)
                held, rows = [], 0
        if rows:
            yield from pieces(held)

    return run


def _split_ids(layout: Layout) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function that cuts vertex ids (``id``) by their chunk into pieces ``chunk, piece``."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            ids = id_values(batch.column("id"))
            chunk = layout.chunk_of(ids)
            order = np.argsort(chunk, kind="stable")
            chunk, ids = chunk[order], ids[order]
            for a, b in runs(chunk):
                piece = pa.py_buffer(encode({"ids": ids[a:b]}))
                yield pa.RecordBatch.from_arrays([pa.array([chunk[a]], pa.int32()), binary(piece)], ["chunk", "piece"])

    return run


class Repeated(AccumulatorParam):
    """The repeated pairs the packing tasks find: ``(chunk, pairs, edges, (src, dst, count))`` each."""

    def zero(self, value: list) -> list:
        return []

    def addInPlace(self, value1: list, value2: list) -> list:
        return value1 + value2


def pack(state: DataFrame, columns: list[str], layout: Layout, run: str, repeated: Accumulator) -> Callable[[], RDD]:
    """The RDD of one :class:`Part` per partition (version 0, files written by its task), as a
    function of nothing that builds it; ``columns`` of ``state`` are read (``src, dst, s`` and the
    messages unless they are zeros). Each chunk with repeated pairs is reported to ``repeated``
    and left out."""
    by_chunk = ByChunk(layout)
    pieces = state.select(*columns).mapInArrow(_split(layout), "chunk int, piece binary")
    gathered = pieces.rdd.map(tuple).repartitionAndSortWithinPartitions(layout.parts, by_chunk)
    packer = _packer(layout, run, repeated)
    if layout.consecutive:
        return gathered.mapPartitionsWithIndex(packer)
    answers = _numbers(state, gathered, layout, by_chunk)
    # Aligned partition by partition (same partitioner): each partition's numbers, then its pieces.
    return answers.union(gathered).mapPartitionsWithIndex(packer)


def _numbers(state: DataFrame, gathered: RDD, layout: Layout, by_chunk: ByChunk) -> RDD:
    """Each partition's sources with their numbers, ``(key, ("numbers", bytes))`` in that partition.

    The vertex ids are split by the bounds (each partition then holds the ids it
    owns); a job counts them per partition for the offsets; each partition asks
    the owners of its distinct sources, which answer with their numbers.
    """
    ids = state.filter(F.col("src") == F.col("dst")).select(F.col("src").alias("id"))
    owned = (
        ids.mapInArrow(_split_ids(layout), "chunk int, piece binary")
        .rdd.map(tuple)
        .partitionBy(layout.parts, by_chunk)
        .mapPartitions(_owned(layout), preservesPartitioning=True)
    )
    counts = owned.map(lambda element: element[1][1].size).collect()
    offsets = np.r_[0, np.cumsum(counts)][:-1]
    asked = gathered.mapPartitionsWithIndex(_asks(layout)).partitionBy(layout.parts, by_chunk)
    return (
        owned.union(asked)
        # Not "preservesPartitioning": the answers' keys are the askers', and PySpark skips the
        # shuffle of an RDD it believes partitioned already.
        .mapPartitionsWithIndex(_answers(offsets, layout))
        .partitionBy(layout.parts, by_chunk)
    )


def _owned(layout: Layout) -> Callable[[Iterator[tuple[int, bytes]]], Iterator[tuple[int, tuple]]]:
    """The function that gives a partition's owned ids, sorted, as one element."""

    def run(pieces: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, tuple]]:
        ids = [decode(piece)["ids"] for _, piece in pieces]
        yield 0, ("owned", np.unique(np.concatenate(ids)) if ids else layout.no_ids())

    return run


def _asks(layout: Layout) -> Callable[[int, Iterator], Iterator]:
    """The function that sends each owner the distinct sources of a partition that it owns."""

    def run(index: int, pieces: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, tuple]]:
        sources = [np.unique(id_values(_table(group).column("src"))) for _, group in _chunks(pieces)]
        if not sources:
            return
        sources = np.unique(np.concatenate(sources))
        owner = layout.part_of(layout.chunk_of(sources))
        for a, b in runs(owner):
            yield layout.key_of(int(owner[a])), ("ask", index, encode({"ids": sources[a:b]}))

    return run


def _answers(offsets: np.ndarray, layout: Layout) -> Callable[[int, Iterator], Iterator]:
    """The function that answers, in an owner's partition, the asks of every partition: the
    ids' numbers, their offset plus their rank among the ids the owner holds."""

    def run(index: int, elements: Iterator[tuple[int, tuple]]) -> Iterator[tuple[int, tuple]]:
        owned = None
        for _, (kind, *rest) in elements:
            if kind == "owned":  # first: the union puts the owned ids before the asks
                owned = rest[0]
                continue
            asker, data = rest
            ids = decode(data)["ids"]
            rank = np.searchsorted(owned, ids)
            if rank.size and (rank.max() >= owned.size or (owned[rank] != ids).any()):
                raise RuntimeError(f"partition {index} does not own every id partition {asker} asked for")
            numbers = (offsets[index] + rank).astype(np.int32)
            yield layout.key_of(asker), ("numbers", index, encode({"ids": ids, "numbers": numbers}))

    return run


def _chunks(pieces: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, list[bytes]]]:
    """The pieces of a partition (sorted by chunk) grouped by chunk."""
    for chunk, group in itertools.groupby(pieces, key=lambda item: item[0]):
        yield chunk, [piece for _, piece in group]


def _table(pieces: list[bytes]) -> pa.Table:
    return pa.concat_tables([from_ipc(piece) for piece in pieces])


def _packer(layout: Layout, run: str, repeated: Accumulator) -> Callable[[int, Iterator], Iterator[Part]]:
    """The function that packs a partition's pieces into chunks, preceded by its sources' numbers
    unless the ids are consecutive: it writes the files and yields the partition's :class:`Part`."""

    def numbered(elements: Iterator) -> tuple[Sources | None, Iterator[tuple[int, bytes]]]:
        """The sources' numbers at the head of ``elements`` (None for consecutive ids), and the rest."""
        if layout.consecutive:
            return None, elements
        answers, rest = [], None
        for element in elements:
            kind = element[1]
            if isinstance(kind, tuple) and kind[0] == "numbers":
                answers.append((kind[1], decode(kind[2])))
                continue
            rest = element
            break
        answers.sort(key=lambda answer: answer[0])  # by owner: the ids in order
        ids = [a["ids"] for _, a in answers]
        numbers = [a["numbers"] for _, a in answers]
        empty = Sources(np.empty(0, np.int32), layout.no_ids())
        sources = Sources(np.concatenate(numbers), np.concatenate(ids)) if answers else empty
        return sources, itertools.chain([] if rest is None else [rest], elements)

    def number(sources: Sources | None, ids: np.ndarray) -> np.ndarray:
        if sources is None:  # consecutive ids, numbered as they were split
            return ids
        return sources.numbers[np.searchsorted(sources.ids, ids)]

    def as_id(value: np.generic) -> int | str:
        """The id of a value of a piece's ``src`` or ``dst`` (a number, for consecutive ids)."""
        return int(value) + layout.low if layout.consecutive else value.item()

    def pack_part(index: int, elements: Iterator) -> Iterator[Part]:
        known, pieces = numbered(elements)
        part, count, seen = Part(run, index, 0, 0), 0, []
        for chunk_index, group in _chunks(pieces):
            table = _table(group)
            src, dst = (id_values(table.column(name)) for name in ("src", "dst"))
            i, j = number(known, src), number(known, dst)
            order = by_pair(i, j)
            i, j = i[order], j[order]
            found = repeated_pairs(i, j)
            if found is not None:
                pairs, edges, (a, b, times) = found
                at = np.flatnonzero((i == a) & (j == b))[0]
                example = (as_id(src[order][at]), as_id(dst[order][at]), times)
                repeated.add([(chunk_index, pairs, edges, example)])
                continue
            col = {name: table.column(name).to_numpy(zero_copy_only=False)[order] for name in table.column_names[2:]}
            chunk = Chunk.from_arrays({"i": i, "j": j, **col})
            part.keep(count, chunk)
            part.keep_indices(count, chunk.i)
            first = np.r_[True, i[1:] != i[:-1]]
            seen.append((i[first], src[order][first]))
            count += 1
        numbers = np.concatenate([n for n, _ in seen]) if seen else np.empty(0, np.int32)
        ids = np.concatenate([d for _, d in seen]) if seen else layout.no_ids()
        numbers, first = np.unique(numbers, return_index=True)
        ids = numbers.astype(np.int64) + layout.low if layout.consecutive else ids[first]
        sources = Sources(numbers.astype(np.int32), ids)
        part = Part(run, index, count, 0)
        part.keep_sources(sources)
        for k in range(count):  # each chunk's sources as positions among the partition's
            part.keep_indices(k, sources.at(part.load(k).i))
        yield part

    return pack_part


def unpack(spark: SparkSession, parts: RDD, id_type: T.DataType) -> DataFrame:
    """The edge state ``src, dst, s, r, a, e, run, changed`` of the parts, read where they are."""
    encoded = parts.flatMap(_rows).map(lambda data: (data,))
    schema = T.StructType(
        [
            T.StructField("src", id_type),
            T.StructField("dst", id_type),
            T.StructField("s", T.DoubleType()),
            T.StructField("r", T.DoubleType()),
            T.StructField("a", T.DoubleType()),
            T.StructField("e", T.BooleanType()),
            T.StructField("run", T.IntegerType()),
            T.StructField("changed", T.BooleanType()),
        ]
    )
    return spark.createDataFrame(encoded, "data binary").mapInArrow(_decode_rows, schema)


def _rows(part: Part) -> Iterator[bytes]:
    """Each chunk of ``part`` as edge rows, Arrow IPC bytes."""
    sources = part.sources()
    for chunk in part.each():
        col = chunk.columns()
        src, dst = sources.ids[col.pop("i")], sources.ids[sources.at(col.pop("j"))]
        yield to_ipc(pa.table({"src": src, "dst": dst, **col})).to_pybytes()


def _decode_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for data in batch.column(0):
            yield from from_ipc(data.as_buffer()).to_batches()
