"""The public estimator: :class:`AffinityPropagation` and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd
from graphframes import GraphFrame
from pyspark import keyword_only
from pyspark.ml.param import Params
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_ap.engines import assign
from spark_ap.engines.rules import MESSAGES
from spark_ap.errors import InvalidParamError
from spark_ap.estimators._params import SharedParams, spec_param
from spark_ap.params import AP, SPECS
from spark_ap.prepare.inputs import Columns, prepare, prepare_validated
from spark_ap.run.cluster import Clustered, cluster
from spark_ap.run.loop import Outcome
from spark_ap.session import require_graphframes

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
    endedOn : str
        What the assignments were read from: "converged"; "best", a run that did
        not converge, on the exemplar decisions of the largest net similarity
        (after the placement with ``maxClusterSize``) among the last 50 distinct
        ones it made (``endOn="best"``); "last", on its last iteration's
        (``endOn="last"``, a graph of over 5 million edges, or no decisions with
        an exemplar).
    endedOnIteration : int or None
        The iteration whose decisions those are.
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
    endedOn: str = "converged"
    endedOnIteration: int | None = None
    _outcome: Outcome | None = field(default=None, repr=False)

    @classmethod
    def of(cls, run: Clustered, preference: float) -> AffinityPropagationResult:
        """The result of a :func:`~spark_ap.run.cluster.cluster` run at the ``preference`` value."""
        outcome = run.outcome
        return cls(
            assignments=outcome.labels,
            exemplars=assign.exemplar_table(outcome.labels.filter(F.col("cluster") >= 0)),
            numIterations=outcome.n_iter,
            converged=outcome.converged,
            history=pd.DataFrame(outcome.history, columns=["iteration", "exemplars", "changed"]),
            messages=outcome.state.select(*MESSAGES),
            preference=preference,
            numVertices=run.vertices,
            numEdges=run.edges,
            resumedFrom=outcome.resumed_from,
            endedOn=outcome.ended_on,
            endedOnIteration=outcome.ended_at,
            _outcome=outcome,
        )

    @cached_property
    def netSimilarity(self) -> float | None:
        # Not computed with the result: it is a join over the edges that many runs never read.
        outcome = self._outcome
        if outcome is None or not outcome.found:  # put together by hand, or no exemplars
            return None
        return assign.net_similarity(outcome.similarities, self.assignments)

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
        if self._outcome is None:  # a result put together by hand
            self.assignments.unpersist()
        else:
            self._outcome.release()  # its labels are the assignments


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
    maxClusterSize : int, default 0
        Capacitated AP: every cluster holds at most this many points, its
        exemplar included (Givoni and Frey's binary model, docs/capacity.md);
        the availabilities count only the largest responsibilities the
        capacity admits, and the final assignment fills no cluster beyond it.
        0: no bound (plain AP); a bound of n points or more is plain AP, bit
        for bit. A point the final assignment cannot place is cluster -1 with a
        null exemplar, counted by a ``CapacityWarning``
        (docs/capacity.md#points-left-out).
    endOn : {"best", "last"}, default "best"
        What a run that does not converge ends on: "best", the exemplar
        decisions of the largest net similarity (after the placement with
        ``maxClusterSize``) among the last 50 distinct ones it made, on every
        engine, for graphs of up to 5 million edges (evaluated on the driver;
        larger ones end on their last); "last", its last iteration's, as
        scikit-learn's. A converged run is the same either way.

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
        maxClusterSize: int = 0,
        endOn: str = "best",
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
        maxClusterSize: int = 0,
        endOn: str = "best",
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
            make them (:func:`~spark_ap.edges_from_features`): no nulls, no
            repeated pairs, numeric similarities. Their checks, a pass over the
            edges, are skipped and the column params are not read; ``vertices``
            is then ``id`` alone.
        """
        if isinstance(edges, GraphFrame):
            if vertices is not None:
                raise InvalidParamError("Give a GraphFrame alone: its vertices are the vertices table")
            renamed = self.copy({self.srcCol: "src", self.dstCol: "dst", self.idCol: "id"})
            return renamed.run(edges.edges, edges.vertices, validated=validated)
        settings = self._settings()
        if settings.engine == "graphframes":  # before the set-up's passes over the edges, not after
            require_graphframes(edges.sparkSession)
        if validated:
            ids = None if vertices is None else vertices.select("id")
            prepared, pairs = prepare_validated(edges, ids, self.getPreference()), None
        else:
            prepared = prepare(edges, vertices, self.getPreference(), self._columns(), self.getDuplicates())
            pairs = (self.getSrcCol(), self.getDstCol()) if self.getDuplicates() == "error" else None
        done = cluster(prepared, settings, state_dir=self.getStateDir(), params=self.resultParams(), pair_columns=pairs)
        return AffinityPropagationResult.of(done, prepared.preference)

    def _columns(self) -> Columns:
        return Columns(
            src=self.getSrcCol(),
            dst=self.getDstCol(),
            weight=self.getWeightCol(),
            id=self.getIdCol(),
            preference=self.getPreferenceCol(),
        )

    def resultParams(self) -> dict:
        """The params that decide what a run computes, by name: all but :data:`OPERATIONAL_PARAMS`."""
        return result_params(self)

    def assignClusters(self, edges: DataFrame | GraphFrame, vertices: DataFrame | None = None) -> DataFrame:
        """Cluster the graph and return ``id, cluster, exemplar``; see :meth:`run`."""
        return self.run(edges, vertices).assignments
