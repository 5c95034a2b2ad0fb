"""One run of Affinity Propagation on a prepared graph, for both estimators.

:func:`cluster` takes a :class:`~spark_ap.prepare.inputs.Prepared` graph and
returns its :class:`~spark_ap.run.loop.Outcome`: it counts the graph and
fingerprints it (:func:`graph_facts`), takes scikit-learn's shortcut when
there is nothing to propagate, refuses repeated pairs unless the engine does,
opens the run's state store, builds the engine and runs the loop.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from spark_ap.compat import is_connect
from spark_ap.engines import RunFacts, engine_class, engine_for, make_engine
from spark_ap.engines.assign import label
from spark_ap.engines.capacity import placed_labels
from spark_ap.errors import ConvergenceWarning, DuplicateEdgeError, InvalidValueError, user_stacklevel
from spark_ap.lock import folder_lock
from spark_ap.prepare.inputs import Prepared
from spark_ap.prepare.validation import largest_similarity, refuse_duplicates
from spark_ap.run.best import ends_on_best
from spark_ap.run.loop import Outcome, Settings, initial_state, iterate
from spark_ap.run.state import StateStore

log = logging.getLogger("spark_ap")

_PIECES = (0, 22, 44)  # the hashes' 64 bits as three pieces of at most 22 bits
_PIECE = 1 << 22


@dataclass
class Clustered:
    """A run's outcome and the counts of its graph (self-edges included)."""

    outcome: Outcome
    vertices: int
    edges: int


def self_edge() -> Column:
    """True on a vertex's self-edge, which carries its preference and its decision."""
    return F.col("src") == F.col("dst")


def graph_facts(graph: DataFrame) -> Row:
    """Counts and ranges of a graph with self-edges, and an order-independent fingerprint of it
    (preferences included): a saved state is resumed only on the graph it was computed from.

    The fingerprint (``checksum``) is the exact sum of the edges' ``xxhash64``, as a decimal
    sum would give it; it is put together from sums of 22-bit pieces of the hashes, which are
    sums of longs (several times faster than a decimal sum) that cannot overflow.
    """
    s = F.col("similarity")
    on, off = self_edge(), ~self_edge()
    h = F.xxhash64("src", "dst", "similarity")
    row = graph.agg(
        F.count(F.lit(1)).alias("edges"),
        F.sum(on.cast("long")).alias("vertices"),
        F.min(F.when(off, s)).alias("s_min"),
        F.max(F.when(off, s)).alias("s_max"),
        F.min(F.when(on, s)).alias("p_min"),
        F.max(F.when(on, s)).alias("p_max"),
        *[F.sum(F.shiftrightunsigned(h, bit).bitwiseAND(F.lit(_PIECE - 1))).alias(f"h{bit}") for bit in _PIECES],
        F.sum((h < 0).cast("long")).alias("negative"),
    ).first()
    facts = {key: row[key] for key in ("edges", "vertices", "s_min", "s_max", "p_min", "p_max")}
    # A negative hash is its unsigned value less 2**64; an empty graph's sums are null.
    facts["checksum"] = (
        sum(row[f"h{bit}"] << bit for bit in _PIECES) - (row["negative"] << 64) if row["edges"] else None
    )
    return Row(**facts)


def refuse_overflowing_preferences(facts: Row, value: float, asked: float | str) -> None:
    """Raise :class:`~spark_ap.InvalidValueError` if a preference is so large that the messages' sums
    overflow on this graph: the limit the similarities are held to
    (:func:`~spark_ap.prepare.validation.largest_similarity`), since preferences are the self-edges'
    similarities."""
    limit = largest_similarity(int(facts["edges"]))
    if abs(value) > limit:
        raise InvalidValueError(
            f"preference={asked!r} ({value:.3g}) is beyond ±{limit:.3g}, where the sums of AP's messages "
            f"overflow on this graph of {facts['edges']} edges; give a preference of the similarities' size."
        )
    largest = max(abs(facts["p_min"] or 0.0), abs(facts["p_max"] or 0.0))
    if largest > limit:
        raise InvalidValueError(
            f"The vertices' preferences reach {largest:.3g}, beyond ±{limit:.3g}, where the sums of AP's "
            f"messages overflow on this graph of {facts['edges']} edges; scale them as the similarities."
        )


