"""From exemplar decisions to clusters: assignment, refinement, labels.

On a complete graph this is scikit-learn's procedure exactly: every point joins
the exemplar it is most similar to, each cluster then moves its exemplar to the
member with the largest summed similarity from the cluster, and points are
assigned once more to the refined exemplars.

On a sparse graph, as in Frey's apclusterSparse, only edges count: a point
chooses among the exemplars it has an edge to, and a member can become its
cluster's exemplar only if every member has an edge to it. A point with no
edge to any exemplar cannot be assigned by similarity; it becomes an exemplar
of its own, a singleton cluster whose net similarity is its preference.

Ties (equal similarities, which the degeneracy noise makes vanishingly rare)
and sums follow :mod:`spark_ap.engines.rules` (rules: ties, sums).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.compat import frame_from_arrow, to_arrow

# Up to this many exemplars, clusters are numbered on the driver (a collect of their ids).
DRIVER_NUMBERS = 1_000_000


def _first_by(df: DataFrame, group: str, score: str, tiebreak: str) -> DataFrame:
    """Per ``group``, the row with the largest ``score`` (ties: smallest ``tiebreak``)."""
    w = Window.partitionBy(group).orderBy(F.col(score).desc(), F.col(tiebreak))
    return df.withColumn("_rank", F.row_number().over(w)).filter(F.col("_rank") == 1).drop("_rank")


def nearest_exemplar(edges: DataFrame, exemplars: DataFrame) -> DataFrame:
    """(id, exemplar) for every point with an edge to an exemplar; exemplars choose themselves.

    ``edges`` has (src, dst, s); ``exemplars`` has (id).
    """
    ids = exemplars.select(F.col("id").alias("dst"), F.lit(True).alias("dst_is_exemplar"))
    candidates = edges.join(ids, "dst").select("src", "dst", "s")
    best = _first_by(candidates, "src", "s", "dst").select(F.col("src").alias("id"), F.col("dst").alias("exemplar"))
    own = exemplars.select("id", F.col("id").alias("exemplar"))
    return best.join(own.select("id"), "id", "left_anti").unionByName(own)


def refine(edges: DataFrame, assignment: DataFrame) -> DataFrame:
    """(id) of the refined exemplars: per cluster, the member with the largest
    summed similarity from all members, among members every member has an edge to."""
    members_i = assignment.select(F.col("id").alias("src"), F.col("exemplar").alias("cluster"))
    members_j = assignment.select(F.col("id").alias("dst"), F.col("exemplar").alias("cluster_j"))
    sizes = assignment.groupBy(F.col("exemplar").alias("cluster")).agg(F.count(F.lit(1)).alias("size"))
    # Summed in source order (rules: sums), so near-ties between duplicate
    # points resolve as they do in scikit-learn.
    by_candidate = (
        Window.partitionBy("cluster", "dst")
        .orderBy("src")
        .rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    )
    scores = (
        edges.select("src", "dst", "s")
        .join(members_i, "src")
        .join(members_j, "dst")
        .filter(F.col("cluster") == F.col("cluster_j"))
        .select(
            "cluster",
            "dst",
            F.sum("s").over(by_candidate).alias("score"),
            F.count(F.lit(1)).over(by_candidate).alias("n"),
        )
        .dropDuplicates(["cluster", "dst"])
        .join(sizes, "cluster")
        .filter(F.col("n") == F.col("size"))
    )
    return _first_by(scores, "cluster", "score", "dst").select(F.col("dst").alias("id"))


def label(edges: DataFrame, vertices: DataFrame, exemplars: DataFrame, count: int | None = None) -> DataFrame:
    """(id, cluster, exemplar) for every vertex, clusters numbered by exemplar id from 0.

    Vertices with no edge to any exemplar become singleton clusters. ``count``, the number of
    vertices when the caller knows it, bounds the number of clusters (see :func:`cluster_numbers`).
    """
    chosen = nearest_exemplar(edges, exemplars)
    assigned = vertices.join(chosen, "id", "left").withColumn("exemplar", F.coalesce("exemplar", "id"))
    return assigned.join(cluster_numbers(assigned, count), "exemplar").select("id", "cluster", "exemplar")


def cluster_numbers(assigned: DataFrame, count: int | None = None) -> DataFrame:
    """(exemplar, cluster): the distinct exemplars of ``assigned``, numbered from 0 in id order.

    Up to :data:`DRIVER_NUMBERS` exemplars (``count``, when the caller knows it or
    a bound on it) are numbered on the driver. Otherwise, as a rank over a window without a
    partition would move every exemplar into one partition, the exemplars are
    range-partitioned by id, each partition numbers its own, and adds the count
    of the partitions before it.
    """
    if count is not None and count <= DRIVER_NUMBERS:
        distinct = assigned.select("exemplar").distinct()
        # Sorted as Spark sorts ids: numbers by value, strings by code point.
        exemplars = np.unique(to_arrow(distinct).column("exemplar").to_numpy(zero_copy_only=False))
        table = pa.table({"exemplar": exemplars, "cluster": pa.array(np.arange(exemplars.size), pa.int32())})
        schema = T.StructType([distinct.schema["exemplar"], T.StructField("cluster", T.IntegerType(), False)])
        return frame_from_arrow(assigned.sparkSession, table, schema)
    ranged = (
        assigned.select("exemplar")
        .distinct()
        .repartitionByRange("exemplar")
        .withColumn("part", F.spark_partition_id())
        .localCheckpoint()  # the partition ids must not change between the count and the numbering
    )
    counts = sorted((row["part"], row["count"]) for row in ranged.groupBy("part").count().collect())
    before = [(part, sum(count for _, count in counts[:i])) for i, (part, _) in enumerate(counts)]
    offsets = ranged.sparkSession.createDataFrame(before or [(0, 0)], "part int, before long")
    in_part = F.row_number().over(Window.partitionBy("part").orderBy("exemplar"))
    return ranged.join(F.broadcast(offsets), "part").select(
        "exemplar", (F.col("before") + in_part - 1).cast("int").alias("cluster")
    )


def label_state(state: DataFrame, vertices: int, decided: DataFrame | None = None) -> tuple[DataFrame, bool]:
    """``id, cluster, exemplar`` of the final edge ``state`` (one of its ``vertices`` per self-edge),
    persisted, and whether any vertex decided to be an exemplar (rules: decision, NaN): nearest
    exemplar, refinement, nearest refined exemplar; without exemplars, :func:`unassigned`.
    ``decided`` (``id``): the exemplars decided, instead of the state's last decisions."""
    # The tables have one row per vertex at most; checkpointing them keeps the plans short.
    on_self_edge = F.col("src") == F.col("dst")
    ids = state.filter(on_self_edge).select(F.col("src").alias("id"))
    if decided is None:
        decided = state.filter(on_self_edge & (F.col("r") + F.col("a") > 0)).select(F.col("src").alias("id"))
    decided = decided.localCheckpoint()
    if decided.isEmpty():
        return unassigned(ids).persist(), False
    first = nearest_exemplar(state, decided).localCheckpoint()
    exemplars = refine(state, first).localCheckpoint()
    return label(state, ids, exemplars, vertices).persist(), True


