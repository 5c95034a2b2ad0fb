"""The message-passing loop of Affinity Propagation, whichever engine runs the iterations.

:func:`iterate` drives any :class:`~spark_ap.engines.Engine`: it starts it
(from the initial edge state, or from the newest save of the same run), steps
it until scikit-learn's convergence test passes or ``max_iter`` is reached,
saves the state every ``checkpoint_interval`` iterations when there is a
:class:`~spark_ap.run.state.StateStore`, and retries a failed iteration from
the newest save. Saves are engine-neutral edge states
(:data:`~spark_ap.engines.rules.EDGE_STATE`), so a save of one engine resumes
in another.

A run that ends without converging ends on the best decisions it saw rather than on its last
iteration's (``endOn="best"``, :mod:`spark_ap.run.best`) when its engine remembers them (its graph
fits the driver): every iteration's exemplars are remembered, a save keeps them with the
iteration's counts so that a resumed run ends as the uninterrupted one, and at the end the best
are found on the driver, the same way for every engine, which labels its points from them
(``finish(decided=...)``). A converged run is untouched. The outcome says which decisions it
ended on (``ended_on``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from py4j.protocol import Py4JError
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_ap.compat import checkpoint_dir, describe_jobs
from spark_ap.engines import Engine
from spark_ap.engines.blocks.storage import ChunkLostError
from spark_ap.errors import InvalidParamError, reason
from spark_ap.lineage import materialize, release
from spark_ap.prepare.noise import sklearn_normals, standard_normal, with_noise
from spark_ap.run.best import Decisions, best_seen, ends_on_best
from spark_ap.run.state import Saved, StateStore

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
    capacity: int | None = None  # maxClusterSize; None: plain AP
    end_on: str = "best"  # endOn: what a run that does not converge ends on (spark_ap.run.best)


@dataclass
class Progress:
    """Where the loop is: iterations done, their ``exemplars, changed`` rows, the last counts."""

    t: int = 0
    history: list[tuple[int, int, int]] = field(default_factory=list)
    stats: dict | None = None  # exemplars, changed, min_run of iteration t; None before the first

    @classmethod
    def of(cls, saved: Saved) -> Progress:
        return cls(saved.iteration, list(saved.history), saved.last)

    def converged(self, settings: Settings) -> bool:
        """scikit-learn's test: more than ``convergence_iter`` iterations, no decision changed in
        the last ``convergence_iter`` of them, and at least one exemplar."""
        return (
            self.stats is not None
            and self.t > settings.convergence_iter
            and self.stats["min_run"] >= settings.convergence_iter
            and self.stats["exemplars"] > 0
        )

    def copy(self) -> Progress:
        """This progress, recorded apart from this object's."""
        return Progress(self.t, list(self.history), self.stats)

    def done(self, settings: Settings) -> bool:
        return self.converged(settings) or self.t >= settings.max_iter

    def record(self, t: int, stats: dict) -> tuple[int, int, int]:
        """Iteration ``t`` done with the decision counts ``stats``; its history row."""
        row = (t, stats["exemplars"], stats["changed"])
        self.t, self.stats = t, stats
        self.history.append(row)
        return row


def iterate_on_driver(
    i: np.ndarray, j: np.ndarray, s: np.ndarray, settings: Settings
) -> tuple[np.ndarray | None, Progress, str, int]:
    """AP on the edges ``i -> j`` (numbers 0..n-1, a self-edge per point, sorted by (i, j), ``s``
    with the preferences and the noise), as :func:`iterate` runs the local engine, for callers that
    hold the edges on the driver: each point's exemplar (None: no exemplar; with a capacity placed,
    -1 for a point that could not be), the progress, what the run ended on ("converged", "best",
    "last") and the iteration of those decisions (see the module's documentation)."""
    from spark_ap.engines import local
    from spark_ap.engines.blocks.kernel import Chunk
    from spark_ap.engines.capacity import best_decisions, decisions_net

    chunk = Chunk.from_arrays({"i": i, "j": j, "s": s})
    progress, decisions = Progress(), Decisions()
    remembers = ends_on_best(settings.end_on, i.size)
    while not progress.done(settings):
        progress.record(progress.t + 1, local.step(chunk, settings.damping, settings.capacity))
        if remembers:
            decisions.remember(progress.t, np.flatnonzero(chunk.e))
    if remembers and not progress.converged(settings):
        found = best_decisions(chunk.i, chunk.vertices[chunk.jl], chunk.s, decisions.candidates(), settings.capacity)
        if found is not None:
            return found[2], progress, "best", found[0]
    ended_on = "converged" if progress.converged(settings) else "last"
    exemplar, _ = decisions_net(chunk.i, chunk.vertices[chunk.jl], chunk.s, chunk.decided(), settings.capacity)
    return exemplar, progress, ended_on, progress.t


