"""The GraphFrames engine: each iteration is two rounds of ``GraphFrame.aggregateMessages``.

The edge state (:data:`~spark_ap.engines.rules.EDGE_STATE`) is the edge
table of a GraphFrame whose vertices are the points. One iteration is two rounds, one per message:

1. every edge sends a(i,k) + s(i,k) (and k) to its source; each source keeps
   the largest, the target giving it (rules: ties)
   and the second largest. Joined back onto the edges by source, they give
   every r(i,k) = s(i,k) - max_{k' != k} (a(i,k') + s(i,k')).
2. every edge sends max(0, r(i,k)) (r(k,k) on a self-edge) to its target; each
   target adds them up in source order (rules: sums). Joined back by
   target, the total less the edge's own term gives every a(i,k).

Both are folds over the messages a vertex receives (``aggregate`` over the
collected list), not Spark's ``max``/``sum`` aggregates: the top two need the
argmax with its tie rule, and a floating-point sum is only reproducible in a
fixed order. The messages are then bit for bit those of the blocks engine and
of the numpy references, whatever the partitioning.

The new edge state is locally checkpointed every iteration, which keeps the
plan one iteration long; the counts the convergence test reads are observed
while it is computed.
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
from graphframes import GraphFrame
from graphframes.lib import AggregateMessages as Messages
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.compat import frame_from_arrow, to_arrow
from spark_ap.engines import Finished, RunFacts, assign
from spark_ap.engines.assign import arrow_id_type
from spark_ap.engines.blocks.pack import id_values
from spark_ap.lineage import INF, materialize_observing, release, save_reliably
from spark_ap.session import require_graphframes

log = logging.getLogger("spark_ap")


def _decisions() -> dict[str, Column]:
    """On self-edges: the exemplar decision ``e``, for how many iterations it has held (``run``)
    and whether it ``changed``, each from the state's r, a and previous ``e`` (``withColumns``)."""
    self_edge = F.col("src") == F.col("dst")
    decision = (F.col("r") + F.col("a")) > 0
    run = F.when(decision == F.col("e"), F.col("run") + 1).otherwise(1)
    return {
        "run": F.when(self_edge, run).otherwise(F.col("run")),
        "changed": self_edge & (decision != F.col("e")),
        "e": F.when(self_edge, decision).otherwise(F.col("e")),
    }


def _top_two(messages: Column, id_type: str) -> Column:
    """Fold (v, k) messages into (largest v, its k with the smallest k on ties, second largest v).

    Ties and NaN as :mod:`spark_ap.engines.rules` states (rules: ties, NaN): a vertex whose
    only edge is its self-edge sends NaN, which Spark SQL orders above every number.
    """
    start = F.struct(F.lit(-INF).alias("largest"), F.lit(None).cast(id_type).alias("arg"), F.lit(-INF).alias("second"))

    def merge(acc: Column, m: Column) -> Column:
        wins = acc["arg"].isNull() | (m["v"] > acc["largest"]) | ((m["v"] == acc["largest"]) & (m["k"] < acc["arg"]))
        won = F.struct(m["v"].alias("largest"), m["k"].alias("arg"), acc["largest"].alias("second"))
        kept = F.struct(acc["largest"], acc["arg"], F.greatest(acc["second"], m["v"]).alias("second"))
        return F.when(wins, won).otherwise(kept)

    return F.aggregate(F.collect_list(messages), start, merge)


def _own(src: Column, dst: Column, r: Column) -> Column:
    """An edge's term in its target's total: r(k,k) on a self-edge, else max(0, r(i,k))."""
    return F.when(src == dst, r).otherwise(F.greatest(r, F.lit(0.0)))


def _ordered_sum(messages: Column) -> Column:
    """Sum (i, x) messages in the order of i (rules: sums)."""
    return F.aggregate(F.array_sort(F.collect_list(messages)), F.lit(0.0), lambda acc, m: acc + m["x"])


