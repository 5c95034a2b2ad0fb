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
go to the smallest id, as ``np.argmax`` picks the first index.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


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
    # Summed in source order, as numpy sums a column, so near-ties between
    # duplicate points resolve as they do in scikit-learn.
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


def label(edges: DataFrame, vertices: DataFrame, exemplars: DataFrame) -> DataFrame:
    """(id, cluster, exemplar) for every vertex, clusters numbered by exemplar id from 0.

    Vertices with no edge to any exemplar become singleton clusters.
    """
    chosen = nearest_exemplar(edges, exemplars)
    assigned = vertices.join(chosen, "id", "left").withColumn("exemplar", F.coalesce("exemplar", "id"))
    return assigned.join(cluster_numbers(assigned), "exemplar").select("id", "cluster", "exemplar")


def cluster_numbers(assigned: DataFrame) -> DataFrame:
    """(exemplar, cluster): the distinct exemplars of ``assigned``, numbered from 0 in id order.

    A rank over a window without a partition would move every exemplar into one
    partition. Instead the exemplars are range-partitioned by id, each partition
    numbers its own, and adds the count of the partitions before it.
    """
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