@dataclass
class Outcome:
    """The state after the last iteration, its labels, and what happened on the way."""

    state: DataFrame  # the final edge state
    labels: DataFrame  # id, cluster, exemplar
    found: bool  # whether any vertex became an exemplar
    similarities: DataFrame  # src, dst, similarity, as cheaply as they can be read
    free: Callable[[], None]  # frees what the engine keeps for ``state``
    n_iter: int
    converged: bool
    history: list[tuple[int, int, int]]
    resumed_from: int | None = None
    # What the labels were read from: "converged", "best" (a run that did not converge, on the best
    # decisions it saw) or "last" (on its last iteration's), and the iteration of those decisions.
    ended_on: str = "converged"
    ended_at: int | None = None

    def release(self) -> None:
        """Free what the run keeps in executor storage: the labels, the final state, the engine's."""
        self.labels.unpersist()
        release(self.state)
        self.state.unpersist()
        self.free()


def normals(graph: DataFrame, settings: Settings) -> tuple[DataFrame, Column | None]:
    """``graph`` (with scikit-learn's normals joined where they are drawn) and the standard normal
    each edge's degeneracy noise is scaled from; None without noise (``noise="none"``)."""
    if settings.noise == "edge":
        return graph, standard_normal(settings.seed, F.col("src"), F.col("dst"))
    if settings.noise == "sklearn":
        return graph.join(sklearn_normals(graph, settings.seed), ["src", "dst"]), F.col("z")
    return graph, None


def initial_state(graph: DataFrame, settings: Settings) -> DataFrame:
    """Edge state before the first iteration: r = a = 0, no exemplar decided."""
    graph, z = normals(graph, settings)
    s = F.col("similarity") if z is None else with_noise(F.col("similarity"), z)
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
    has_dir = checkpoint_dir(spark) is not None
    if settings.checkpoint_kind == "reliable" and not has_dir:
        raise InvalidParamError(
            "checkpointKind='reliable' needs a checkpoint directory: call "
            "spark.sparkContext.setCheckpointDir(path) first (spark.checkpoint.dir on Spark Connect), "
            "or use 'auto' or 'local'."
        )
    return settings.checkpoint_kind != "local" and has_dir and settings.checkpoint_interval > 0


def iterate(engine: Engine, graph: DataFrame, settings: Settings, store: StateStore | None = None) -> Outcome:
    """Run ``engine`` on ``graph`` until scikit-learn's convergence test passes or ``max_iter`` is reached.

    With a ``store``, the state is saved there before the first iteration and
    every ``checkpoint_interval`` iterations; a run that finds a save of its
    own starts after it, and a Spark job that fails mid-run (an executor lost
    with the local checkpoints it held) is retried from the newest save, up to
    :data:`RECOVERIES` times. The saves are exact, so either way the result is
    the uninterrupted run's.

    An engine that ``sorts_edges`` refuses repeated (src, dst) pairs as it
    starts, raising :class:`~spark_ap.DuplicateEdgeError`; with the others the
    caller checks ``graph`` first (:func:`~spark_ap.prepare.validation.refuse_duplicates`).
    """
    spark = graph.sparkSession
    durable = store is None and reliable_checkpoints(spark, settings)
    current, progress, resumed_from = _begin(engine, graph, settings, store)
    log.info("iterating with the %s engine", engine.name)  # the set-up ends here
    recoveries = 0
    # Without a store, what a failed iteration goes back to: the newest state the engine wrote to
    # the checkpoint directory (None: the start), when there is one and executors hold the state.
    goes_back = durable and not engine.on_driver
    kept: Kept | None = None
    end = None
    # The engine remembers each iteration's exemplars when the run ends on its best (spark_ap.run.best).
    remembers = engine.remembers_decisions
    decisions = Decisions.of(progress.stats)
    ended_on, ended_at = "converged", None
    while end is None:
        t = progress.t + 1
        try:
            if progress.done(settings):
                ended_at = progress.t
                if progress.converged(settings):
                    chosen = None
                else:
                    candidates = decisions.candidates() if remembers else []
                    best = best_seen(engine.edges(current), candidates, settings.capacity) if candidates else None
                    ended_on, chosen = ("last", None) if best is None else ("best", best[1])
                    ended_at = progress.t if best is None else best[0]
                # The labels are read from the engine's state where the executors hold it, so a
                # lost executor fails them as it fails an iteration, and is recovered the same way.
                with describe_jobs(spark, "affinity propagation: the final assignment"):
                    end = engine.finish(current) if chosen is None else engine.finish(current, decided=chosen)
                continue
            due = settings.checkpoint_interval > 0 and t % settings.checkpoint_interval == 0
            with describe_jobs(spark, f"affinity propagation: iteration {t}/{settings.max_iter}"):
                new, stats = engine.step(current, reliable=durable and due)
                decided = engine.decisions(new) if remembers else None
                if store is not None and due:
                    row = (t, stats["exemplars"], stats["changed"])
                    kept = stats if decided is None else {**stats, "decisions": decisions.saved(t, decided)}
                    new = engine.saved(new, store.save(t, [*progress.history, row], kept, engine.edges(new)))
        except AnalysisException:
            raise  # a wrong plan fails the same way every time
        except RETRIED as error:
            # A failed Spark job, most often an executor lost together with the
            # local checkpoints or chunk files it held: the save is intact.
            what = "the final assignment" if progress.done(settings) else f"iteration {t}"
            if (store is None and not goes_back) or recoveries >= RECOVERIES:
                if store is None and not goes_back and not engine.on_driver:
                    _say_what_would_survive(error, what)
                raise
            recoveries += 1
            if store is None:
                current, progress, decisions = _go_back(
                    engine, kept, what, error, recoveries, graph, settings, progress.t
                )
                continue
            current, progress = _recover(engine, store, what, error, recoveries, lambda: _initial(graph, settings))
            decisions = Decisions.of(progress.stats)
            continue
        engine.release(current)
        current = new
        row = progress.record(t, stats)
        if decided is not None:
            decisions.remember(t, decided)
        if goes_back and due:  # ``current`` is in the checkpoint directory
            kept = Kept.of(current, progress, decisions)
        log.info("iteration %d/%d: %d exemplars, %d changed", t, settings.max_iter, *row[1:])
    return Outcome(
        state=end.state,
        labels=end.labels,
        found=end.found,
        similarities=end.similarities,
        free=end.free,
        n_iter=progress.t,
        converged=progress.converged(settings),
        history=progress.history,
        resumed_from=resumed_from,
        ended_on=ended_on,
        ended_at=ended_at,
    )


