"""How each partition gets the merged :class:`~spark_ap.engines.blocks.kernel.Top` of its sources: two exchanges.

An iteration's task computes, for each source its partition touches, the
partial Top over the partition's edges; the next iteration's task needs the Top
over *all* the source's edges. Maxima are exact in any order, so the partials
can merge anywhere. Where is what sets the two exchanges apart:

* :class:`DriverExchange` ("driver"): each task reports its partials to the
  driver through an accumulator (24 bytes per source it touches), the driver
  merges them into three arrays of n values and broadcasts them; a task takes
  the values of its own sources. The driver's traffic per iteration grows with
  the partitions (sum of their sources) and every executor receives 20 bytes
  per vertex. Cheapest on one machine, where the broadcast stays in the process.
* :class:`RoutedExchange` ("routed"): vertices are range-partitioned by number
  among P *owners* (owner o holds ``[starts[o], starts[o + 1])``). A task puts
  its partials for each owner in its partition's element (``Part.outbox``: the
  owner, and per source its position in the owner's range and the three values,
  24 bytes); one shuffle takes them to the owners, which merge them in arrays of
  n / P values and answer each partition with the merged values of exactly the
  positions it sent (20 bytes each; what a partition asks is GraphX's routing
  table, built as the partition's sources are, once); a second shuffle takes the
  answers back. The driver sees only the counts of exemplar decisions. An
  owner keeps nothing between iterations, so its task may run anywhere.

A partition's chunk files are in one executor (:mod:`~spark_ap.engines.blocks.storage`),
so the task that steps them must run there. An iteration's tasks map the RDD
of the last one's :class:`~spark_ap.engines.blocks.storage.Part` elements, which
Spark runs where each element is stored. The routed exchange's answers arrive
by a shuffle, which alone would let Spark run the task anywhere: the task's RDD
zips the parts (first) with the answers (second), and zipped partitions with no
placement of their own take the first parent's, the executor holding the part
(``RDD.zip`` of PySpark: ``ZippedPartitionsRDD2``, whose parents here are a
cached RDD and a shuffled one). A union of the two would be placed by host only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pyspark import RDD, Accumulator, AccumulatorParam, Broadcast, SparkContext
from pyspark.serializers import BatchedSerializer, CPickleSerializer

from spark_ap.engines.blocks.kernel import Top, runs
from spark_ap.engines.blocks.storage import Sources, decode, encode

# engine="blocks" with exchange="auto" merges on the driver while n x P is at most this:
# about 24 MB of reports per iteration at most and 20 bytes per vertex broadcast.
# See docs/benchmarks.md, "The routed exchange".
DRIVER_MAX = 4_000_000


class Reports(AccumulatorParam):
    """The list the tasks of a job add their reports to, for the driver: per partition its index,
    its decision counts (or None), what the exchange sends through the driver (or None), and the
    number of its sources."""

    def zero(self, value: list) -> list:
        return []

    def addInPlace(self, value1: list, value2: list) -> list:
        return value1 + value2


def choose(exchange: str, n: int, parts: int) -> str:
    """The exchange that runs: ``exchange``, with "auto" resolved by n x P (see :data:`DRIVER_MAX`)."""
    if exchange != "auto":
        return exchange
    return "driver" if n * parts <= DRIVER_MAX else "routed"


@dataclass
class Traffic:
    """What went through the driver for one merge: reports in, broadcast out (bytes, per executor)."""

    into_driver: int = 0
    broadcast: int = 0


def zippable(rdd: RDD) -> RDD:
    """``rdd`` (not computed yet) written one element per batch, so that PySpark zips it with another
    such RDD as it is, without a pass of its own to rewrite both in batches of the same size."""
    rdd._jrdd_deserializer = BatchedSerializer(CPickleSerializer(), 1)
    return rdd


def _taken(reports: Accumulator) -> dict[int, tuple]:
    """The reports of the job just run, one per partition (a retried task reports again), and the
    accumulator emptied: PySpark's driver keeps every accumulator it made until it stops."""
    try:
        return {index: tuple(rest) for index, *rest in reports.value}
    finally:
        reports.value = []


class DriverExchange:
    """Partials to the driver, merged there, broadcast back: see the module docstring."""

    name = "driver"

    def __init__(self, sc: SparkContext, n: int) -> None:
        self.sc, self.n = sc, n
        self.traffic: list[Traffic] = []
        self.values_per_task = n  # every task reads the broadcast arrays whole

    def run(self, parts: RDD, reports: Accumulator) -> tuple[Broadcast, dict[int, tuple]]:
        """Compute ``parts`` in one Spark job; merge the partials they report and broadcast them."""
        # Counting on the JVM side stores the partitions without reading them back into Python.
        parts._jrdd.count()
        got = _taken(reports)
        top, size = Top.empty(self.n), 0
        for _, (numbers, *values), _ in got.values():
            top.merge(numbers, *values)
            size += numbers.nbytes + sum(v.nbytes for v in values)
        shared = self.sc.broadcast(top.values())
        self.traffic.append(Traffic(size, sum(v.nbytes for v in top.values())))
        return shared, got

    def inputs(self, parts: RDD, delivery: Broadcast | None) -> RDD:
        """``(part, inbox)`` per partition; the inbox is in the broadcast."""
        return parts.map(lambda part: (part, None), preservesPartitioning=True)

    def wire(self, delivery: Broadcast | None) -> DriverWire:
        return DriverWire(delivery)

    def release(self, delivery: Broadcast | None) -> None:
        if delivery is not None:
            delivery.destroy()


@dataclass(frozen=True)
class DriverWire:
    """The driver exchange as a task sees it."""

    shared: Broadcast | None

    def top(self, inbox: None, sources: Sources) -> Top:
        return Top(*self.shared.value).take(sources.numbers)

    def send(self, index: int, sources: Sources, top: Top) -> tuple[tuple, tuple]:
        """Nothing in the element; the partials to the driver."""
        return (), (sources.numbers, *top.values())


class RoutedExchange:
    """Partials to the owners of their sources by one shuffle, merged values back by another: see
    the module docstring."""

    name = "routed"

    def __init__(self, sc: SparkContext, n: int, parts: int) -> None:
        self.sc, self.n, self.parts = sc, n, parts
        self.traffic: list[Traffic] = []
        self.values_per_task = -(-n // parts)  # an owner's range

    def run(self, parts: RDD, reports: Accumulator) -> tuple[RDD, dict[int, tuple]]:
        """Compute ``parts`` and their partials' way to the owners and back, short of the last step.

        One Spark job of two stages: the parts (with the shuffle of their partials to the owners),
        then the owners' merge (with the shuffle of the answers). The answers are read by the next
        job, which zips them with the parts. Spark's public actions would add a third stage that
        reads the answers only to count them, so the job runs the map stages alone
        (``SparkContext.submitMapStage``, which adaptive query execution uses), and the parts are
        then checkpointed as an action would have checkpointed them.
        """
        starts = owner_starts(self.n, self.parts)
        delivery = (
            parts.flatMap(_outbox)
            .partitionBy(self.parts, _identity)
            .mapPartitionsWithIndex(_merged(starts))
            .partitionBy(self.parts, _identity)
        )
        # delivery: the values of a shuffled RDD (PythonRDD.valueOfPair) over the answers' ShuffledRDD.
        answers = delivery._jrdd.rdd().dependencies().head().rdd().dependencies().head()
        self.sc._jsc.sc().submitMapStage(answers).get()
        parts._jrdd.rdd().doCheckpoint()
        self.traffic.append(Traffic())
        return delivery, _taken(reports)

    def inputs(self, parts: RDD, delivery: RDD) -> RDD:
        """``(part, inbox)`` per partition, on the executor holding the part (see the module docstring)."""
        return parts.zip(zippable(delivery.mapPartitions(_listed, preservesPartitioning=True)))

    def wire(self, delivery: RDD | None) -> RoutedWire:
        return RoutedWire(owner_starts(self.n, self.parts))

    def release(self, delivery: RDD | None) -> None:
        """Nothing: Spark cleans the shuffles up once their RDDs are unreachable."""


@dataclass(frozen=True)
class RoutedWire:
    """The routed exchange as a task sees it: the owners' ranges."""

    starts: np.ndarray

    def top(self, inbox: list, sources: Sources) -> Top:
        """The merged values of ``sources``, from the owners' answers (by owner: in source order)."""
        answers = [decode(data) for _, (_, data) in sorted(inbox, key=lambda record: record[1][0])]
        if not answers:  # a partition without edges
            return Top.empty(0)
        top = Top(*(np.concatenate([a[name] for a in answers]) for name in ("largest", "arg", "second")))
        if top.largest.size != len(sources):
            raise RuntimeError(f"{top.largest.size} values answered for {len(sources)} sources")
        return top

    def send(self, index: int, sources: Sources, top: Top) -> tuple[tuple, None]:
        """Per owner, ``(owner, bytes)``: this partition, the sources' positions in the owner's range
        and their values."""
        owner = np.searchsorted(self.starts, sources.numbers, side="right") - 1
        pieces = []
        for a, b in runs(owner):
            o = int(owner[a])
            at = (sources.numbers[a:b] - self.starts[o]).astype(np.int32)
            largest, arg, second = (v[a:b] for v in top.values())
            data = encode({"index": np.array([index]), "at": at, "largest": largest, "arg": arg, "second": second})
            pieces.append((o, data))
        return tuple(pieces), None


def owner_starts(n: int, parts: int) -> np.ndarray:
    """Where each owner's range of vertex numbers starts (and, last, n): about n / P each."""
    return (np.arange(parts + 1, dtype=np.int64) * n + parts - 1) // parts


def _identity(key: int) -> int:
    return key


def _listed(records) -> list:
    """A partition's records as one element (a zip pairs elements one with one)."""
    return [list(records)]


def _outbox(part) -> tuple:
    return part.outbox


def _merged(starts: np.ndarray):
    """The function an owner runs: merge the partials it got, answer each partition."""

    def run(owner: int, pieces: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, tuple[int, bytes]]]:
        top = Top.empty(int(starts[owner + 1] - starts[owner]))
        asked = []
        for _, data in pieces:
            piece = decode(data)
            top.merge(piece["at"], piece["largest"], piece["arg"], piece["second"])
            asked.append((int(piece["index"][0]), piece["at"]))
        for index, at in asked:
            largest, arg, second = top.take(at).values()
            yield index, (owner, encode({"largest": largest, "arg": arg, "second": second}))

    return run