def unassigned(vertices: DataFrame) -> DataFrame:
    """Labels for a run that found no exemplar: cluster -1, no exemplar (as scikit-learn)."""
    return vertices.select(
        "id", F.lit(-1).alias("cluster"), F.lit(None).cast(vertices.schema["id"].dataType).alias("exemplar")
    )


def net_similarity(graph: DataFrame, assignments: DataFrame) -> float:
    """Sum of s(i, exemplar(i)) over all points; for an exemplar that is its preference."""
    joined = graph.join(
        assignments,
        (graph["src"] == assignments["id"]) & (graph["dst"] == assignments["exemplar"]),
    )
    value = joined.agg(F.sum("similarity").alias("net")).first()["net"]
    return float(value)


def exemplar_table(assignments: DataFrame) -> DataFrame:
    """(cluster, exemplar, size), one row per cluster."""
    return assignments.groupBy("cluster", "exemplar").agg(F.count(F.lit(1)).alias("size")).orderBy("cluster")


# The same rules on per-vertex numpy arrays, for the local and blocks engines: vertices
# numbered in id order (rules: ids). Bit for bit the
# DataFrame functions above. Where the per-edge work runs is the engine's: the local
# engine's edges are arrays on the driver (the *_on_driver functions), the blocks
# engine's are chunks in executors (:meth:`~spark_ap.engines.blocks.BlockEngine.assign`).


