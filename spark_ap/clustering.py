"""The public estimator: :class:`AffinityPropagation` and its result."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import pandas as pd
from graphframes import GraphFrame
from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasCheckpointInterval, HasMaxIter, HasSeed, HasWeightCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from spark_ap.errors import ColumnTypeError, ConvergenceWarning, InvalidParamError
from spark_ap.lib import assign
from spark_ap.lib.engine import Settings, check_engine, initial_state, iterate, release
from spark_ap.lib.noise import noise_kind, noise_param
from spark_ap.lib.preference import add_self_edges, check_preference
from spark_ap.lib.state import StateStore
from spark_ap.lib.validation import DUPLICATES, id_type, require_columns, validate_edges, validate_preferences
from spark_ap.session import require_graphframes

log = logging.getLogger("spark_ap")

# Params that change how a run works, not what it computes: a resumed or
# repeated run may change them.
OPERATIONAL_PARAMS = ("checkpointInterval", "checkpointKind", "stateDir", "engine")


def result_params(estimator: Params) -> dict:
    """``estimator``'s params that decide what a run computes, by name: all but :data:`OPERATIONAL_PARAMS`."""
    return {
        p.name: estimator.getOrDefault(p)
        for p in estimator.params
        if estimator.isDefined(p) and p.name not in OPERATIONAL_PARAMS
    }


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
    history : pandas.DataFrame
        ``iteration, exemplars, changed``: per iteration, how many points were
        exemplars and how many changed their exemplar decision.
    messages : DataFrame
        The final edge state ``src, dst, similarity, s, r, a`` (``s`` is the
        similarity with the degeneracy noise the messages used).
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
    netSimilarity: float | None
    history: pd.DataFrame
    messages: DataFrame
    preference: float
    numVertices: int
    numEdges: int
    resumedFrom: int | None = None
    _state: DataFrame | None = field(default=None, repr=False)

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