def cluster(
    prepared: Prepared,
    settings: Settings,
    *,
    state_dir: str | None = None,
    params: dict | None = None,
    pair_columns: tuple[str, str] | None = None,
) -> Clustered:
    """Run AP on ``prepared``; the engine owns its graph from the start (see
    :class:`~spark_ap.engines.RunFacts`), and this frees it if the run fails.

    Parameters
    ----------
    state_dir : str, optional
        Save the state there and resume from it; ``params`` (what the run
        computes, by name) and the graph's fingerprint are the run's identity.
    pair_columns : (str, str), optional
        The user's source and target columns, when repeated pairs are to be
        refused (``duplicates="error"`` on unvalidated edges), to name in the error.
    """
    graph = prepared.graph
    try:
        facts = graph_facts(graph)
        log.info(
            "affinity propagation: %d vertices, %d edges (self-edges included), preference %s = %g",
            facts["vertices"],
            facts["edges"],
            prepared.asked,
            prepared.preference,
        )
        vertices, edges = int(facts["vertices"]), int(facts["edges"])
        refuse_overflowing_preferences(facts, prepared.preference, prepared.asked)
        name = engine_for(settings.engine, edges, is_connect(graph.sparkSession))
        shortcut = _nothing_to_propagate(facts)
        if pair_columns is not None and (shortcut or _engine_lets_pairs_through(name, settings)):
            refuse_duplicates(graph, *pair_columns)
        if shortcut:
            outcome = _shortcut(graph, facts, settings)
            graph.unpersist()
        else:
            store = _store(graph, facts, prepared.preference, state_dir, params)
            engine = make_engine(
                name,
                RunFacts(
                    graph.sparkSession,
                    settings.damping,
                    graph,
                    prepared.vertices,
                    settings.exchange,
                    settings.capacity,
                    ends_on_best(settings.end_on, edges),
                ),
            )
            try:
                with folder_lock(state_dir, "affinity propagation's saves", graph.sparkSession):
                    outcome = iterate(engine, graph, settings, store)
            except DuplicateEdgeError as error:
                raise error.named(*pair_columns) if pair_columns else error from None
            _warn_if_not_converged(outcome)
        if settings.capacity:
            outcome = _within(outcome, settings.capacity)
    except BaseException:
        graph.unpersist()
        raise
    finally:
        prepared.release()
    return Clustered(outcome, vertices, edges)


def _within(outcome: Outcome, capacity: int) -> Outcome:
    """``outcome`` with its points placed so that no cluster holds more than ``capacity`` of them."""
    labels = placed_labels(outcome.state, outcome.labels, capacity)
    if labels is not outcome.labels:
        outcome.labels.unpersist()
    return replace(outcome, labels=labels)


def _nothing_to_propagate(facts: Row) -> bool:
    """One vertex, or all similarities equal and all preferences equal (scikit-learn's shortcut)."""
    return facts["vertices"] == 1 or (
        facts["s_min"] is not None and facts["s_min"] == facts["s_max"] and facts["p_min"] == facts["p_max"]
    )


def _engine_lets_pairs_through(name: str, settings: Settings) -> bool:
    """Whether the engine ``name`` would run on repeated (src, dst) pairs rather than refuse them
    as it starts (which saves a shuffle of every edge). With scikit-learn's noise, whose join would
    multiply a repeated pair's rows, they are refused before the engine starts."""
    return not engine_class(name).sorts_edges or settings.noise == "sklearn"


def _shortcut(graph: DataFrame, facts: Row, settings: Settings) -> Outcome:
    """scikit-learn's shortcut: with one point, or all similarities and all preferences equal,
    every point is an exemplar when the preference beats the similarity, else the first."""
    warnings.warn(
        "All samples have mutually equal similarities; returning arbitrary cluster center(s).",
        stacklevel=user_stacklevel(),
    )
    state = initial_state(graph, settings).localCheckpoint(eager=True)
    ids = state.filter(self_edge()).select(F.col("src").alias("id"))
    one = facts["vertices"] > 1 and facts["p_min"] <= facts["s_min"]
    exemplars = ids.agg(F.min("id").alias("id")) if one else ids
    labels = label(state, ids, exemplars, int(facts["vertices"])).persist()
    return Outcome(state, labels, True, state, lambda: None, n_iter=0, converged=True, history=[])


def _store(
    graph: DataFrame, facts: Row, preference: float, state_dir: str | None, params: dict | None
) -> StateStore | None:
    """The run's state store when ``state_dir`` is set; its identity is what a resume must match."""
    if not state_dir:
        return None
    identity = {
        "params": params or {},
        "input": {
            "vertices": int(facts["vertices"]),
            "edges": int(facts["edges"]),
            "checksum": str(facts["checksum"]),
            "preference_value": preference,
        },
    }
    return StateStore(graph.sparkSession, state_dir, identity)


def _warn_if_not_converged(outcome: Outcome) -> None:
    if not outcome.converged:
        warnings.warn(
            f"Affinity propagation did not converge in {outcome.n_iter} iterations; "
            + ("the clusters may be degenerate." if outcome.found else "there are no clusters."),
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )
