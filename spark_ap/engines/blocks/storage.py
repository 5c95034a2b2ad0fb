"""Where the blocks engine's chunks live between iterations: files in an executor's local directory.

A partition of the engine is a range of target vertices, cut into chunks
(:class:`~spark_ap.engines.blocks.kernel.Chunk`). Its files are in the Spark local
directory of the executor that computed it (``SPARK_LOCAL_DIRS``, which Spark
deletes when the executor stops), under one folder per start of the engine::

    spark-ap-chunks/<run>/<partition>/sources     the partition's sources: vertex numbers and ids
    spark-ap-chunks/<run>/<partition>/<k>.i       chunk k's source of each edge (index into sources)
    spark-ap-chunks/<run>/<partition>/<k>.static  what never changes: jl, s, vertices, diagonal
    spark-ap-chunks/<run>/<partition>/<k>.<v>     the state after iteration v: r, a, e, run, changed

The RDD element of a partition is a :class:`Part`, a few bytes saying where
its files are (and, for the routed exchange, the partition's partial
:class:`~spark_ap.engines.blocks.kernel.Top`, bound for the vertices' owners). A
task memory-maps the files (the Python workers of an executor share them
through the page cache) and writes the next version; Spark runs it on the
executor holding the partition's element, which is the one holding its files
(see :mod:`spark_ap.engines.blocks.exchange` for how that is kept so).

This module imports numpy and pyarrow alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from spark_ap.engines.blocks.kernel import Chunk


class ChunkLostError(RuntimeError):
    """A task did not find the files of its chunks in its executor's local directory."""


@dataclass(frozen=True)
class Sources:
    """A partition's sources, sorted: their vertex numbers (``numbers``, int32) and ``ids`` (long or str).

    Every target of a partition is one of its sources too (its self-edge), so
    these are every vertex the partition's edges touch.
    """

    numbers: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.numbers.size)

    def at(self, vertices: np.ndarray) -> np.ndarray:
        """The positions of the vertex numbers ``vertices`` (all among the sources) in :attr:`numbers`."""
        return np.searchsorted(self.numbers, vertices).astype(np.int32)


