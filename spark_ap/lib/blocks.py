"""The block engine: the edge state as numpy arrays in chunks of edges, one Spark job per iteration.

The graphframes engine (:mod:`spark_ap.lib.graphframes`) sends a message along
every edge twice per iteration and joins the vertices' aggregates back onto
the edges. This one leaves the edges where they are and moves only per-vertex
values:

* The vertices are numbered 0..n-1 in id order, so numpy arrays can be indexed
  by them. The edges are split by target into *chunks* of about
  :data:`CHUNK_EDGES` edges, a chunk holding every edge into its targets,
  sorted by (src, dst). The chunks are the elements of an RDD kept in executor
  storage; an iteration maps it to the next one.
* The numbering is the driver's: it collects every vertex id with the number of
  edges into it, sorts them and cuts the sorted vertices into chunks of about
  equal edges; the sorted ids are broadcast, and the workers number the edges
  (:func:`numbers`: by binary search, or by a subtraction when the ids are
  consecutive integers; one pass, no join) and split them into an encoded
  piece per chunk, which one shuffle gathers (chunk k in partition k mod P).
* Availabilities need per-target sums. All of a target's edges are in one chunk,
  in source order, so ``np.bincount`` adds them in the order the dense column
  sum does: the messages are bit for bit the reference's.
* Responsibilities need, per source i, the largest and second largest
  a(i,k') + s(i,k') and the k' giving the largest (:class:`Top`). A worker
  scatters them over its chunks' edges into arrays of n values, the driver
  merges the workers' (maxima are exact in any order) and broadcasts three
  arrays of n values to the next iteration.

Per iteration, a task reads each chunk's similarities, indices and last
messages from those files (memory-mapped) and writes the new messages (16
bytes per edge); the JVM holds a few bytes per chunk, and the driver the ids
and the three arrays of n values. The input similarities stay out of the
chunks (which hold ``s``, with the degeneracy noise) and are joined back when
the state is turned into edge rows (to be saved, or when the result's
messages are read).

At the end the clusters are assigned on the chunks too (:meth:`BlockEngine.assign`):
a vertex's nearest exemplar is a per-source maximum, merged as the Top is, and
a cluster member's summed similarity from its cluster is a per-target sum, in
the target's chunk. The driver holds arrays of n values, and Spark gets one
row per vertex.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
from pyspark import RDD, Accumulator, AccumulatorParam, Broadcast, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.errors import DuplicateEdgeError, InvalidParamError
from spark_ap.lib import assign
from spark_ap.lib.assign import arrow_id_type
from spark_ap.lib.checkpoints import release

log = logging.getLogger("spark_ap")

# Edges per chunk: large enough that numpy's per-call cost vanishes, small enough
# that a Python worker holds a few copies of one comfortably (about 50 MB).
CHUNK_EDGES = 1 << 20
# The edge rows the chunks are built from and turned back into.
_EDGE_COLUMNS = (
    ("i", T.LongType(), pa.int64()),
    ("j", T.LongType(), pa.int64()),
    ("s", T.DoubleType(), pa.float64()),
    ("r", T.DoubleType(), pa.float64()),
    ("a", T.DoubleType(), pa.float64()),
    ("e", T.BooleanType(), pa.bool_()),
    ("run", T.IntegerType(), pa.int32()),
    ("changed", T.BooleanType(), pa.bool_()),
)
_EDGE_SCHEMA = T.StructType([T.StructField(name, kind) for name, kind, _ in _EDGE_COLUMNS])
_ARROW_SCHEMA = pa.schema([(name, kind) for name, _, kind in _EDGE_COLUMNS])
# The columns after the messages' similarity ``s``: a state before the first iteration is
# r = a = 0 with no decision made, so a start from it leaves them out (see start_columns).
_MESSAGES = _ARROW_SCHEMA.names[3:]


def start_columns(initial: bool) -> list[str]:
    """The edge-state columns an engine's start reads: all but ``similarity``, or ``src, dst, s``
    of a state before the first iteration (``initial``), whose other columns are zeros."""
    return ["src", "dst", "s"] if initial else ["src", "dst", *_ARROW_SCHEMA.names[2:]]


def with_messages(col: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``col`` with the columns a state before the first iteration leaves out, made zeros."""
    size = col["s"].size
    kinds = {name: _ARROW_SCHEMA.field(name).type.to_pandas_dtype() for name in _MESSAGES if name not in col}
    return {**col, **{name: np.zeros(size, kind) for name, kind in kinds.items()}}


