"""The public estimator: :class:`AffinityPropagation` and its result."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd
from graphframes import GraphFrame
from pyspark import StorageLevel, keyword_only
from pyspark.ml.param import Params
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from spark_ap.engines import assign
from spark_ap.engines.lineage import release
from spark_ap.errors import (
    ColumnTypeError,
    ConvergenceWarning,
    DuplicateEdgeError,
    InvalidParamError,
    user_stacklevel,
)
from spark_ap.estimators._params import SharedParams, spec_param
from spark_ap.params import AP, SPECS
from spark_ap.prepare.preference import add_self_edges, vertex_table
from spark_ap.prepare.validation import (
    id_type,
    refuse_duplicates,
    require_columns,
    validate_edges,
    validate_vertices,
)
from spark_ap.run.loop import ENGINES, Outcome, Settings, engine_for, initial_state, iterate
from spark_ap.run.state import StateStore
from spark_ap.session import require_graphframes

log = logging.getLogger("spark_ap")

# Params that change how a run works, not what it computes: a resumed or
# repeated run may change them.
OPERATIONAL_PARAMS = tuple(name for name, spec in SPECS.items() if not spec.result)


def result_params(estimator: Params) -> dict:
    """``estimator``'s params that decide what a run computes, by name: all but :data:`OPERATIONAL_PARAMS`."""
    return {
        p.name: estimator.getOrDefault(p)
        for p in estimator.params
        if estimator.isDefined(p) and p.name not in OPERATIONAL_PARAMS
    }


def self_edge() -> Column:
    """True on a vertex's self-edge, which carries its preference and its decision."""
    return F.col("src") == F.col("dst")


_PIECES = (0, 22, 44)  # the hashes' 64 bits as three pieces of at most 22 bits
_PIECE = 1 << 22


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


def _then(first: Callable[[], None] | None, then: Callable[[], None]) -> Callable[[], None]:
    """A function that calls ``first`` (if any), then ``then``."""

    def both() -> None:
        if first is not None:
            first()
        then()

    return both


def _warn_if_not_converged(outcome: Outcome, found: bool) -> None:
    if not outcome.converged:
        warnings.warn(
            f"Affinity propagation did not converge in {outcome.n_iter} iterations; "
            + ("the clusters may be degenerate." if found else "there are no clusters."),
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )


def _nothing_to_propagate(facts: Row) -> bool:
    """One vertex, or all similarities equal and all preferences equal (scikit-learn's shortcut)."""
    return facts["vertices"] == 1 or (
        facts["s_min"] is not None and facts["s_min"] == facts["s_max"] and facts["p_min"] == facts["p_max"]
    )