def label_vertices(
    decided: np.ndarray,
    nearest: Callable[[np.ndarray], np.ndarray],
    scores: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> np.ndarray | None:
    """Per vertex, its final exemplar's number, from the exemplar decisions ``decided`` (a boolean
    per vertex): nearest exemplar, refinement, nearest refined exemplar, as :func:`refine` and
    :func:`label`; a vertex with no edge to one is its own. None when no vertex decided.

    ``nearest(exemplar)`` gives, per vertex, the number of the exemplar (a boolean per vertex) it
    has its most similar edge to, ties to the smallest, -1 for none; ``scores(choice)`` gives, per
    vertex, the similarities summed in source order and the number of its edges from the members
    of its cluster under ``choice`` (-1: no cluster).
    """
    if not decided.any():
        return None
    choice = _choose(nearest, decided)
    refined = refined_exemplars(choice, *scores(choice))
    chosen = _choose(nearest, refined)
    return np.where(chosen >= 0, chosen, np.arange(chosen.size))


def _choose(nearest: Callable[[np.ndarray], np.ndarray], exemplar: np.ndarray) -> np.ndarray:
    """``nearest(exemplar)``, with the exemplars choosing themselves, as :func:`nearest_exemplar`."""
    choice = nearest(exemplar)
    choice[exemplar] = np.flatnonzero(exemplar)
    return choice


def refined_exemplars(choice: np.ndarray, score: np.ndarray, edges_in: np.ndarray) -> np.ndarray:
    """Per vertex, whether it is its cluster's refined exemplar: the largest ``score`` (ties: the
    smallest number) among the members every member of the cluster has an edge to; as :func:`refine`."""
    member = choice >= 0
    size = np.bincount(choice[member], minlength=choice.size)
    candidate = np.flatnonzero(member & (edges_in == size[np.where(member, choice, 0)]))
    order = np.lexsort((candidate, -score[candidate], choice[candidate]))
    candidate = candidate[order]
    cluster = choice[candidate]
    refined = np.zeros(choice.size, dtype=bool)
    refined[candidate[np.r_[True, cluster[1:] != cluster[:-1]]]] = True
    return refined


def cluster_of(exemplar: np.ndarray) -> np.ndarray:
    """Cluster numbers from 0 in exemplar order, from each vertex's exemplar number."""
    return np.searchsorted(np.unique(exemplar), exemplar).astype(np.int32)


def arrow_id_type(id_type: T.DataType) -> pa.DataType:
    """The Arrow type of vertex ids as Spark gives them after validation: long or string."""
    return pa.string() if isinstance(id_type, T.StringType) else pa.int64()


def labels_frame(spark: SparkSession, ids: np.ndarray, id_type: T.DataType, exemplar: np.ndarray | None) -> DataFrame:
    """``id, cluster, exemplar`` from the vertex ids in number order and each vertex's exemplar number,
    one row per vertex; -1 (or ``exemplar`` None: no exemplars at all) is no cluster: cluster -1 and a
    null exemplar, as :func:`unassigned`."""
    if exemplar is None:
        exemplar = np.full(ids.size, -1)
    none = exemplar < 0
    cluster = np.full(ids.size, -1, dtype=np.int32)
    cluster[~none] = cluster_of(exemplar[~none])
    exemplar_ids = pa.array(ids[np.where(none, 0, exemplar)], arrow_id_type(id_type), mask=none)
    schema = T.StructType(
        [
            T.StructField("id", id_type, False),
            T.StructField("cluster", T.IntegerType(), False),
            T.StructField("exemplar", id_type, True),
        ]
    )
    return frame_from_arrow(spark, pa.table({"id": ids, "cluster": cluster, "exemplar": exemplar_ids}), schema)


def nearest_on_driver(i: np.ndarray, j: np.ndarray, s: np.ndarray, exemplar: np.ndarray) -> np.ndarray:
    """``nearest`` of :func:`label_vertices` on the edges ``i, j, s`` (sorted by (i, j))."""
    to_exemplar = exemplar[j]
    ci, cj, cs = i[to_exemplar], j[to_exemplar], s[to_exemplar]
    order = np.lexsort((cj, -cs, ci))  # per source: the largest s first (rules: ties)
    ci, cj = ci[order], cj[order]
    first = np.r_[True, ci[1:] != ci[:-1]]
    choice = np.full(exemplar.size, -1, dtype=np.int64)
    choice[ci[first]] = cj[first]
    return choice


def scores_on_driver(i: np.ndarray, j: np.ndarray, s: np.ndarray, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` of :func:`label_vertices` on the edges ``i, j, s`` (sorted by (i, j))."""
    same = (choice[i] >= 0) & (choice[i] == choice[j])
    # np.bincount adds in array order: each target's terms in source order (rules: sums).
    score = np.bincount(j[same], weights=s[same], minlength=choice.size)
    return score, np.bincount(j[same], minlength=choice.size)


def label_on_driver(i: np.ndarray, j: np.ndarray, s: np.ndarray, decided: np.ndarray) -> np.ndarray | None:
    """:func:`label_vertices` on the edges ``i, j, s`` (sorted by (i, j)), held by the driver."""
    return label_vertices(
        decided, lambda exemplar: nearest_on_driver(i, j, s, exemplar), lambda choice: scores_on_driver(i, j, s, choice)
    )