@dataclass(frozen=True)
class Part:
    """A partition of the engine's chunks: where its files are, and what it sends on.

    ``payload`` holds the arrays themselves instead of files: a part written to
    the checkpoint directory (a reliable checkpoint), which any executor reads.
    ``outbox`` holds what the partition sends to the owners of its sources in
    the routed exchange (``(owner, bytes)``), or anything else a job hands to
    the next one through the elements.
    """

    run: str  # one per start of the engine, so a recovery never reads an earlier start's files
    index: int
    chunks: int
    version: int  # the iteration the chunks last computed
    outbox: tuple = ()
    payload: dict | None = field(default=None, compare=False)

    @staticmethod
    def root(run: str) -> str:
        """This executor's folder for the chunks of ``run``."""
        local = os.environ.get("SPARK_LOCAL_DIRS", tempfile.gettempdir()).split(",")[0]
        return os.path.join(local, "spark-ap-chunks", run)

    def path(self, name: str) -> str:
        return os.path.join(self.root(self.run), str(self.index), name)

    def sent(self, outbox: tuple) -> Part:
        """This part with ``outbox`` to send (and no payload)."""
        return replace(self, outbox=outbox, payload=None)

    def next(self) -> Part:
        """The part the next iteration writes."""
        return Part(self.run, self.index, self.chunks, self.version + 1)

    # Reading.

    def sources(self) -> Sources:
        if self.payload is not None:
            return self.payload["sources"]
        return Sources(**self._read("sources"))

    def load(self, k: int) -> Chunk:
        """Chunk ``k`` in the state of :attr:`version`."""
        if self.payload is not None:
            return Chunk(**self.payload["chunks"][k])
        i, static, state = (self._read(f"{k}.{name}") for name in ("i", "static", self.version))
        return Chunk(**i, **static, **state)

    def each(self) -> Iterator[Chunk]:
        """Every chunk, one at a time."""
        return (self.load(k) for k in range(self.chunks))

    def _read(self, name: str | int) -> dict[str, np.ndarray]:
        try:
            return read(self.path(str(name)))
        except FileNotFoundError as error:
            raise ChunkLostError(
                f"partition {self.index} of iteration {self.version} is not in this executor's local directory "
                f"({self.root(self.run)}): its executor was lost, or the task ran on another one"
            ) from error

    def whole(self) -> Part:
        """This part with its arrays in a payload, for the checkpoint directory."""
        chunks = [{name: getattr(chunk, name) for name in Chunk.ARRAYS} for chunk in self.each()]
        return replace(self, payload={"sources": self.sources(), "chunks": chunks})

    # Writing.

    def keep_sources(self, sources: Sources) -> None:
        os.makedirs(os.path.dirname(self.path("sources")), exist_ok=True)
        write(self.path("sources"), {"numbers": sources.numbers, "ids": sources.ids})

    def keep_indices(self, k: int, i: np.ndarray) -> None:
        """Chunk ``k``'s sources as indices (written again once a partition knows all its sources)."""
        write(self.path(f"{k}.i"), {"i": i})

    def keep(self, k: int, chunk: Chunk) -> None:
        """Write chunk ``k`` as :attr:`version` (what never changes, once) and remove the version before
        the last: a retried task of this iteration reads the last one."""
        os.makedirs(os.path.dirname(self.path("static")), exist_ok=True)
        if not os.path.exists(self.path(f"{k}.static")):
            write(
                self.path(f"{k}.static"), {name: getattr(chunk, name) for name in ("jl", "s", "vertices", "diagonal")}
            )
        write(self.path(f"{k}.{self.version}"), {name: getattr(chunk, name) for name in Chunk.MESSAGES})
        try:
            os.remove(self.path(f"{k}.{self.version - 2}"))
        except FileNotFoundError:
            pass


def forget(run: str) -> None:
    """Remove this executor's files of ``run``."""
    shutil.rmtree(Part.root(run), ignore_errors=True)


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays as one byte string: a JSON header, then each array's bytes, 8-byte aligned."""
    return b"".join(_encoded_parts(arrays))


def _encoded_parts(arrays: dict[str, np.ndarray]) -> list:
    """The consecutive parts of :func:`encode`'s bytes: to write them without joining them."""
    layout, offset, parts = [], 0, []
    for name, x in arrays.items():
        raw = np.ascontiguousarray(x).view(np.uint8).ravel()
        layout.append((name, x.dtype.str, x.size, offset))
        padding = -raw.size % 8
        parts += [raw.data, bytes(padding)] if padding else [raw.data]
        offset += raw.size + padding
    header = json.dumps(layout).encode()
    return [np.int64(len(header)).tobytes(), header, bytes(-len(header) % 8), *parts]


def decode(buffer: bytes | pa.Buffer) -> dict[str, np.ndarray]:
    """The arrays of :func:`encode`, as read-only views of ``buffer`` (no copy)."""
    size = int(np.frombuffer(buffer, dtype=np.int64, count=1)[0])
    layout = json.loads(bytes(memoryview(buffer)[8 : 8 + size]))
    start = 8 + -(-size // 8) * 8
    return {
        name: np.frombuffer(buffer, dtype=np.dtype(dtype), count=count, offset=start + at)
        for name, dtype, count, at in layout
    }


def write(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write encoded ``arrays`` to ``path`` whole or not at all (a killed task leaves no half file)."""
    partial_path = f"{path}.{os.getpid()}.{uuid.uuid4().hex}"
    with open(partial_path, "wb") as out:
        for part in _encoded_parts(arrays):
            out.write(part)
    os.replace(partial_path, path)


def read(path: str) -> dict[str, np.ndarray]:
    """The arrays :func:`write` wrote, as read-only views of the memory-mapped file."""
    with pa.memory_map(path) as mapped:
        return decode(mapped.read_buffer())