def _begin(
    engine: Engine, graph: DataFrame, settings: Settings, store: StateStore | None
) -> tuple[object, Progress, int | None]:
    """The engine started from the store's newest save of this run, or from the initial state (saved
    first when there is a store): its state, the progress so far, the iteration resumed from."""
    saved = store.load() if store is not None else None
    if saved is not None:
        log.info("resuming from the state of iteration %d saved in %s", saved.iteration, store.path)
        return engine.start(saved.state), Progress.of(saved), saved.iteration
    state = _initial(graph, settings, engine.sorts_edges)
    current = engine.start(state, initial=True)
    if store is not None:
        # Saved once the engine has started, which refuses repeated pairs: a save of an
        # input that cannot be clustered would stand in the way of the corrected input's run.
        first = engine.edges(current) if engine.on_driver else state
        current = engine.saved(current, store.save(0, [], None, first))
    return current, Progress(), None


def _initial(graph: DataFrame, settings: Settings, sorts_edges: bool = False) -> DataFrame:
    """The initial edge state, materialized unless the engine sorts (and so reads) it once itself:
    the first iteration's jobs each read it."""
    state = initial_state(graph, settings)
    return state if sorts_edges else materialize(state)


@dataclass(frozen=True)
class Kept:
    """A state in the checkpoint directory, with the progress and the decisions remembered then."""

    state: object
    progress: Progress
    decisions: Decisions

    @classmethod
    def of(cls, state: object, progress: Progress, decisions: Decisions) -> Kept:
        return cls(state, progress.copy(), decisions.copy())


def _go_back(
    engine: Engine,
    kept: Kept | None,
    what: str,
    error: Exception,
    recoveries: int,
    graph: DataFrame,
    settings: Settings,
    reached: int,
) -> tuple[object, Progress, Decisions]:
    """A run without a store, after ``what`` failed with ``error``: the engine goes on from the newest
    state it wrote to the checkpoint directory (``kept``), or from the start when there is none yet;
    what the executors held may be lost. Says how many of the ``reached`` iterations done are repeated."""
    done = kept.progress.t if kept is not None else 0
    log.warning(
        "%s failed (%s); retrying from %s, repeating %d iterations (recovery %d of %d)",
        what,
        reason(error),
        "the start" if kept is None else f"the reliable checkpoint of iteration {done}",
        reached - done,
        recoveries,
        RECOVERIES,
    )
    if kept is None:
        return engine.start(_initial(graph, settings, engine.sorts_edges), initial=True), Progress(), Decisions()
    return engine.back(kept.state), kept.progress.copy(), kept.decisions.copy()


def _say_what_would_survive(error: Exception, what: str) -> None:
    """Log, and add to ``error``, what to set so that a run survives a lost executor: a run without a
    store or a checkpoint directory holds its state only in the executors."""
    hint = (
        f"{what} failed and the run has no copy of its state outside the executors: set a checkpoint "
        "directory (spark.sparkContext.setCheckpointDir(path), spark.checkpoint.dir on Spark Connect; "
        "the job's --checkpoint-dir) with checkpointInterval >= 1, or stateDir, so that a lost executor "
        "costs at most checkpointInterval iterations, not the run"
    )
    log.error(hint)
    error.add_note(hint)


def _recover(
    engine: Engine, store: StateStore, what: str, error: Exception, recoveries: int, initial: Callable[[], DataFrame]
) -> tuple[object, Progress]:
    """The engine restarted from the newest save after ``what`` failed with ``error``, or from the
    ``initial`` state when no intact save is left."""
    back = store.load()
    log.warning(
        "%s failed (%s); retrying from %s (recovery %d of %d)",
        what,
        reason(error),
        "the start: no intact save is left" if back is None else f"the state of iteration {back.iteration}",
        recoveries,
        RECOVERIES,
    )
    if back is None:
        return engine.restart(initial()), Progress()
    return engine.restart(back.state), Progress.of(back)
