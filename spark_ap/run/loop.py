"""The message-passing loop of Affinity Propagation, whichever engine runs the iterations.

The state the engines hand over, when it is saved and at the end, is one row
per edge (self-edges included)::

    src, dst, similarity, s, r, a, e, run, changed

``similarity`` is the input value, ``s`` the value the messages use (with the
degeneracy noise when it is on), ``r`` and ``a`` the responsibility and
availability carried by the edge. ``e`` and ``run`` are read on self-edges only:
``e`` is the vertex's exemplar decision r(k,k) + a(k,k) > 0 and ``run`` how many
iterations in a row it has held, which is all scikit-learn's convergence window
needs to know; ``changed`` says whether the decision changed in the last iteration.

Three engines compute the same states bit for bit:

* ``graphframes`` (:mod:`spark_ap.engines.graphframes`): the edge state is the edge
  table of a GraphFrame, and each iteration is two rounds of
  ``GraphFrame.aggregateMessages``, one per message;
* ``blocks`` (:mod:`spark_ap.engines.blocks`): the edges as numpy arrays in chunks,
  one Spark job per iteration, only per-vertex values moving;
* ``local`` (:mod:`spark_ap.engines.local`): the blocks engine's numpy step on one
  chunk of every edge, on the driver, for graphs that fit one process.

``auto`` is ``local`` up to :data:`~spark_ap.engines.local.LOCAL_MAX_EDGES` edges,
else ``blocks``.

Each engine has ``start(state, graph)``, ``step(current, reliable)``,
``edges(current)``, ``saved(current, saved)``, ``release(current)``,
``assign(current)`` and ``final(current)``; :func:`iterate` drives any of them. With a
:class:`~spark_ap.run.state.StateStore` the state is saved durably every
``checkpoint_interval`` iterations: a rerun resumes from the newest save, and a
failed iteration is retried from it. Saves are engine-neutral edge states, so a
save of one engine resumes in the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import pyarrow as pa
from py4j.protocol import Py4JError
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_ap.engines import local
from spark_ap.engines.blocks.engine import BlockEngine
from spark_ap.engines.blocks.storage import ChunkLostError
from spark_ap.engines.graphframes import GraphFramesEngine
from spark_ap.engines.lineage import materialize
from spark_ap.errors import InvalidParamError, reason
from spark_ap.prepare.noise import sklearn_normals, standard_normal, with_noise
from spark_ap.run.state import StateStore

log = logging.getLogger("spark_ap")

# How many failed iterations a run with a state store retries from its newest save.
RECOVERIES = 3
# What a failed Spark job raises on the driver: the JVM's errors through Py4J (a lost executor,
# a task failed too often; an executor's Python error arrives as a PythonException, which is a
# PySparkException) and a broken gateway. The driver's own Python errors (a bug) are not retried.
RETRIED = (Py4JError, PySparkException, ChunkLostError, ConnectionError)


@dataclass(frozen=True)
class Settings:
    """The parameters the loop reads; see :class:`spark_ap.AffinityPropagation`."""

    damping: float = 0.5
    max_iter: int = 200
    convergence_iter: int = 15
    checkpoint_interval: int = 10
    checkpoint_kind: str = "auto"
    noise: str = "edge"
    seed: int = 0
    engine: str = "blocks"
    exchange: str = "auto"


@dataclass
class Outcome:
    """The state after the last iteration and what happened on the way."""

    state: DataFrame
    n_iter: int
    converged: bool
    history: list[tuple[int, int, int]] = field(default_factory=list)
    resumed_from: int | None = None
    # The engine's labels of the final state (id, cluster, exemplar) and whether any vertex
    # became an exemplar; None: the DataFrame functions of spark_ap.engines.assign assign them.
    labels: tuple[DataFrame, bool] | None = None
    # Frees what the engine keeps for ``state`` (the blocks engine's chunks, which it is read from).
    free: Callable[[], None] | None = None
    # src, dst, similarity, cheaper to read than ``state`` (None: read ``state``).
    similarities: DataFrame | None = None


def initial_state(graph: DataFrame, settings: Settings) -> DataFrame:
    """Edge state before the first iteration: r = a = 0, no exemplar decided."""
    s = F.col("similarity")
    if settings.noise == "edge":
        s = with_noise(s, standard_normal(settings.seed, F.col("src"), F.col("dst")))
    elif settings.noise == "sklearn":
        graph = graph.join(sklearn_normals(graph, settings.seed), ["src", "dst"])
        s = with_noise(s, F.col("z"))
    return graph.select(
        "src",
        "dst",
        "similarity",
        s.alias("s"),
        F.lit(0.0).alias("r"),
        F.lit(0.0).alias("a"),
        F.lit(False).alias("e"),
        F.lit(0).alias("run"),
        F.lit(False).alias("changed"),
    )


def reliable_checkpoints(spark: SparkSession, settings: Settings) -> bool:
    """Whether states are also written to the SparkContext's checkpoint directory.

    'auto' does so when a directory is set; 'reliable' requires one.
    """
    has_dir = spark.sparkContext.getCheckpointDir() is not None
    if settings.checkpoint_kind == "reliable" and not has_dir:
        raise InvalidParamError(
            "checkpointKind='reliable' needs a checkpoint directory: call "
            "spark.sparkContext.setCheckpointDir(path) first, or use 'auto' or 'local'."
        )
    return settings.checkpoint_kind != "local" and has_dir and settings.checkpoint_interval > 0


def _converged(t: int, stats: dict | None, settings: Settings) -> bool:
    """scikit-learn's test: more than ``convergence_iter`` iterations, no decision changed in
    the last ``convergence_iter`` of them, and at least one exemplar."""
    return (
        stats is not None
        and t > settings.convergence_iter
        and stats["min_run"] >= settings.convergence_iter
        and stats["exemplars"] > 0
    )


def engine_for(engine: str, edges: int) -> str:
    """The engine that runs: ``engine``, with "auto" resolved by the graph's number of edges."""
    if engine != "auto":
        return engine
    return "local" if edges <= local.LOCAL_MAX_EDGES else "blocks"