def _capacitated(capacity: int) -> SimpleNamespace:
    """The availability round of capacitated AP (rules: capacity; :func:`~spark_ap.engines.blocks.
    kernel.capacitated` states the update): each target collects its (i, x, loop) messages, and
    from them its total W of r(k,k) and the largest L - 1 positive r(i',k) (ties: the smaller i'),
    in source order, the (L-1)-th largest (``last``, with its source) and the L-th (``beyond``)."""
    edge, src, dst = Messages.edge, F.col("src"), F.col("dst")
    own = _own(src, dst, F.col("r"))
    loop = src == dst
    to_dst = F.struct(
        edge["src"].alias("i"),
        _own(edge["src"], edge["dst"], edge["r"]).alias("x"),
        (edge["src"] == edge["dst"]).alias("loop"),
    )
    inboxes = F.array_sort(F.collect_list(Messages.msg)).alias("inbox")
    if capacity == 1:  # nobody may join another: c(i,k) = 1 has no valid column
        computed = F.when(loop, F.lit(0.0)).otherwise(F.lit(float("-inf")))
        return SimpleNamespace(to_dst=to_dst, total=inboxes, per_target=[], computed=computed)
    inbox = F.col("inbox")  # sorted by source
    # The positive responsibilities of the others, the largest first: (-x, i) in ascending order.
    ranked = F.array_sort(
        F.transform(
            F.filter(inbox, lambda m: (m["x"] > 0) & ~m["loop"]),
            lambda m: F.struct((-m["x"]).alias("nx"), m["i"].alias("i")),
        )
    )
    last = F.get(ranked, capacity - 2)

    def dropped(x: Column, i: Column, is_loop: Column, last: Column) -> Column:
        """A positive term of another point beyond the capacity: after ``last`` in the ranking."""
        return (x > 0) & ~is_loop & last.isNotNull() & (F.struct((-x).alias("nx"), i.alias("i")) > last)

    total = F.aggregate(
        inbox,
        F.lit(0.0),
        lambda acc, m: acc + F.when(dropped(m["x"], m["i"], m["loop"], last), 0.0).otherwise(m["x"]),
    )
    per_target = [
        total.alias("total"),
        last.alias("last"),
        F.coalesce(-last["nx"], F.lit(0.0)).alias("last_x"),
        F.coalesce(-F.get(ranked, capacity - 1)["nx"], F.lit(0.0)).alias("beyond_x"),
    ]
    # The edge's own term is among the kept ones unless it is dropped as its target's total drops it.
    kept = (own > 0) & ~loop & ~dropped(own, src, loop, F.col("last"))
    has_last = F.col("last").isNotNull()
    rest = F.col("total") - F.when(kept | loop | ~has_last, own).otherwise(F.col("last_x"))
    bound = F.when(kept, F.col("beyond_x")).otherwise(F.col("last_x"))
    off = F.when(bound > 0, F.least(rest, -bound)).otherwise(F.least(F.lit(0.0), rest))
    return SimpleNamespace(
        to_dst=to_dst, total=inboxes, per_target=per_target, computed=F.when(loop, rest).otherwise(off)
    )


def _iteration(damping: float, id_type: str, capacity: int | None = None) -> SimpleNamespace:
    """The columns of an iteration, for vertex ids of type ``id_type``; built once per run, as
    building a Column takes Py4J calls."""
    d = damping
    edge, src, dst, top = Messages.edge, F.col("src"), F.col("dst"), F.col("top")
    # r(i,k) = s(i,k) - max_{k' != k} (a(i,k') + s(i,k'))
    best = F.when(dst == top["arg"], top["second"]).otherwise(top["largest"])
    # a(i,k) = min(0, r(k,k) + sum_{i' not in {i,k}} max(0, r(i',k))), a(k,k) = sum_{i' != k} max(0, r(i',k)):
    # each target's total of r(k,k) and the positive r(i',k), less the edge's own term.
    rest = F.col("total") - _own(src, dst, F.col("r"))
    plain = SimpleNamespace(
        to_dst=F.struct(edge["src"].alias("i"), _own(edge["src"], edge["dst"], edge["r"]).alias("x")),
        total=_ordered_sum(Messages.msg).alias("total"),
        per_target=[F.col("total")],
        computed=F.when(src == dst, rest).otherwise(F.least(F.lit(0.0), rest)),
    )
    availability = plain if capacity is None else _capacitated(capacity)
    return SimpleNamespace(
        to_src=F.struct((edge["a"] + edge["s"]).alias("v"), edge["dst"].alias("k")),
        top_two=_top_two(Messages.msg, id_type).alias("top"),
        r=d * F.col("r") + (1 - d) * (F.col("s") - best),
        to_dst=availability.to_dst,
        total=availability.total,
        per_target=availability.per_target,
        a=d * F.col("a") + (1 - d) * availability.computed,
        decisions=_decisions(),
        # What the convergence test reads, over the vertices (self-edges), once decided.
        counts=[
            F.sum(F.when(src == dst, F.col("e").cast("long"))).alias("exemplars"),
            F.sum(F.when(src == dst, F.col("changed").cast("long"))).alias("changed"),
            F.min(F.when(src == dst, F.col("run"))).alias("min_run"),
        ],
    )


# The storage level aggregateMessages keeps its inputs and results at (its default).
STORAGE_LEVEL = StorageLevel.MEMORY_AND_DISK_DESER
# An iteration's parts, timed: the two rounds (the second computes the
# responsibilities it sends), the availabilities with the checkpoint (which counts
# the exemplar decisions on the way).
PHASES = ("sendToSrc", "sendToDst", "availabilities")
# Up to this many vertices, the vertices and their per-iteration aggregates are
# broadcast to the edges rather than the edges shuffled to them.
BROADCAST_VERTICES = 2_000_000


class GraphFramesEngine:
    """Runs iterations on an edge-state DataFrame with ``GraphFrame.aggregateMessages``."""

    name = "graphframes"
    sorts_edges = False  # the edge state stays a DataFrame
    on_driver = False

    def __init__(self, facts: RunFacts) -> None:
        require_graphframes(facts.spark)
        self.spark = facts.spark
        # Each iteration's exemplars are then read by a query of the state's self-edges.
        self.remembers_decisions = facts.remembers
        self.damping = facts.damping
        self.capacity = facts.capacity
        self.graph = facts.graph  # not read: the state holds every similarity
        self.vertices: DataFrame | None = None
        self._kept: DataFrame | None = None
        self.count = 0
        self.broadcast = True
        self.columns: SimpleNamespace | None = None

    def start(self, state: DataFrame, *, initial: bool = False) -> DataFrame:
        """Take the vertices from ``state``'s self-edges (one per vertex); ``state`` is the
        engine's state as it is, ``initial`` or not."""
        if self._kept is not None:
            release(self._kept)
        # A copy of their own: ``state`` is released after the first iteration.
        self._kept = state.filter(F.col("src") == F.col("dst")).select(F.col("src").alias("id")).localCheckpoint()
        self.count = self._kept.count()
        self.broadcast = self.count <= BROADCAST_VERTICES
        self.vertices = self._small(self._kept)
        self.columns = _iteration(self.damping, state.schema["dst"].dataType.simpleString(), self.capacity)
        return state

    def back(self, state: DataFrame) -> DataFrame:
        """As :meth:`start`, from a state a ``reliable`` step wrote to the checkpoint directory, after a
        failure lost what executors held (the vertices are taken from it again)."""
        return self.start(state)

    def restart(self, state: DataFrame) -> DataFrame:
        """As :meth:`start`: the vertices are taken from the save again."""
        return self.start(state)

    def _small(self, df: DataFrame) -> DataFrame:
        """``df`` (one row per vertex) marked for broadcast joins when the vertices are few enough.

        Spark cannot size a checkpoint before reading it, so it would plan a
        sort-merge join and shuffle every edge to meet a few vertices (adaptive
        execution turns it into a broadcast only after the shuffle).
        """
        return F.broadcast(df) if self.broadcast else df

    def step(self, state: DataFrame, reliable: bool = False) -> tuple[DataFrame, dict]:
        """One iteration; ``reliable`` also writes the new state to the checkpoint directory."""
        m = self.columns
        clock = [time.perf_counter()]
        # r(i,k): each source's two largest a(i,k') + s(i,k'), joined back onto its edges.
        tops = GraphFrame(self.vertices, state).aggregateMessages(
            [m.top_two], sendToSrc=[m.to_src], intermediate_storage_level=STORAGE_LEVEL
        )
        clock.append(time.perf_counter())
        with_r = state.join(self._small(tops.withColumnRenamed("id", "src")), "src").withColumn("r", m.r)
        # a(i,k): each target's total of r(k,k) and the positive r(i',k), joined back onto its edges.
        totals = GraphFrame(self.vertices, with_r.drop("top")).aggregateMessages(
            [m.total], sendToDst=[m.to_dst], intermediate_storage_level=STORAGE_LEVEL
        )
        clock.append(time.perf_counter())
        per_target = totals.select(F.col("id").alias("dst"), *m.per_target)
        with_a = with_r.join(self._small(per_target), "dst").withColumn("a", m.a)
        new, counts = materialize_observing(with_a.withColumns(m.decisions).select(*state.columns), m.counts)
        tops.unpersist()  # aggregateMessages leaves its results persisted
        totals.unpersist()
        clock.append(time.perf_counter())
        # Where an iteration's time goes (scripts/benchmark.py reports it).
        log.debug("graphframes phases: %s", dict(zip(PHASES, np.diff(clock).round(4).tolist(), strict=True)))
        return (save_reliably(new) if reliable else new), {key: int(value) for key, value in counts.items()}

    def edges(self, state: DataFrame) -> DataFrame:
        return state

    def saved(self, state: DataFrame, saved: DataFrame) -> DataFrame:
        """Continue from the copy just saved, which frees the local one."""
        release(state)
        return saved

    def release(self, state: DataFrame) -> None:
        release(state)

    def decisions(self, state: DataFrame) -> np.ndarray:
        """The ids of the vertices ``state``'s iteration decided are exemplars, sorted."""
        decided = state.filter((F.col("src") == F.col("dst")) & F.col("e")).select("src")
        return np.sort(id_values(to_arrow(decided).column("src")))

    def finish(self, state: DataFrame, decided: np.ndarray | None = None) -> Finished:
        """The final state and its labels, by the DataFrame functions of :mod:`~spark_ap.engines.assign`,
        from the state's last decisions or ``decided`` (the exemplars' ids)."""
        self.graph.unpersist()
        if self._kept is not None:
            release(self._kept)
        chosen = None
        if decided is not None:
            schema = T.StructType([T.StructField("id", state.schema["src"].dataType, False)])
            table = pa.table({"id": pa.array(decided, arrow_id_type(schema["id"].dataType))})
            chosen = frame_from_arrow(self.spark, table, schema)
        labels, found = assign.label_state(state, self.count, chosen)
        return Finished(state, labels, found, state, free=lambda: None)