class _AffinityPropagationParams(HasMaxIter, HasWeightCol, HasCheckpointInterval, HasSeed):
    damping = Param(
        Params._dummy(),
        "damping",
        "damping factor in [0.5, 1): new = damping * old + (1 - damping) * computed",
        typeConverter=TypeConverters.toFloat,
    )
    convergenceIter = Param(
        Params._dummy(),
        "convergenceIter",
        "stop when no exemplar decision has changed for this many iterations (>= 1)",
        typeConverter=TypeConverters.toInt,
    )
    preference = Param(
        Params._dummy(),
        "preference",
        "preference for vertices without a self-edge: a number, 'median' or 'min' of the "
        "off-diagonal similarities, or a quantile in (0, 1) as a string such as '0.1'",
    )
    srcCol = Param(Params._dummy(), "srcCol", "name of the source id column", typeConverter=TypeConverters.toString)
    dstCol = Param(Params._dummy(), "dstCol", "name of the target id column", typeConverter=TypeConverters.toString)
    idCol = Param(
        Params._dummy(),
        "idCol",
        "name of the id column of the optional vertices table",
        typeConverter=TypeConverters.toString,
    )
    preferenceCol = Param(
        Params._dummy(),
        "preferenceCol",
        "name of the per-vertex preference column of the optional vertices table",
        typeConverter=TypeConverters.toString,
    )
    checkpointKind = Param(
        Params._dummy(),
        "checkpointKind",
        "'local': keep the state in executor storage only; 'reliable': also write it to the "
        "SparkContext checkpoint directory every checkpointInterval iterations; 'auto': "
        "reliable when a checkpoint directory is set, else local",
        typeConverter=TypeConverters.toString,
    )
    duplicates = Param(
        Params._dummy(),
        "duplicates",
        "what repeated (src, dst) pairs mean: 'error' (refuse them), or one edge with the 'max' or the "
        "'mean' of their similarities",
        typeConverter=TypeConverters.toString,
    )
    stateDir = Param(
        Params._dummy(),
        "stateDir",
        "directory (local path or URI) where the run saves its state every checkpointInterval "
        "iterations, and from which a rerun with the same params and input resumes",
        typeConverter=TypeConverters.toString,
    )
    engine = Param(
        Params._dummy(),
        "engine",
        "how iterations run, with the same results: 'auto' (local up to 5 million edges, else blocks), "
        "'local' (numpy on the driver), 'blocks' (numpy on chunks of edges in executors) or 'graphframes' "
        "(GraphFrame.aggregateMessages rounds)",
        typeConverter=TypeConverters.toString,
    )
    noise = Param(
        Params._dummy(),
        "noise",
        "scikit-learn's tiny degeneracy noise on the similarities: 'edge' (drawn per edge from seed), "
        "'sklearn' (scikit-learn's own draws for random_state=seed, up to 20,000 vertices) or 'none'; "
        "True and False mean 'edge' and 'none'",
        typeConverter=noise_param,
    )

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(
            damping=0.5,
            maxIter=200,
            convergenceIter=15,
            preference="median",
            srcCol="src",
            dstCol="dst",
            weightCol="similarity",
            idCol="id",
            preferenceCol="preference",
            checkpointInterval=10,
            checkpointKind="auto",
            duplicates="error",
            engine="auto",
            noise="edge",
            seed=0,
        )

    def getDamping(self) -> float:
        return self.getOrDefault(self.damping)

    def getConvergenceIter(self) -> int:
        return self.getOrDefault(self.convergenceIter)

    def getPreference(self) -> float | str:
        return self.getOrDefault(self.preference)

    def getSrcCol(self) -> str:
        return self.getOrDefault(self.srcCol)

    def getDstCol(self) -> str:
        return self.getOrDefault(self.dstCol)

    def getIdCol(self) -> str:
        return self.getOrDefault(self.idCol)

    def getPreferenceCol(self) -> str:
        return self.getOrDefault(self.preferenceCol)

    def getCheckpointKind(self) -> str:
        return self.getOrDefault(self.checkpointKind)

    def getNoise(self) -> str:
        return self.getOrDefault(self.noise)

    def getDuplicates(self) -> str:
        return self.getOrDefault(self.duplicates)

    def getEngine(self) -> str:
        return self.getOrDefault(self.engine)

    def getStateDir(self) -> str | None:
        return self.getOrDefault(self.stateDir) if self.isDefined(self.stateDir) else None


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
        Used for vertices without a self-edge: a number, ``"median"`` or
        ``"min"`` of the off-diagonal similarities, or a quantile string such
        as ``"0.1"``. A self-edge in the input, or a non-null value in the
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
        noise: str | bool = "edge",
        seed: int = 0,
    ) -> AffinityPropagation:
        """Set the params given by keyword."""
        self._set(**self._input_kwargs)
        self._check()
        return self

    def _setChecked(self, **kwargs) -> AffinityPropagation:
        self._set(**kwargs)
        self._check()
        return self

    def setDamping(self, value: float) -> AffinityPropagation:
        return self._setChecked(damping=value)

    def setMaxIter(self, value: int) -> AffinityPropagation:
        return self._setChecked(maxIter=value)

    def setConvergenceIter(self, value: int) -> AffinityPropagation:
        return self._setChecked(convergenceIter=value)

    def setPreference(self, value: float | str) -> AffinityPropagation:
        return self._setChecked(preference=value)

    def setSrcCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(srcCol=value)

    def setDstCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(dstCol=value)

    def setWeightCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(weightCol=value)

    def setIdCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(idCol=value)

    def setPreferenceCol(self, value: str) -> AffinityPropagation:
        return self._setChecked(preferenceCol=value)

    def setCheckpointInterval(self, value: int) -> AffinityPropagation:
        return self._setChecked(checkpointInterval=value)

    def setCheckpointKind(self, value: str) -> AffinityPropagation:
        return self._setChecked(checkpointKind=value)

    def setDuplicates(self, value: str) -> AffinityPropagation:
        return self._setChecked(duplicates=value)

    def setStateDir(self, value: str | None) -> AffinityPropagation:
        return self._setChecked(stateDir=value)

    def setEngine(self, value: str) -> AffinityPropagation:
        return self._setChecked(engine=value)

    def setNoise(self, value: bool) -> AffinityPropagation:
        return self._setChecked(noise=value)

    def setSeed(self, value: int) -> AffinityPropagation:
        return self._setChecked(seed=value)

    def _check(self) -> None:
        """Raise :class:`InvalidParamError` for any param out of range."""
        damping = self.getDamping()
        if not 0.5 <= damping < 1:
            raise InvalidParamError(f"damping must be in [0.5, 1); got {damping}")
        if self.getMaxIter() < 1:
            raise InvalidParamError(f"maxIter must be >= 1; got {self.getMaxIter()}")
        if self.getConvergenceIter() < 1:
            raise InvalidParamError(f"convergenceIter must be >= 1; got {self.getConvergenceIter()}")
        interval = self.getCheckpointInterval()
        if interval < 1 and interval != -1:
            raise InvalidParamError(f"checkpointInterval must be >= 1, or -1 to never checkpoint; got {interval}")
        if self.getCheckpointKind() not in ("auto", "local", "reliable"):
            raise InvalidParamError(
                f"checkpointKind must be 'auto', 'local' or 'reliable'; got {self.getCheckpointKind()!r}"
            )
        if self.getDuplicates() not in DUPLICATES:
            raise InvalidParamError(f"duplicates must be one of {DUPLICATES}; got {self.getDuplicates()!r}")
        check_engine(self.getEngine())
        if self.getStateDir() and interval == -1:
            raise InvalidParamError("stateDir needs checkpointInterval >= 1: the state is saved that often")
        check_preference(self.getPreference())
        noise_kind(self.getNoise())

    def _settings(self) -> Settings:
        self._check()
        return Settings(
            damping=self.getDamping(),
            max_iter=self.getMaxIter(),
            convergence_iter=self.getConvergenceIter(),
            checkpoint_interval=self.getCheckpointInterval(),
            checkpoint_kind=self.getCheckpointKind(),
            noise=noise_kind(self.getNoise()),
            seed=self.getSeed(),
            engine=self.getEngine(),
        )

    def _graph(self, edges: DataFrame, vertices: DataFrame | None, trusted: bool) -> tuple[DataFrame, float]:
        """Validated edges with a self-edge per vertex, and the value of the default preference."""
        if trusted:
            graph = edges.select("src", "dst", "similarity")
        else:
            graph = validate_edges(edges, self.getSrcCol(), self.getDstCol(), self.getWeightCol(), self.getDuplicates())
        ids = graph.select(F.col("src").alias("id")).union(graph.select(F.col("dst").alias("id")))
        per_vertex = None
        if vertices is not None:
            id_col, pref_col = self.getIdCol(), self.getPreferenceCol()
            require_columns(vertices, [id_col], "The vertices table")
            kind = id_type(vertices, [id_col], "The vertices table")
            if kind != graph.schema["src"].dataType:
                raise ColumnTypeError(
                    f"The vertices table's '{id_col}' is {kind.simpleString()} but the edge ids are "
                    f"{graph.schema['src'].dataType.simpleString()}; use one id type."
                )
            ids = ids.union(vertices.select(F.col(id_col).cast(kind).alias("id")))
            if pref_col in vertices.columns:
                per_vertex = validate_preferences(vertices, id_col, pref_col, kind)
        graph, preference = add_self_edges(graph, ids.distinct(), self.getPreference(), per_vertex)
        return graph, preference

    def run(self, edges: DataFrame | GraphFrame, vertices: DataFrame | None = None) -> AffinityPropagationResult:
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
        """
        if isinstance(edges, GraphFrame):
            if vertices is not None:
                raise InvalidParamError("Give a GraphFrame alone: its vertices are the vertices table")
            return self.copy({self.srcCol: "src", self.dstCol: "dst", self.idCol: "id"})._run(
                edges.edges, edges.vertices
            )
        return self._run(edges, vertices)

    def _run(self, edges: DataFrame, vertices: DataFrame | None, *, trusted: bool = False) -> AffinityPropagationResult:
        """:meth:`run`; ``trusted`` edges (src, dst, similarity, as spark-ap itself builds them) skip
        validation, and the net similarity, which nobody reads then, is not computed."""
        settings = self._settings()
        graph, preference = self._graph(edges, vertices, trusted)
        graph = graph.localCheckpoint(eager=True)
        s = F.col("similarity")
        off = F.col("src") != F.col("dst")
        facts = graph.agg(
            F.count(F.lit(1)).alias("edges"),
            F.sum((~off).cast("long")).alias("vertices"),
            F.min(F.when(off, s)).alias("s_min"),
            F.max(F.when(off, s)).alias("s_max"),
            F.min(F.when(~off, s)).alias("p_min"),
            F.max(F.when(~off, s)).alias("p_max"),
            # An order-independent fingerprint of the graph, preferences included:
            # a saved state is resumed only on the graph it was computed from.
            F.sum(F.xxhash64("src", "dst", "similarity").cast("decimal(20,0)")).alias("checksum"),
        ).first()
        log.info(
            "affinity propagation: %d vertices, %d edges (self-edges included), preference %s = %g",
            facts["vertices"],
            facts["edges"],
            self.getPreference(),
            preference,
        )

        history: list[tuple[int, int, int]] = []
        resumed_from = None
        self_edge = F.col("src") == F.col("dst")
        if facts["vertices"] == 1 or (
            facts["s_min"] is not None and facts["s_min"] == facts["s_max"] and facts["p_min"] == facts["p_max"]
        ):
            # scikit-learn's shortcut: with one point, or all similarities and
            # all preferences equal, there is nothing to propagate; every point is
            # an exemplar when the preference beats the similarity, else the first.
            warnings.warn(
                "All samples have mutually equal similarities; returning arbitrary cluster center(s).", stacklevel=2
            )
            state = initial_state(graph, settings).persist()
            ids = state.filter(self_edge).select(F.col("src").alias("id"))
            if facts["vertices"] > 1 and facts["p_min"] <= facts["s_min"]:
                exemplar_ids = ids.agg(F.min("id").alias("id"))
            else:
                exemplar_ids = ids
            n_iter, converged = 0, True
        else:
            store = self._store(graph.sparkSession, facts, preference)
            outcome = iterate(graph, settings, store, edges=int(facts["edges"]))
            state, n_iter, converged, history = outcome.state, outcome.n_iter, outcome.converged, outcome.history
            resumed_from = outcome.resumed_from
            # From here on everything is read from the final state, which holds
            # the graph too: with a state store it is on durable storage.
            ids = state.filter(self_edge).select(F.col("src").alias("id"))
            # The intermediate tables have one row per vertex at most; checkpointing
            # them keeps the final plans short and each step computed once.
            decided = state.filter(self_edge & (F.col("r") + F.col("a") > 0)).select(F.col("src").alias("id"))
            decided = decided.localCheckpoint()
            if decided.isEmpty():
                exemplar_ids = None
            else:
                first = assign.nearest_exemplar(state, decided).localCheckpoint()
                exemplar_ids = assign.refine(state, first).localCheckpoint()
            if not converged:
                warnings.warn(
                    f"Affinity propagation did not converge in {n_iter} iterations; "
                    + ("the clusters may be degenerate." if exemplar_ids is not None else "there are no clusters."),
                    ConvergenceWarning,
                    stacklevel=2,
                )

        if exemplar_ids is None:
            assignments = assign.unassigned(ids).persist()
            net = None
        else:
            assignments = assign.label(state, ids, exemplar_ids).persist()
            net = None if trusted else assign.net_similarity(state, assignments)
        return AffinityPropagationResult(
            assignments=assignments,
            exemplars=assign.exemplar_table(assignments.filter(F.col("cluster") >= 0)),
            numIterations=n_iter,
            converged=converged,
            netSimilarity=net,
            history=pd.DataFrame(history, columns=["iteration", "exemplars", "changed"]),
            messages=state.select("src", "dst", "similarity", "s", "r", "a"),
            preference=preference,
            numVertices=int(facts["vertices"]),
            numEdges=int(facts["edges"]),
            resumedFrom=resumed_from,
            _state=state,
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