class Engine(Protocol):
    """What :func:`iterate` asks of an engine; ``State`` is the engine's own form of the edge state
    (a DataFrame for graphframes and blocks, numpy arrays on the driver for local).

    ``engine="name"`` is built by :func:`make_engine`; every engine computes the
    same messages bit for bit (the parity tests run each one).
    """

    #: Whether ``start`` copies the state into the engine's own layout, sorted by (src, dst): it
    #: is then given the initial state as a plan on the graph rather than computed first, and it
    #: raises :class:`~spark_ap.DuplicateEdgeError` on repeated pairs (see :func:`iterate`).
    sorts_edges: bool
    #: Whether the state lives on the driver (``edges`` gives an Arrow table, which a save writes
    #: without a Spark job): the save before the first iteration is then written from it too.
    on_driver: bool

    def start(
        self,
        state: DataFrame,
        graph: DataFrame | None = None,
        *,
        initial: bool = False,
        vertices: DataFrame | None = None,
    ) -> Any:
        """The engine's state from the edge state ``src, dst, similarity, s, r, a, e, run, changed``;
        ``initial``: the state before the first iteration (r = a = 0, no decision), whose
        messages the engine may take as zeros rather than read; ``vertices``: ``id, into``, the
        edges into each vertex, for an engine that would otherwise count them."""

    def step(self, state: Any, reliable: bool = False) -> tuple[Any, dict]:
        """One damped iteration: the next state and its counts ``exemplars, changed, min_run``."""

    def edges(self, state: Any) -> DataFrame | pa.Table:
        """The state as edge-state rows, to save: a DataFrame, or an Arrow table held by the driver."""

    def saved(self, state: Any, saved: DataFrame) -> Any:
        """The state to go on with after ``saved`` (its save, read back) was written."""

    def release(self, state: Any, last: bool = False) -> None:
        """Free what a state that is no longer needed holds; ``last``: the run is over, free what
        the engine keeps for the whole run too."""

    def assign(self, state: Any) -> tuple[DataFrame, bool] | None:
        """The labels ``id, cluster, exemplar`` of the state after the last iteration and whether any
        vertex became an exemplar, or None to leave them to :mod:`spark_ap.engines.assign`'s DataFrame
        functions on the final edge state."""

    def final(self, state: Any) -> DataFrame:
        """The edge state after the last iteration; it may be read from what ``state`` holds
        until ``release(state)``."""

    def similarities(self) -> DataFrame | None:
        """``src, dst, similarity`` as the engine holds them in Spark, when that is cheaper to read
        than the final state (which is computed after a lost executor, so holds only what survived);
        None: read the final state."""