@dataclass
class AffinityPropagationResult:
    """What :meth:`AffinityPropagation.run` returns.

    Attributes
    ----------
    assignments : DataFrame
        ``id, cluster, exemplar``: one row per vertex. Clusters are numbered
        from 0 in the order of their exemplars' ids. When no exemplar was
        found, ``cluster`` is -1 and ``exemplar`` null, as in scikit-learn.
    exemplars : DataFrame
        ``cluster, exemplar, size``: one row per cluster.
    numIterations : int
        Iterations run, counted as scikit-learn's ``n_iter_``.
    converged : bool
        Whether the exemplar decisions settled before ``maxIter``.
    netSimilarity : float or None
        Sum of s(i, exemplar(i)) over non-exemplars plus the exemplars'
        preferences (Frey and Dueck's objective); None without exemplars.
        Computed when first read (a join over the edges), so read it before
        :meth:`unpersist`.
    history : pandas.DataFrame
        ``iteration, exemplars, changed``: per iteration, how many points were
        exemplars and how many changed their exemplar decision.
    messages : DataFrame
        The final edge state ``src, dst, similarity, s, r, a`` (``s`` is the
        similarity with the degeneracy noise the messages used). The blocks
        engine computes it from its chunks in executor storage each time it
        is read (``persist()`` it to read it more than once); it is gone after
        :meth:`unpersist`.
    preference : float
        The value the ``preference`` param stood for on this graph.
    numVertices, numEdges : int
        Counted with self-edges, after adding the missing ones.
    resumedFrom : int or None
        The iteration whose saved state this run started from (see
        ``stateDir``), or None when it started from the beginning.
    graph : GraphFrame
        The clustered graph, to go on with GraphFrames (motifs, degrees, the
        connected components of a cluster): vertices ``id, cluster, exemplar,
        isExemplar``, edges ``src, dst, similarity, r, a`` (self-edges carry
        the preferences).
    """

    assignments: DataFrame
    exemplars: DataFrame
    numIterations: int
    converged: bool
    history: pd.DataFrame
    messages: DataFrame
    preference: float
    numVertices: int
    numEdges: int
    resumedFrom: int | None = None
    _state: DataFrame | None = field(default=None, repr=False)
    _similarities: DataFrame | None = field(default=None, repr=False)  # src, dst, similarity
    _free: Callable[[], None] | None = field(default=None, repr=False)
    _found: bool = field(default=True, repr=False)  # whether any point became an exemplar

    @cached_property
    def netSimilarity(self) -> float | None:
        # Not computed with the result: the levels of a multi-level run never read theirs.
        return assign.net_similarity(self._similarities, self.assignments) if self._found else None

    @property
    def graph(self) -> GraphFrame:
        require_graphframes(self.assignments.sparkSession)
        is_exemplar = F.coalesce(F.col("id") == F.col("exemplar"), F.lit(False))
        return GraphFrame(
            self.assignments.withColumn("isExemplar", is_exemplar),
            self.messages.select("src", "dst", "similarity", "r", "a"),
        )

    def unpersist(self) -> None:
        """Release what the run keeps in executor storage: the assignments and the messages."""
        self.assignments.unpersist()
        if self._state is not None:
            release(self._state)
            self._state.unpersist()
        if self._free is not None:
            self._free()


class _AffinityPropagationParams(SharedParams):
    """AffinityPropagation's params; names, docs, defaults and bounds are in :mod:`spark_ap.params`."""

    _estimator = AP
    srcCol = spec_param("srcCol")
    dstCol = spec_param("dstCol")
    weightCol = spec_param("weightCol")
    preferenceCol = spec_param("preferenceCol")
    duplicates = spec_param("duplicates")

    def getWeightCol(self) -> str:
        return self.getOrDefault(self.weightCol)

    def getSrcCol(self) -> str:
        return self.getOrDefault(self.srcCol)

    def getDstCol(self) -> str:
        return self.getOrDefault(self.dstCol)

    def getPreferenceCol(self) -> str:
        return self.getOrDefault(self.preferenceCol)

    def getDuplicates(self) -> str:
        return self.getOrDefault(self.duplicates)


