"""The engines that run Affinity Propagation's iterations; all compute the same messages bit for bit.

* ``graphframes`` (:mod:`spark_ap.engines.graphframes`): the edge state is the
  edge table of a GraphFrame, and each iteration is two rounds of
  ``GraphFrame.aggregateMessages``, one per message;
* ``blocks`` (:mod:`spark_ap.engines.blocks`): the edges as numpy arrays in
  chunks, one Spark job per iteration, only per-vertex values moving;
* ``local`` (:mod:`spark_ap.engines.local`): the blocks engine's numpy step on
  one chunk of every edge, on the driver, for graphs that fit one process.

``auto`` is ``local`` up to :data:`LOCAL_MAX_EDGES` edges, else ``blocks``
(``local`` always in a Spark Connect session).
They keep the conventions of :mod:`spark_ap.engines.rules` and hand over
the edge state :data:`~spark_ap.engines.rules.EDGE_STATE`, so a save of one
engine resumes in another. :func:`spark_ap.run.loop.iterate` drives any of
them through the :class:`Engine` protocol.

This module imports no engine (and no Spark): a worker that unpickles one
engine's functions loads that engine alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

# "auto" runs the local engine up to this many edges (self-edges included): its
# arrays then take a few hundred MB of the driver's memory.
LOCAL_MAX_EDGES = 5_000_000

# Where each engine's class is; imported when a run asks for it.
ENGINES = {
    "local": "spark_ap.engines.local:LocalEngine",
    "blocks": "spark_ap.engines.blocks.engine:BlockEngine",
    "graphframes": "spark_ap.engines.graphframes:GraphFramesEngine",
}


@dataclass(frozen=True)
class RunFacts:
    """What every engine is built with: the facts that hold for the whole run.

    ``graph`` (``src, dst, similarity`` with a self-edge per vertex) is the run's
    persisted graph: the engine owns it from here on and unpersists it once no
    longer read (at :meth:`Engine.finish`, or with the result's ``free`` when
    the result reads it). ``vertices`` (``id, into``: the edges into each
    vertex) saves an engine counting them; it may be lost with an executor,
    so it is read at the first start only.
    """

    spark: SparkSession
    damping: float
    graph: DataFrame
    vertices: DataFrame | None = None
    exchange: str = "auto"
    capacity: int | None = None  # at most this many points per cluster (rules: capacity)
    # Whether the run remembers each iteration's exemplars (spark_ap.run.best.ends_on_best).
    remembers: bool = False


@dataclass
class Finished:
    """What an engine hands over after the last iteration.

    ``state`` is the final edge state, which may be read from what the engine
    keeps until ``free()``; ``labels`` are ``id, cluster, exemplar`` (cluster
    -1 and exemplar null when no vertex became an exemplar, ``found``
    False); ``similarities`` gives ``src, dst, similarity`` as cheaply as the
    engine holds them; ``free()`` frees what the engine keeps for ``state``
    beyond ``state`` itself (the blocks engine's chunks, which it is read
    from), and the graph if the result reads it.
    """

    state: DataFrame
    labels: DataFrame
    found: bool
    similarities: DataFrame
    free: Callable[[], None]


class Engine(Protocol):
    """What :func:`~spark_ap.run.loop.iterate` asks of an engine; ``State`` is the engine's own
    form of the edge state (a DataFrame for graphframes, partitions of chunks for blocks, numpy
    arrays on the driver for local)."""

    #: The name users choose it by (a key of :data:`ENGINES`).
    name: str
    #: Whether ``start`` copies the state into the engine's own layout, sorted by (src, dst): it
    #: is then given the initial state as a plan on the graph rather than computed first, and it
    #: raises :class:`~spark_ap.DuplicateEdgeError` on repeated pairs.
    sorts_edges: bool
    #: Whether the state lives on the driver (``edges`` gives an Arrow table, which a save writes
    #: without a Spark job): the save before the first iteration is then written from it too.
    on_driver: bool
    #: Whether the run reads each iteration's exemplars (``decisions``), to end on the best it saw
    #: if it does not converge (``finish(decided=...)``): :attr:`RunFacts.remembers`.
    remembers_decisions: bool

    def __init__(self, facts: RunFacts) -> None: ...

    def start(self, state: DataFrame, *, initial: bool = False) -> Any:
        """The engine's state from the edge state :data:`~spark_ap.engines.rules.EDGE_STATE`;
        ``initial``: the state before the first iteration (r = a = 0, no decision), whose
        messages the engine may take as zeros rather than read."""

    def restart(self, state: DataFrame) -> Any:
        """As :meth:`start`, from a save, after an iteration failed: whatever the run keeps in
        executor storage (the graph's cached blocks, the engine's files) may be lost."""

    def back(self, state: Any) -> Any:
        """The state to go on with from ``state``, which a ``reliable`` step wrote to the checkpoint
        directory, after a failure lost what executors held (asked only of engines whose state is in
        executors: not ``on_driver``)."""

    def step(self, state: Any, reliable: bool = False) -> tuple[Any, dict]:
        """One damped iteration: the next state and its counts ``exemplars, changed, min_run``;
        ``reliable`` also writes it to the SparkContext's checkpoint directory."""

    def edges(self, state: Any) -> DataFrame | pa.Table:
        """The state as edge-state rows, to save: a DataFrame, or an Arrow table held by the driver."""

    def saved(self, state: Any, saved: DataFrame) -> Any:
        """The state to go on with after ``saved`` (its save, read back) was written."""

    def release(self, state: Any) -> None:
        """Free what a state that the next one replaced holds."""

    def decisions(self, state: Any) -> np.ndarray:
        """The ids of the vertices the iteration that gave ``state`` decided are exemplars, sorted
        (asked only when ``remembers_decisions``)."""

    def finish(self, state: Any, decided: np.ndarray | None = None) -> Finished:
        """The final edge state, its labels and what frees them (the engine assigns its own labels,
        by the rules of :mod:`spark_ap.engines.assign`), from the last iteration's decisions or
        from ``decided``: the ids of the exemplars decided, sorted (:mod:`spark_ap.run.best`)."""


def engine_for(engine: str, edges: int, connect: bool = False) -> str:
    """The engine that runs: ``engine``, with "auto" resolved by the graph's number of edges.

    In a Spark Connect session (``connect``) "auto" is always ``local``, the one
    engine that needs only DataFrames: ``blocks`` needs a SparkContext, and
    ``graphframes`` a GraphFrames plugin on the Connect server.
    """
    if engine != "auto":
        return engine
    return "local" if connect or edges <= LOCAL_MAX_EDGES else "blocks"


def engine_class(name: str) -> type:
    """The class of the engine ``name`` (not "auto")."""
    module, _, attribute = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def make_engine(name: str, facts: RunFacts) -> Engine:
    """The engine ``name`` (not "auto") for a run with ``facts``."""
    return engine_class(name)(facts)