ENGINES = {"graphframes": GraphFramesEngine, "local": local.LocalEngine, "blocks": BlockEngine}


def make_engine(spark: SparkSession, engine: str, settings: Settings) -> Engine:
    """The engine named ``engine`` (not "auto") for a run with ``settings``."""
    if engine == "blocks":
        return BlockEngine(spark, settings.damping, settings.exchange)
    return ENGINES[engine](spark, settings.damping)


def iterate(
    graph: DataFrame,
    settings: Settings,
    store: StateStore | None = None,
    edges: int = 0,
    vertices: DataFrame | None = None,
) -> Outcome:
    """Run the loop until scikit-learn's convergence test passes or ``max_iter`` is reached.

    With a ``store``, the state is saved there before the first iteration and
    every ``checkpoint_interval`` iterations; a run that finds a save of its
    own starts after it, and a Spark job that fails mid-run (an executor lost
    with the local checkpoints it held) is retried from the newest save, up to
    :data:`RECOVERIES` times. The saves are exact, so either way the result is
    the uninterrupted run's.

    An engine that ``sorts_edges`` refuses repeated (src, dst) pairs as it
    starts, raising :class:`~spark_ap.DuplicateEdgeError`; with the others the
    caller checks ``graph`` first (:func:`~spark_ap.prepare.validation.refuse_duplicates`).

    ``vertices`` (``id, into``, see :func:`~spark_ap.prepare.preference.vertex_table`) saves the
    blocks engine counting the edges into each vertex; it is read as the engine starts.
    """
    spark = graph.sparkSession
    sc = spark.sparkContext
    name = engine_for(settings.engine, edges)
    engine = make_engine(spark, name, settings)
    durable = store is None and reliable_checkpoints(spark, settings)
    saved = store.load() if store is not None else None
    resumed_from = None if saved is None else saved.iteration
    if saved is None:
        state = initial_state(graph, settings)
        if not engine.sorts_edges:
            state = materialize(state)  # the first iteration's jobs each read it
        current = engine.start(state, graph, initial=True, vertices=vertices)
        if store is not None:
            # Saved once the engine has started, which refuses repeated pairs: a save of an
            # input that cannot be clustered would stand in the way of the corrected input's run.
            first = engine.edges(current) if engine.on_driver else state
            current = engine.saved(current, store.save(0, [], None, first))
        t, history, stats = 0, [], None
    else:
        log.info("resuming from the state of iteration %d saved in %s", saved.iteration, store.path)
        current = engine.start(saved.state, graph, vertices=vertices)
        t, history, stats = saved.iteration, list(saved.history), saved.last
    log.info("iterating with the %s engine", name)  # the set-up ends here
    recoveries = 0
    try:
        while not _converged(t, stats, settings) and t < settings.max_iter:
            sc.setJobDescription(f"affinity propagation: iteration {t + 1}/{settings.max_iter}")
            try:
                due = settings.checkpoint_interval > 0 and (t + 1) % settings.checkpoint_interval == 0
                new, new_stats = engine.step(current, reliable=durable and due)
                row = (t + 1, new_stats["exemplars"], new_stats["changed"])
                if store is not None and due:
                    new = engine.saved(new, store.save(t + 1, [*history, row], new_stats, engine.edges(new)))
            except AnalysisException:
                raise  # a wrong plan fails the same way every time
            except RETRIED as error:
                # A failed Spark job, most often an executor lost together with the
                # local checkpoints or chunk files it held: the save is intact.
                if store is None or recoveries >= RECOVERIES:
                    raise
                recoveries += 1
                back = store.load()
                log.warning(
                    "iteration %d failed (%s); retrying from the state of iteration %d (recovery %d of %d)",
                    t + 1,
                    reason(error),
                    back.iteration,
                    recoveries,
                    RECOVERIES,
                )
                t, history, stats = back.iteration, list(back.history), back.last
                current = engine.start(back.state)  # the graph's blocks may be lost too
                continue
            engine.release(current)
            t, stats, current = t + 1, new_stats, new
            history.append(row)
            log.info("iteration %d/%d: %d exemplars, %d changed", t, settings.max_iter, *row[1:])
    finally:
        sc.setJobDescription(None)
    converged = _converged(t, stats, settings)
    labels = engine.assign(current)
    free = partial(engine.release, current, last=True)
    final = engine.final(current)
    return Outcome(final, t, converged, history, resumed_from, labels, free, engine.similarities())