class AffinityPropagation(_AffinityPropagationParams, DefaultParamsReadable, DefaultParamsWritable):
    """Affinity Propagation (Frey and Dueck, 2007) on a sparse similarity graph.

    Messages travel only along the given edges, so memory grows with the number
    of edges. On a complete graph the clusters, exemplars and iteration count
    are those of ``sklearn.cluster.AffinityPropagation(affinity="precomputed")``
    with the same preference, damping, max_iter and convergence_iter.

    Parameters
    ----------
    damping : float, default 0.5
        In [0.5, 1).
    maxIter : int, default 200
    convergenceIter : int, default 15
    preference : float or str, default "median"
        Used for vertices without a self-edge: a number is the value itself;
        ``"median"``, ``"min"`` or ``"quantile:0.1"`` (any quantile in (0, 1))
        are those statistics of the off-diagonal similarities. A self-edge in the input, or a non-null value in the
        vertices table's ``preferenceCol``, wins.
    srcCol, dstCol, weightCol : str, default "src", "dst", "similarity"
    idCol, preferenceCol : str, default "id", "preference"
        Columns of the optional vertices table.
    checkpointInterval : int, default 10
        Every this many iterations, write the edge state to the SparkContext's
        checkpoint directory; -1 never does. (The lineage is cut every
        iteration in any case, with a local checkpoint.)
    checkpointKind : {"auto", "local", "reliable"}, default "auto"
        "auto" writes those checkpoints when a checkpoint directory is set,
        "reliable" requires one, "local" never writes them.
    duplicates : {"error", "max", "mean"}, default "error"
        Repeated (src, dst) pairs raise :class:`~spark_ap.DuplicateEdgeError`,
        or become one edge with the largest or the mean similarity.
    stateDir : str, optional
        Save the run's state here (Parquet and a small JSON file) before the
        first iteration and every ``checkpointInterval`` iterations, in place of
        the checkpoints above. A run that finds a save made with the same
        params and the same input starts after it and ends with exactly the
        uninterrupted result; a save of another run raises
        :class:`~spark_ap.StateMismatchError`. An iteration whose Spark job fails
        (an executor lost) is retried from the newest save. On a multi-machine
        cluster it must be storage every executor can write (HDFS, S3, ...).
    engine : {"auto", "local", "blocks", "graphframes"}, default "auto"
        How the iterations run; all compute the same messages bit for bit.
        "graphframes" makes the graph a GraphFrame and each iteration two
        rounds of ``GraphFrame.aggregateMessages`` (one per message);
        "blocks" keeps the edges as numpy arrays in chunks of about a million
        edges in executor storage and moves only per-vertex values (three
        arrays of n values are broadcast every iteration), many times faster;
        "local" iterates on the driver with the same numpy step, for graphs
        that fit one process (Spark still reads, validates, saves and
        assigns). "auto" is "local" up to 5 million edges, else "blocks".
    exchange : {"auto", "driver", "routed"}, default "auto"
        How the blocks engine merges each vertex's per-partition maxima, with
        the same results: "driver" reports them to the driver, which merges
        them and broadcasts three arrays of n values every iteration (the
        fastest on one machine); "routed" shuffles them to the vertices'
        owners, n / P each, and the merged values back to the partitions that
        need them, so that nothing per vertex reaches the driver and each
        task's arrays shrink as partitions are added (for clusters). "auto"
        is "driver" while vertices x partitions is at most 4 million.
    noise : {"edge", "sklearn", "none"}, default "edge"
        scikit-learn's degeneracy noise, which breaks ties between equally good
        exemplars: ``(eps * s + tiny * 100) * z`` added to every similarity
        s, preferences included. With "edge" the normal z of an edge is drawn
        from (``seed``, src, dst), for any graph and partitioning. With
        "sklearn" it is entry (i, k) of
        ``np.random.RandomState(seed).standard_normal((n, n))``, i and k the
        vertices' positions in id order, exactly what scikit-learn adds with
        ``random_state=seed``; drawn on the driver, for graphs up to 20,000
        vertices. True and False mean "edge" and "none".
    seed : int, default 0

    Examples
    --------
    >>> ap = AffinityPropagation(damping=0.5, preference="median")
    >>> ap.assignClusters(edges).show()  # doctest: +SKIP
    """

    @keyword_only
    def __init__(
        self,
        *,
        damping: float = 0.5,
        maxIter: int = 200,
        convergenceIter: int = 15,
        preference: float | str = "median",
        srcCol: str = "src",
        dstCol: str = "dst",
        weightCol: str = "similarity",
        idCol: str = "id",
        preferenceCol: str = "preference",
        checkpointInterval: int = 10,
        checkpointKind: str = "auto",
        duplicates: str = "error",
        stateDir: str | None = None,
        engine: str = "auto",
        exchange: str = "auto",
        noise: str | bool = "edge",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        damping: float = 0.5,
        maxIter: int = 200,
        convergenceIter: int = 15,
        preference: float | str = "median",
        srcCol: str = "src",
        dstCol: str = "dst",
        weightCol: str = "similarity",
        idCol: str = "id",
        preferenceCol: str = "preference",
        checkpointInterval: int = 10,
        checkpointKind: str = "auto",
        duplicates: str = "error",
        stateDir: str | None = None,
        engine: str = "auto",
        exchange: str = "auto",
        noise: str | bool = "edge",
        seed: int = 0,
    ) -> AffinityPropagation:
        """Set the params given by keyword."""
        return self._setChecked(**self._input_kwargs)

    def setSrcCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(srcCol=value)

    def setDstCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(dstCol=value)

    def setWeightCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(weightCol=value)

    def setPreferenceCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(preferenceCol=value)

    def setDuplicates(self, value: str) -> AffinityPropagation:
        return self._setChecked(duplicates=value)

    def _check(self) -> None:
        """Raise :class:`InvalidParamError` for any param out of range."""
        self._check_spec()
        if self.getStateDir() and self.getCheckpointInterval() == -1:
            raise InvalidParamError("stateDir needs checkpointInterval >= 1: the state is saved that often")

    def _settings(self) -> Settings:
        self._check()
        return Settings(
            damping=self.getDamping(),
            max_iter=self.getMaxIter(),
            convergence_iter=self.getConvergenceIter(),
            checkpoint_interval=self.getCheckpointInterval(),
            checkpoint_kind=self.getCheckpointKind(),
            noise=self.getNoise(),
            seed=self.getSeed(),
            engine=self.getEngine(),
            exchange=self.getExchange(),
        )

    def _graph(
        self, edges: DataFrame, vertices: DataFrame | None, validated: bool
    ) -> tuple[DataFrame, float, DataFrame]:
        """Validated edges with a self-edge per vertex, persisted (computed as they are first read),
        the value of the default preference, and the vertices
        (:func:`~spark_ap.prepare.preference.vertex_table`), checkpointed."""
        if validated:
            graph = edges.select("src", "dst", "similarity")
        else:
            # Repeated pairs are refused later, by the engine where it can (see _refuse_duplicates).
            graph = validate_edges(
                edges,
                self.getSrcCol(),
                self.getDstCol(),
                self.getWeightCol(),
                self.getDuplicates(),
                find_duplicates=False,
            )
        more_ids, per_vertex = None, None
        if vertices is not None:
            id_col, pref_col = self.getIdCol(), self.getPreferenceCol()
            require_columns(vertices, [id_col], "The vertices table")
            kind = id_type(vertices, [id_col], "The vertices table")
            if kind != graph.schema["src"].dataType:
                raise ColumnTypeError(
                    f"The vertices table's '{id_col}' is {kind.simpleString()} but the edge ids are "
                    f"{graph.schema['src'].dataType.simpleString()}; use one id type."
                )
            table = validate_vertices(vertices, id_col, pref_col, kind)
            more_ids = table.select("id")
            if pref_col in vertices.columns:
                per_vertex = table
        # Read twice, for the self-edges and by the blocks engine's numbering (a vertex per row).
        found = vertex_table(graph, more_ids).localCheckpoint(eager=True)
        graph, preference = add_self_edges(graph, found, self.getPreference(), per_vertex)
        # Persisted, not checkpointed: Spark's columnar cache is built and read several times
        # faster than the rows a checkpoint stores (at 2.5e7 edges, 5 s against 9, then 1.5 s
        # against 3.5 a read), and a lost block is recomputed rather than failing the run.
        return graph.persist(StorageLevel.MEMORY_AND_DISK), preference, found

    def run(
        self, edges: DataFrame | GraphFrame, vertices: DataFrame | None = None, *, validated: bool = False
    ) -> AffinityPropagationResult:
        """Cluster the graph and return the assignments with everything learned on the way.

        Parameters
        ----------
        edges : DataFrame or GraphFrame
            ``srcCol, dstCol, weightCol``: similarities s(src, dst), which need
            not be symmetric. A self-edge (src == dst) carries that vertex's
            preference. A missing edge means the two points cannot choose each
            other. A GraphFrame gives its edges (``src, dst`` and
            ``weightCol``) and its vertices (``id`` and optionally
            ``preferenceCol``) at once.
        vertices : DataFrame, optional
            ``idCol`` and optionally ``preferenceCol``: adds vertices that have
            no edges and per-vertex preferences.
        validated : bool, default False
            The edges are ``src, dst, similarity`` as spark-ap's own builders
            make them (:func:`~spark_ap.edges_from_features`, the levels of
            :class:`~spark_ap.MultiLevelAffinityPropagation`): no nulls, no
            repeated pairs, numeric similarities. Their checks, a pass over the
            edges, are skipped and the column params are not read.
        """
        if isinstance(edges, GraphFrame):
            if vertices is not None:
                raise InvalidParamError("Give a GraphFrame alone: its vertices are the vertices table")
            renamed = self.copy({self.srcCol: "src", self.dstCol: "dst", self.idCol: "id"})
            return renamed.run(edges.edges, edges.vertices, validated=validated)
        settings = self._settings()
        if settings.engine == "graphframes":  # before the set-up's passes over the edges, not after
            require_graphframes(edges.sparkSession)
        graph, preference, found = self._graph(edges, vertices, validated)
        try:
            outcome, labels, facts = self._cluster(graph, found, preference, settings, validated)
        except BaseException:
            graph.unpersist()
            raise
        finally:
            release(found)
        if outcome.similarities is graph:  # the blocks engine reads the result's similarities from it
            outcome.free = _then(outcome.free, graph.unpersist)
        else:
            graph.unpersist()
        return self._result(outcome, *labels, preference, facts)

    def _cluster(
        self, graph: DataFrame, found: DataFrame, preference: float, settings: Settings, validated: bool
    ) -> tuple[Outcome, tuple[DataFrame, bool], Row]:
        """The run on the persisted ``graph`` (its first read computes it): the outcome, the
        labels (``id, cluster, exemplar``) and whether any vertex is an exemplar, the graph's facts."""
        facts = graph_facts(graph)
        log.info(
            "affinity propagation: %d vertices, %d edges (self-edges included), preference %s = %g",
            facts["vertices"],
            facts["edges"],
            self.getPreference(),
            preference,
        )
        shortcut = _nothing_to_propagate(facts)
        if not validated:
            self._refuse_duplicates(graph, settings, int(facts["edges"]), shortcut)
        if shortcut:
            # scikit-learn's shortcut: with one point, or all similarities and all
            # preferences equal, every point is an exemplar when the preference
            # beats the similarity, else the first.
            warnings.warn(
                "All samples have mutually equal similarities; returning arbitrary cluster center(s).",
                stacklevel=user_stacklevel(),
            )
            state = initial_state(graph, settings).localCheckpoint(eager=True)
            ids = state.filter(self_edge()).select(F.col("src").alias("id"))
            one = facts["vertices"] > 1 and facts["p_min"] <= facts["s_min"]
            exemplar_ids = ids.agg(F.min("id").alias("id")) if one else ids
            outcome = Outcome(state=state, n_iter=0, converged=True, history=[])
        else:
            store = self._store(graph.sparkSession, facts, preference)
            try:
                outcome = iterate(graph, settings, store, int(facts["edges"]), found)
            except DuplicateEdgeError as error:
                raise error.named(self.getSrcCol(), self.getDstCol()) from None
            if outcome.labels is not None:
                _warn_if_not_converged(outcome, outcome.labels[1])
                return outcome, outcome.labels, facts
            exemplar_ids = self._exemplars(outcome)
        return outcome, self._labels(outcome.state, exemplar_ids, int(facts["vertices"])), facts

    def _refuse_duplicates(self, graph: DataFrame, settings: Settings, edges: int, shortcut: bool) -> None:
        """Refuse repeated (src, dst) pairs of the persisted ``graph`` (duplicates="error") unless
        the engine that will run does as it starts, which saves a shuffle of every edge.

        It does not with scikit-learn's noise, whose join would multiply a repeated pair's rows.
        """
        if self.getDuplicates() != "error":
            return
        sorts = ENGINES[engine_for(settings.engine, edges)].sorts_edges
        if shortcut or not sorts or settings.noise == "sklearn":
            refuse_duplicates(graph, self.getSrcCol(), self.getDstCol())

    def _exemplars(self, outcome: Outcome) -> DataFrame | None:
        """The refined exemplars (``id``) of the final state, or None when no point decided to be one."""
        # From here on everything is read from the final state, which holds the
        # graph too: with a state store it is on durable storage. The tables have
        # one row per vertex at most; checkpointing them keeps the plans short.
        state = outcome.state
        decided = state.filter(self_edge() & (F.col("r") + F.col("a") > 0)).select(F.col("src").alias("id"))
        decided = decided.localCheckpoint()
        exemplar_ids = None
        if not decided.isEmpty():
            first = assign.nearest_exemplar(state, decided).localCheckpoint()
            exemplar_ids = assign.refine(state, first).localCheckpoint()
        _warn_if_not_converged(outcome, exemplar_ids is not None)
        return exemplar_ids

    @staticmethod
    def _labels(state: DataFrame, exemplar_ids: DataFrame | None, vertices: int) -> tuple[DataFrame, bool]:
        """``id, cluster, exemplar`` for every one of the ``vertices``, and whether there are clusters at all."""
        ids = state.filter(self_edge()).select(F.col("src").alias("id"))
        if exemplar_ids is None:
            return assign.unassigned(ids).persist(), False
        return assign.label(state, ids, exemplar_ids, vertices).persist(), True

    def _result(
        self, outcome: Outcome, assignments: DataFrame, found: bool, preference: float, facts: Row
    ) -> AffinityPropagationResult:
        """The result around the labels ``assignments``."""
        state = outcome.state
        return AffinityPropagationResult(
            assignments=assignments,
            exemplars=assign.exemplar_table(assignments.filter(F.col("cluster") >= 0)),
            numIterations=outcome.n_iter,
            converged=outcome.converged,
            history=pd.DataFrame(outcome.history, columns=["iteration", "exemplars", "changed"]),
            messages=state.select("src", "dst", "similarity", "s", "r", "a"),
            preference=preference,
            numVertices=int(facts["vertices"]),
            numEdges=int(facts["edges"]),
            resumedFrom=outcome.resumed_from,
            _state=state,
            _similarities=state if outcome.similarities is None else outcome.similarities,
            _free=outcome.free,
            _found=found,
        )

    def resultParams(self) -> dict:
        """The params that decide what a run computes, by name: all but :data:`OPERATIONAL_PARAMS`."""
        return result_params(self)

    def _store(self, spark: SparkSession, facts: Row, preference: float) -> StateStore | None:
        """The run's state store when ``stateDir`` is set; its identity is what a resume must match."""
        path = self.getStateDir()
        if not path:
            return None
        identity = {
            "params": self.resultParams(),
            "input": {
                "vertices": int(facts["vertices"]),
                "edges": int(facts["edges"]),
                "checksum": str(facts["checksum"]),
                "preference_value": preference,
            },
        }
        return StateStore(spark, path, identity)

    def assignClusters(self, edges: DataFrame | GraphFrame, vertices: DataFrame | None = None) -> DataFrame:
        """Cluster the graph and return ``id, cluster, exemplar``; see :meth:`run`."""
        return self.run(edges, vertices).assignments