@dataclass
class Top:
    """Per source vertex: the largest a + s, the target giving it (smallest on ties), the second largest."""

    largest: np.ndarray
    arg: np.ndarray
    second: np.ndarray

    @classmethod
    def empty(cls, n: int) -> Top:
        return cls(np.full(n, -np.inf), np.full(n, n, dtype=np.int32), np.full(n, -np.inf))

    def merge(self, at: np.ndarray, largest: np.ndarray, arg: np.ndarray, second: np.ndarray) -> None:
        """Fold in the values of the sources ``at`` over more edges; exact in any order."""
        old_largest, old_arg, old_second = self.largest[at], self.arg[at], self.second[at]
        wins = (largest > old_largest) | ((largest == old_largest) & (arg < old_arg))
        self.largest[at] = np.where(wins, largest, old_largest)
        self.arg[at] = np.where(wins, arg, old_arg)
        self.second[at] = np.where(wins, np.maximum(second, old_largest), np.maximum(old_second, largest))

    @classmethod
    def over(cls, n: int, elements: Sequence[Chunk | Resident]) -> Top:
        """The Top of each source over the edges of the chunks ``elements`` stand for, in three passes
        over them that scatter into arrays of n values (``ufunc.at``; each a maximum or a minimum, so
        exact in any order). A pass reads one chunk at a time: a worker maps one chunk's files at once."""
        top = cls.empty(n)
        for chunk in map(_chunk, elements):
            with np.errstate(invalid="ignore"):  # ufunc.at warns on the NaN the next pass explains
                np.maximum.at(top.largest, chunk.i, chunk.a + chunk.s)
        for chunk in map(_chunk, elements):
            # The smallest target giving the largest; "not <" rather than "==": a vertex whose
            # only edge is its self-edge has a NaN availability (see step), and that edge is its largest.
            giving = ~(chunk.a + chunk.s < top.largest[chunk.i])
            np.minimum.at(top.arg, chunk.i, np.where(giving, chunk.vertices[chunk.jl], n))
        for chunk in map(_chunk, elements):
            others = np.where(chunk.vertices[chunk.jl] == top.arg[chunk.i], -np.inf, chunk.a + chunk.s)
            np.maximum.at(top.second, chunk.i, others)
        return top

    def touched(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The sources that have edges here, and their values."""
        at = np.flatnonzero(self.largest > -np.inf).astype(np.int32)
        return at, self.largest[at], self.arg[at], self.second[at]


class Chunk:
    """The edges into a range of target vertices, sorted by (src, dst), as numpy arrays.

    ``i`` is each edge's source vertex number; ``vertices`` are the chunk's
    targets (sorted), ``jl`` each edge's target as a position among them, and
    ``diagonal`` the position of each target's self-edge. ``e``, ``run`` and
    ``changed`` are per target: its exemplar decision, for how many iterations
    it has held, and whether the last iteration changed it.

    Sorted by source, each target's edges come in source order (so
    ``np.bincount`` adds them in the order a dense column sum does).
    """

    ARRAYS = ("i", "jl", "s", "r", "a", "vertices", "diagonal", "e", "run", "changed")

    def __init__(self, **arrays: np.ndarray) -> None:
        for name in self.ARRAYS:
            setattr(self, name, arrays[name])

    @classmethod
    def from_arrays(cls, col: dict[str, np.ndarray]) -> Chunk:
        """Build a chunk from the columns of edge rows (``_EDGE_SCHEMA``) sorted by (i, j)."""
        i, j = col["i"].astype(np.int32), col["j"].astype(np.int32)
        # A chunk's targets are a range of vertex numbers: count them over it rather than sort.
        low = int(j.min()) if j.size else 0
        present = np.bincount(j - low) > 0
        vertices = (np.flatnonzero(present) + low).astype(np.int32)
        jl = (np.cumsum(present, dtype=np.int32) - 1)[j - low]
        diagonal = np.flatnonzero(i == j)
        diagonal = diagonal[np.argsort(jl[diagonal])].astype(np.int32)
        if diagonal.size != vertices.size:
            raise ValueError("every target vertex of a chunk needs its self-edge")
        return cls(
            i=i,
            jl=jl,
            s=col["s"],
            r=col["r"],
            a=col["a"],
            vertices=vertices,
            diagonal=diagonal,
            e=col["e"][diagonal].astype(bool),
            run=col["run"][diagonal].astype(np.int32),
            changed=col["changed"][diagonal].astype(bool),
        )

    def to_buffer(self) -> pa.Buffer:
        return _encode({name: getattr(self, name) for name in self.ARRAYS})

    @classmethod
    def from_buffer(cls, buffer: pa.Buffer) -> Chunk:
        return cls(**_decode(buffer))

    def decided(self) -> np.ndarray:
        """Per target, its exemplar decision r(k,k) + a(k,k) > 0 in this state (NaN decides, see :meth:`step`)."""
        d = self.diagonal
        return ~((self.r[d] + self.a[d]) <= 0)

    def nearest(self, exemplar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per source with edges here into the targets ``exemplar`` (a boolean per target of this
        chunk): the largest s over those edges and its target, as :meth:`top` gives them (the
        second largest is not needed: -inf)."""
        keep = exemplar[self.jl]
        if not keep.any():
            return np.empty(0, np.int32), np.empty(0), np.empty(0, np.int32), np.empty(0)
        i = self.i[keep]
        starts, largest, first = _largest_per_source(i, self.s[keep])
        return i[starts], largest, self.vertices[self.jl[keep][first]], np.full(starts.size, -np.inf)

    def scores(self, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This chunk's targets, and per target the similarities from the members of its cluster
        under ``choice`` (per vertex, -1: none), summed in source order, and how many there are."""
        i, j = self.i, self.vertices[self.jl]
        same = (choice[i] >= 0) & (choice[i] == choice[j])
        # np.bincount adds in array order: each target's terms in source order (see refine).
        score = np.bincount(self.jl[same], weights=self.s[same], minlength=self.vertices.size)
        return self.vertices, score, np.bincount(self.jl[same], minlength=self.vertices.size)

    def step(self, top: Top, damping: float) -> None:
        """One iteration on this chunk's edges, given every source's :class:`Top` of the last one."""
        # r(i,k) = s(i,k) - max_{k' != k} (a(i,k') + s(i,k'))
        i = self.i
        best = np.where(top.arg[i] == self.vertices[self.jl], top.second[i], top.largest[i])
        self.r = damping * self.r + (1 - damping) * (self.s - best)
        # a(i,k) = min(0, r(k,k) + sum_{i' not in {i,k}} max(0, r(i',k))), a(k,k) = sum_{i' != k} max(0, r(i',k))
        d = self.diagonal
        own = np.maximum(self.r, 0)
        own[d] = self.r[d]
        # inf - inf = NaN for a vertex whose only edge is its self-edge, as in the dense computation.
        with np.errstate(invalid="ignore"):
            rest = np.bincount(self.jl, weights=own, minlength=self.vertices.size)[self.jl] - own
        computed = np.minimum(rest, 0)
        computed[d] = rest[d]
        self.a = damping * self.a + (1 - damping) * computed
        # "not <= 0" rather than "> 0": a vertex whose only edge is its self-edge has r = inf
        # and a = inf - inf = NaN, and Spark SQL (the graphframes engine, the final assignment)
        # orders NaN above every number, so it counts as an exemplar there; here too.
        decision = self.decided()
        self.run = np.where(decision == self.e, self.run + 1, 1).astype(np.int32)
        self.changed = decision != self.e
        self.e = decision

    def edges(self) -> pa.RecordBatch:
        """The chunk as edge rows (``_EDGE_SCHEMA``); e, run and changed are set on self-edges only."""
        d = self.diagonal
        e, run, changed = np.zeros(self.i.size, bool), np.zeros(self.i.size, np.int32), np.zeros(self.i.size, bool)
        e[d], run[d], changed[d] = self.e, self.run, self.changed
        columns = [self.i.astype(np.int64), self.vertices[self.jl].astype(np.int64), self.s, self.r, self.a]
        return pa.RecordBatch.from_arrays([*map(pa.array, columns + [e, run, changed])], schema=_ARROW_SCHEMA)


def _largest_per_source(i: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run of one source in ``i`` (edges sorted by (source, target)): the run's start, its
    largest ``x`` and the first position holding that (the smallest target, as argmax picks)."""
    starts = np.r_[0, np.flatnonzero(i[1:] != i[:-1]) + 1]
    largest = np.maximum.reduceat(x, starts)
    counts = np.diff(np.r_[starts, x.size])
    positions = np.arange(x.size)
    first = np.minimum.reduceat(np.where(x == np.repeat(largest, counts), positions, x.size), starts)
    # A vertex whose only edge is its self-edge ends up with a NaN availability
    # (inf - inf, as in the dense computation); nothing equals NaN, so take its edge.
    return starts, largest, np.where(first == x.size, starts, first)


def _encode(arrays: dict[str, np.ndarray]) -> pa.Buffer:
    """The arrays in one buffer: a JSON header, then each array's bytes, 8-byte aligned."""
    return pa.py_buffer(b"".join(_encoded_parts(arrays)))


def _encoded_parts(arrays: dict[str, np.ndarray]) -> list:
    """The consecutive parts of :func:`_encode`'s buffer: to write them without joining them."""
    layout, offset, parts = [], 0, []
    for name, x in arrays.items():
        raw = np.ascontiguousarray(x).view(np.uint8).ravel()
        layout.append((name, x.dtype.str, x.size, offset))
        padding = -raw.size % 8
        parts += [raw.data, bytes(padding)] if padding else [raw.data]
        offset += raw.size + padding
    header = json.dumps(layout).encode()
    return [np.int64(len(header)).tobytes(), header, bytes(-len(header) % 8), *parts]


def _decode(buffer: pa.Buffer) -> dict[str, np.ndarray]:
    """The arrays of :func:`_encode`, as read-only views of ``buffer`` (no copy)."""
    size = int(np.frombuffer(buffer, dtype=np.int64, count=1)[0])
    layout = json.loads(bytes(buffer[8 : 8 + size]))
    start = 8 + -(-size // 8) * 8
    return {
        name: np.frombuffer(buffer, dtype=np.dtype(dtype), count=count, offset=start + at)
        for name, dtype, count, at in layout
    }


def _binary(value: pa.Buffer) -> pa.Array:
    """A one-row binary column over ``value`` without copying it."""
    offsets = pa.py_buffer(np.array([0, value.size], dtype=np.int32))
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, value])


class ChunkLostError(RuntimeError):
    """A task did not find the files of its chunk in its executor's local directory."""


@dataclass(frozen=True)
class Resident:
    """Where a chunk is between iterations: files in the Spark local directory of the executor that
    computed it (``SPARK_LOCAL_DIRS``, which Spark deletes when the executor stops).

    ``static`` holds what never changes (``i, jl, s, vertices, diagonal``), one
    file per ``version`` what an iteration computes (``r, a, e, run, changed``).
    A chunk's files are written by the task that steps it and read by the next
    iteration's task for the same partition, which Spark runs on the executor
    holding the partition's :class:`Resident` (it prefers the executor holding
    a partition's block).
    """

    run: str  # one per start of the engine, so a recovery never reads an earlier start's files
    chunk: str  # partition-position
    version: int

    STATIC = ("i", "jl", "s", "vertices", "diagonal")
    STATE = ("r", "a", "e", "run", "changed")

    @staticmethod
    def root(run: str) -> str:
        """This executor's folder for the chunks of ``run``."""
        local = os.environ.get("SPARK_LOCAL_DIRS", tempfile.gettempdir()).split(",")[0]
        return os.path.join(local, "spark-ap-chunks", run)

    def path(self, name: str) -> str:
        return os.path.join(self.root(self.run), self.chunk, name)

    def keep(self, chunk: Chunk) -> Resident:
        """Write ``chunk`` here (its static arrays once) and remove the version before the last:
        a retried task of this iteration reads the last one."""
        os.makedirs(os.path.dirname(self.path("static")), exist_ok=True)
        if not os.path.exists(self.path("static")):
            _write(self.path("static"), {name: getattr(chunk, name) for name in self.STATIC})
        _write(self.path(str(self.version)), {name: getattr(chunk, name) for name in self.STATE})
        try:
            os.remove(self.path(str(self.version - 2)))
        except FileNotFoundError:
            pass
        return self

    def load(self) -> Chunk:
        try:
            static, state = (_read(self.path(name)) for name in ("static", str(self.version)))
        except FileNotFoundError as error:
            raise ChunkLostError(
                f"chunk {self.chunk} of iteration {self.version} is not in this executor's local directory "
                f"({self.root(self.run)}): its executor was lost, or the task ran on another one"
            ) from error
        return Chunk(**static, **state)


def _write(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write encoded ``arrays`` to ``path`` whole or not at all (a killed task leaves no half file)."""
    partial_path = f"{path}.{os.getpid()}.{uuid.uuid4().hex}"
    with open(partial_path, "wb") as out:
        for part in _encoded_parts(arrays):
            out.write(part)
    os.replace(partial_path, path)


def _read(path: str) -> dict[str, np.ndarray]:
    """The arrays :func:`_write` wrote, as read-only views of the memory-mapped file."""
    with pa.memory_map(path) as mapped:
        return _decode(mapped.read_buffer())


def _chunk(element: Chunk | Resident) -> Chunk:
    """The chunk an element of :attr:`Blocks.chunks` stands for."""
    return element if isinstance(element, Chunk) else element.load()


def _forget(run: str) -> Callable[[Iterator], None]:
    """The function that removes this executor's files of ``run``."""
    return lambda _: shutil.rmtree(Resident.root(run), ignore_errors=True)


def _split(ids: Broadcast, chunk_of: Broadcast):
    """The function that numbers edge-state rows (``src, dst`` -> ``i, j``, positions in the sorted
    ``ids``) and splits them by the chunk of their target into encoded pieces ``part, piece``: the
    shuffle that gathers a chunk moves a few large values, not a row per edge."""

    def pieces(columns: list[dict[str, np.ndarray]]) -> Iterator[pa.RecordBatch]:
        col = _concatenated(columns, lambda col: np.argsort(chunk_of.value[col["j"]], kind="stable"))
        part = chunk_of.value[col["j"]]
        starts = np.r_[0, np.flatnonzero(part[1:] != part[:-1]) + 1, part.size]
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            piece = _encode({name: x[a:b] for name, x in col.items()})
            yield pa.RecordBatch.from_arrays([pa.array([part[a]], pa.int32()), _binary(piece)], names=["part", "piece"])

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held, rows = [], 0
        for batch in batches:
            # Every id is among ``ids`` (each vertex has its self-edge): its position is its number.
            i, j = (numbers(ids.value, _id_values(batch.column(e))) for e in ("src", "dst"))
            rest = {name: batch.column(name).to_numpy(zero_copy_only=False) for name in batch.schema.names[2:]}
            held.append({"i": i, "j": j, **rest})
            rows += batch.num_rows
            if rows >= CHUNK_EDGES:  # bounds what a task holds
                yield from pieces(held)
                held, rows = [], 0
        if rows:
            yield from pieces(held)

    return run


def _concatenated(
    arrays: list[dict[str, np.ndarray]], order: Callable[[dict[str, np.ndarray]], np.ndarray]
) -> dict[str, np.ndarray]:
    """The columns of ``arrays`` (dicts with the same names) end to end, rows in ``order(columns)``."""
    col = {name: np.concatenate([a[name] for a in arrays]) for name in arrays[0]}
    at = order(col)
    return {name: x[at] for name, x in col.items()}


def _id_values(column: pa.Array) -> np.ndarray:
    """Ids as numpy sorts them as Spark does: longs by value, strings (fixed-width unicode) by code point."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=str)
    return column.to_numpy()


def numbers(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The positions (int32) of ``values`` in ``ids``, sorted and distinct, which hold every one of them.

    Ids that are consecutive integers (0..n-1, or any other run) are numbered
    by a subtraction; others by binary search, about 20 times slower at a
    million vertices (each lookup misses the cache).
    """
    if ids.size and ids.dtype.kind == "i" and int(ids[-1]) - int(ids[0]) == ids.size - 1:
        return (values - ids[0]).astype(np.int32)
    return np.searchsorted(ids, values).astype(np.int32)


def by_pair(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The order that sorts edges by (i, j), vertex numbers below 2**31: ``np.lexsort((j, i))``,
    computed as a stable sort of one 64-bit key (twice as fast)."""
    return np.argsort((i.astype(np.int64) << 32) | j.astype(np.int64), kind="stable")


def repeated_pairs(i: np.ndarray, j: np.ndarray) -> tuple[int, int, tuple[int, int, int]] | None:
    """Pairs (i, j) that occur more than once in edges sorted by (i, j): how many, on how many
    edges in all, and the first of them as ``(i, j, count)``; None when every pair is one edge."""
    first = np.flatnonzero(np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])])  # where each pair starts
    counts = np.diff(np.r_[first, i.size])
    many = np.flatnonzero(counts > 1)
    if many.size == 0:
        return None
    k = many[0]
    return int(many.size), int(counts[many].sum()), (int(i[first[k]]), int(j[first[k]]), int(counts[k]))


def _pack(repeated: Accumulator) -> Callable[[Iterator[tuple[int, bytes]]], Iterator[Chunk]]:
    """The function that turns encoded pieces ``(part, piece)`` sorted by part into one chunk per part.

    A pair's edges all go to its target's chunk, where sorting puts them side
    by side: each part with repeated pairs reports ``(part, pairs, edges, first
    pair)`` to ``repeated`` (and leaves its chunk out).
    """

    def run(pieces: Iterator[tuple[int, bytes]]) -> Iterator[Chunk]:
        for part, group in itertools.groupby(pieces, key=lambda item: item[0]):
            arrays = [_decode(pa.py_buffer(piece)) for _, piece in group]
            col = _concatenated(arrays, lambda col: by_pair(col["i"], col["j"]))
            found = repeated_pairs(col["i"], col["j"])
            if found is not None:
                repeated.add([(part, *found)])
                continue
            yield Chunk.from_arrays(with_messages(col))

    return run


def _unpack(ids: Broadcast, id_type: pa.DataType):
    """The function that turns encoded chunks into edge-state rows ``src, dst, s, r, a, e, run, changed``."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        vertex_ids = pa.array(ids.value, id_type)
        for batch in batches:
            column = batch.column(0)
            for k in range(len(column)):
                rows = Chunk.from_buffer(column[k].as_buffer()).edges()
                src, dst = (vertex_ids.take(rows.column(name)) for name in ("i", "j"))
                rest = {name: rows.column(name) for name in _ARROW_SCHEMA.names[2:]}
                yield pa.RecordBatch.from_pydict({"src": src, "dst": dst, **rest})

    return run


def _add_counts(total: dict, exemplars: int, changed: int, min_run: int | None) -> None:
    """Fold one part's decision counts into ``total`` (min_run None: a part without vertices)."""
    total["exemplars"] += exemplars
    total["changed"] += changed
    if min_run is not None:
        total["min_run"] = min_run if total["min_run"] is None else min(total["min_run"], min_run)


def _no_counts() -> dict:
    return {"exemplars": 0, "changed": 0, "min_run": None}


class _Summaries(AccumulatorParam):
    """A list the tasks add their reports to, for the driver: each partition's ``(index, Top values,
    decision counts)`` in an iteration, each part's repeated pairs as the chunks are packed."""

    def zero(self, value: list) -> list:
        return []

    def addInPlace(self, value1: list, value2: list) -> list:
        return value1 + value2


def _iteration(
    n: int, damping: float, previous: Broadcast | None, summaries: Accumulator, run: str, version: int, whole: bool
):
    """The function each partition runs: step every chunk (unless ``previous`` is None), keep it in
    this executor's files as ``version``, and report the partition's merged :class:`Top` and
    decision counts. It yields the :class:`Resident` of each chunk, or with ``whole`` the chunk
    itself (to be written to the checkpoint directory)."""

    def step(index: int, elements: Iterator[Chunk | Resident]) -> Iterator[Chunk | Resident]:
        last = None if previous is None else Top(*previous.value)
        counts = _no_counts()
        places = []
        for position, element in enumerate(elements):
            chunk = _chunk(element)
            if last is not None:
                chunk.step(last, damping)
            _add_counts(counts, int(chunk.e.sum()), int(chunk.changed.sum()), int(chunk.run.min()))
            places.append(Resident(run, f"{index}-{position}", version).keep(chunk))
        # The Top's passes read the new messages back from the files rather than hold every chunk.
        summaries.add([(index, Top.over(n, places).touched(), counts)])
        yield from map(_chunk, places) if whole else places

    return step


@dataclass
class Blocks:
    """The block engine's state: the chunks (an RDD of :class:`Resident`, or of :class:`Chunk` after
    a step written to the checkpoint directory), every source's Top, the counts."""

    chunks: RDD
    top: Broadcast  # (largest, arg, second), n values each
    stats: dict
    # The Top the chunks were computed from: the chunks' RDD refers to it until released.
    made_with: Broadcast | None = None

    def loaded(self) -> RDD:
        """The chunks as :class:`Chunk` objects, read where they are."""
        return self.chunks.map(_chunk)


class BlockEngine:
    """Runs iterations on :class:`Blocks`; see the module docstring."""

    sorts_edges = True  # start sorts each chunk's edges by (src, dst)
    on_driver = False

    def __init__(self, spark: SparkSession, damping: float) -> None:
        try:
            self.sc = spark.sparkContext
        except Exception as error:  # Spark Connect has no SparkContext
            raise InvalidParamError(
                "engine='blocks' needs a classic SparkSession (it works on RDDs and broadcasts); "
                "use engine='graphframes' with Spark Connect."
            ) from error
        self.spark = spark
        self.damping = damping
        self.ids: np.ndarray | None = None  # vertex number -> id, sorted
        self._into: np.ndarray | None = None  # vertex number -> the edges into it
        self.shared_ids: Broadcast | None = None  # the same, in the executors
        self.id_type = None  # the ids' Spark type
        self.similarity: DataFrame | None = None  # src, dst, similarity: the chunks leave it out
        self._copied: DataFrame | None = None  # the copy of it made here, if any
        self.n = 0
        self.run = ""  # names this start's files in the executors
        self.version = 0  # the iteration the chunks last computed

    def _number(self, state: DataFrame, vertices: DataFrame | None) -> np.ndarray:
        """Number the vertices 0..n-1 in id order (``self.ids``); return each one's chunk.

        The ids and the number of edges into each (every vertex has its self-edge)
        are collected: from ``vertices`` (``id, into``) when given, else counted
        from ``state``; a later start of the run (a resume, a recovery) reuses them.
        Consecutive vertices share a chunk until it holds about
        :data:`CHUNK_EDGES` edges.
        """
        if self.ids is None:
            if vertices is None:
                vertices = state.groupBy(F.col("dst").alias("id")).agg(F.count(F.lit(1)).alias("into"))
            table = vertices.select("id", "into").toArrow()
            ids = _id_values(table.column("id"))
            order = np.argsort(ids, kind="stable")
            self.ids, self._into = ids[order], table.column("into").to_numpy()[order]
            self.id_type = state.schema["src"].dataType
            self.n = self.ids.size
        if self.n >= 2**31 - 1:
            raise InvalidParamError(
                f"engine='blocks' numbers vertices with 32-bit integers; {self.n} vertices are too many. "
                "Use engine='graphframes'."
            )
        counts = self._into
        total = int(counts.sum())
        # A multiple of the partitions, so that each holds as many chunks (start puts chunk k in k mod P).
        parts = self.sc.defaultParallelism
        pieces = parts * max(1, math.ceil(total / (CHUNK_EDGES * parts)))
        chunk = (np.cumsum(counts) - counts) * pieces // max(total, 1)
        # In 16 bits when they fit (nearly always), where numpy's stable sort (the split's) is a radix sort.
        return chunk.astype(np.uint16 if pieces <= 1 << 16 else np.int32)

    def start(
        self,
        state: DataFrame,
        graph: DataFrame | None = None,
        *,
        initial: bool = False,
        vertices: DataFrame | None = None,
    ) -> Blocks:
        """Chunks from an edge-state DataFrame (``src, dst, similarity, s, r, a, e, run, changed``).

        ``graph`` (``src, dst, similarity``, held for the run) supplies the
        similarities when the state is turned back into rows; without it they
        are copied from ``state`` into executor storage, since ``state`` may be
        a save that a newer one replaces. ``initial``: ``state`` is before the
        first iteration, so only its ``src, dst, s`` are read (and moved).
        ``vertices`` (``id, into``) saves counting the edges into each vertex.

        Raises
        ------
        DuplicateEdgeError
            A (src, dst) pair occurs more than once (found as each chunk is sorted).
        """
        # Read from ``state`` every time: after a failure, what an earlier start
        # kept in executor storage may be gone.
        if self._copied is not None:
            release(self._copied)
        if self.shared_ids is not None:
            self.shared_ids.destroy()
        chunk_of = self.sc.broadcast(self._number(state, vertices))
        self.shared_ids, self._copied = self.sc.broadcast(self.ids), None
        if graph is None:
            graph = self._copied = state.select("src", "dst", "similarity").localCheckpoint()
        self.similarity = graph
        self.run, self.version = uuid.uuid4().hex, 0
        pieces = state.select(*start_columns(initial)).mapInArrow(
            _split(self.shared_ids, chunk_of), "part int, piece binary"
        )
        # Chunk k goes to partition k mod P: consecutive chunks (about equal edges) spread evenly.
        parts = self.sc.defaultParallelism
        repeated = self.sc.accumulator([], _Summaries())
        chunks = (
            pieces.rdd.map(tuple)
            .repartitionAndSortWithinPartitions(parts, lambda part: part % parts)
            .mapPartitions(_pack(repeated))
        )
        try:
            blocks = self._run(chunks, None, False)
            found = {part: report for part, *report in repeated.value}  # a retried task reports again
        finally:
            repeated.value = []
            chunk_of.destroy()
        release(state)
        if found:
            self.release(blocks, last=True)
            reports = [found[part] for part in sorted(found)]
            i, j, count = reports[0][2]
            example = (*self.ids[[i, j]].tolist(), count)
            raise DuplicateEdgeError(sum(r[0] for r in reports), sum(r[1] for r in reports), example)
        return blocks

    def _run(self, chunks: RDD, previous: Broadcast | None, reliable: bool) -> Blocks:
        """Step ``chunks`` into executor storage in one Spark job, and merge what the partitions report."""
        summaries = self.sc.accumulator([], _Summaries())
        if previous is not None:
            self.version += 1
        step = _iteration(self.n, self.damping, previous, summaries, self.run, self.version, reliable)
        new = chunks.mapPartitionsWithIndex(step)
        # Persisting also tells PySpark not to fuse the next iteration's function
        # into this one's (it would recompute every iteration from the start).
        new.persist(StorageLevel.MEMORY_AND_DISK)
        if reliable:
            new.checkpoint()
        else:
            new.localCheckpoint()
        try:
            # Counting on the JVM side stores the partitions without reading them back into Python.
            new._jrdd.count()
            # A retried task reports again: keep one report per partition.
            reports = {index: (values, counts) for index, values, counts in summaries.value}
        finally:
            # PySpark's driver keeps every accumulator it made until it stops: empty this one, or each
            # iteration's reports (arrays of n values per partition) would stay in the driver's memory.
            summaries.value = []
        top = Top.empty(self.n)
        stats = _no_counts()
        for values, counts in reports.values():
            top.merge(*values)
            _add_counts(stats, **counts)
        return Blocks(new, self.sc.broadcast((top.largest, top.arg, top.second)), stats, previous)

    def step(self, blocks: Blocks, reliable: bool = False) -> tuple[Blocks, dict]:
        """One iteration; ``reliable`` also writes the new chunks to the checkpoint directory."""
        new = self._run(blocks.chunks, blocks.top, reliable)
        return new, new.stats

    def edges(self, blocks: Blocks) -> DataFrame:
        """The edge state ``src, dst, similarity, s, r, a, e, run, changed`` of ``blocks``."""
        encoded = self.spark.createDataFrame(
            blocks.loaded().map(lambda chunk: (chunk.to_buffer().to_pybytes(),)), "chunk binary"
        )
        schema = T.StructType(
            [T.StructField("src", self.id_type), T.StructField("dst", self.id_type), *_EDGE_SCHEMA.fields[2:]]
        )
        rows = encoded.mapInArrow(_unpack(self.shared_ids, arrow_id_type(self.id_type)), schema)
        rows = rows.join(self.similarity, ["src", "dst"])
        return rows.select("src", "dst", "similarity", "s", "r", "a", "e", "run", "changed")

    def saved(self, blocks: Blocks, saved: DataFrame) -> Blocks:
        """Go on with the chunks after a save: they are what the save was written from."""
        return blocks

    def release(self, blocks: Blocks, last: bool = False) -> None:
        """Free the chunks once the next ones are computed from them (their files go when the
        iteration after the next one is written); ``last``: the run is over, remove every file.

        Their own Top lives on in the next chunks' RDD (which refers to it until
        it is released in turn); the Top they were computed from is done with.
        """
        if last:
            # Each partition's files are where its element is: the task removing them runs there.
            try:
                blocks.chunks.foreachPartition(_forget(self.run))
            except Exception as error:  # an executor lost since: Spark deletes its files as it stops
                log.warning("could not remove the chunks' files (%s); Spark removes them with its executors", error)
        blocks.chunks.unpersist(blocking=False)
        if blocks.made_with is not None:
            blocks.made_with.destroy()

    def assign(self, blocks: Blocks) -> tuple[DataFrame, bool]:
        """The labels ``id, cluster, exemplar`` of ``blocks`` and whether any vertex decided to be an
        exemplar: :func:`~spark_ap.lib.assign.label_vertices`, its passes over the edges run on the
        chunks where they are (a Spark job each), the driver holding arrays of n values."""
        decided = np.zeros(self.n, dtype=bool)
        for vertices, values in blocks.loaded().map(lambda chunk: (chunk.vertices, chunk.decided())).collect():
            decided[vertices] = values
        exemplar = assign.label_vertices(decided, partial(self._nearest, blocks), partial(self._scores, blocks))
        return assign.labels_frame(self.spark, self.ids, self.id_type, exemplar), exemplar is not None

    def _nearest(self, blocks: Blocks, exemplar: np.ndarray) -> np.ndarray:
        """``nearest`` of :func:`~spark_ap.lib.assign.label_vertices`: each partition merges its
        chunks' :meth:`Chunk.nearest` into a :class:`Top`, the driver merges the partitions'."""
        shared, n = self.sc.broadcast(exemplar), self.n

        def run(chunks: Iterator[Chunk]) -> Iterator[tuple[np.ndarray, ...]]:
            top = Top.empty(n)
            for chunk in chunks:
                top.merge(*chunk.nearest(shared.value[chunk.vertices]))
            yield top.touched()

        top = Top.empty(n)
        for values in blocks.loaded().mapPartitions(run).collect():
            top.merge(*values)
        shared.destroy()
        return np.where(top.largest > -np.inf, top.arg, -1).astype(np.int64)

    def _scores(self, blocks: Blocks, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``scores`` of :func:`~spark_ap.lib.assign.label_vertices`: every target's are in its chunk."""
        shared = self.sc.broadcast(choice)
        score, edges_in = np.zeros(self.n), np.zeros(self.n, dtype=np.int64)
        for vertices, values, counts in blocks.loaded().map(lambda chunk: chunk.scores(shared.value)).collect():
            score[vertices], edges_in[vertices] = values, counts
        shared.destroy()
        return score, edges_in

    def similarities(self) -> DataFrame:
        """The similarities the chunks leave out (the graph, or after a recovery their copy)."""
        return self.similarity

    def final(self, blocks: Blocks) -> DataFrame:
        """The edge state after the last iteration, read from the chunks whenever it is read (they
        stay in executor storage until :meth:`release`): most runs never read it, and rows
        take about three times the chunks' memory."""
        blocks.top.destroy()
        return self.edges(blocks)
