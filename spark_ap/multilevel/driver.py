"""A complete graph's runs on the driver: the preference search with no Spark job between its attempts.

A feature table of at most ``exactBelow`` points is one level on all pairs,
which the local engine runs on the driver anyway (engine "auto"). Each attempt
of a ``numClusters`` search is then the same edges with another preference on
the self-edges, so :class:`DriverGraph` reads the edges and their noise from
Spark once and runs every attempt with the local engine's kernel
(:func:`~spark_ap.run.loop.iterate_on_driver`, which ends as a Spark run does):
bit for bit the messages and labels a Spark run computes (the noise is the
same function of the same normals, ``rules: sums``). Spark gets back the chosen
attempt's labels, once.

Not for a run with a ``stateDir``: its levels save their state through Spark
and resume from it (:func:`~spark_ap.multilevel.levels.run_level`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.compat import frame_from_arrow, to_arrow
from spark_ap.engines import engine_for, local
from spark_ap.engines.assign import arrow_id_type
from spark_ap.engines.capacity import warn_unplaced
from spark_ap.multilevel.levels import Level, LevelConfig, Levels, follow
from spark_ap.prepare.noise import with_noise
from spark_ap.prepare.preference import preference_of
from spark_ap.run.loop import Settings, iterate_on_driver, normals

log = logging.getLogger("spark_ap")


@dataclass
class DriverAttempt:
    """One run at ``preference``: each vertex's exemplar number (None: no exemplar) and how it went."""

    preference: float
    exemplar: np.ndarray | None
    clusters: int
    n_iter: int
    converged: bool
    history: list[tuple[int, int, int]]
    seconds: float


class DriverGraph:
    """The edges of a complete level, numbered and sorted as the local engine holds them."""

    def __init__(
        self,
        spark: SparkSession,
        id_type: T.DataType,
        ids: np.ndarray,
        edges: dict[str, np.ndarray],
        settings: Settings,
    ) -> None:
        self.spark, self.id_type, self.ids, self.settings = spark, id_type, ids, settings
        self.i, self.j = edges["i"], edges["j"]
        self.similarity, self.z = edges["similarity"], edges["z"]  # z: None without noise
        self.loop = self.i == self.j

    @staticmethod
    def applies(config: LevelConfig, n: int, complete: bool, connect: bool = False) -> bool:
        """Whether the runs on ``n`` points go to the driver: all pairs, the local engine, no saves,
        and more than one point (one point is scikit-learn's shortcut, which the Spark run takes)."""
        edges = n * n  # with the self-edges
        local = engine_for(config.settings.engine, edges, connect) == "local"
        return complete and n > 1 and config.state_dir is None and local

    @classmethod
    def read(cls, config: LevelConfig, points: DataFrame, pairs: DataFrame) -> DriverGraph | None:
        """The edges ``pairs`` (all pairs of ``points``), a self-edge per point and each edge's normal,
        read in one Spark job; None when all the similarities are equal (scikit-learn's shortcut)."""
        loops = points.select(F.col("id").alias("src"), F.col("id").alias("dst"), F.lit(0.0).alias("similarity"))
        edges, z = normals(pairs.unionByName(loops), config.settings)
        z = F.lit(None).cast("double") if z is None else z
        table = to_arrow(edges.select("src", "dst", "similarity", z.alias("z")))
        src = table.column("src").to_numpy(zero_copy_only=False)
        dst = table.column("dst").to_numpy(zero_copy_only=False)
        ids, i, j, order = local.number_edges(src, dst)
        similarity = table.column("similarity").to_numpy()[order]
        off = similarity[i != j]
        if off.min() == off.max():
            return None
        z = None if config.settings.noise == "none" else table.column("z").to_numpy()[order]
        columns = {"i": i, "j": j, "similarity": similarity, "z": z}
        return cls(points.sparkSession, points.schema["id"].dataType, ids, columns, config.settings)

    def preference_value(self, preference: float | str) -> float:
        """:func:`~spark_ap.prepare.preference.preference_value` of these edges."""
        return preference_of(self.similarity[~self.loop], preference)

    def net_similarity(self, attempt: DriverAttempt) -> float:
        """Frey and Dueck's objective of ``attempt``'s clusters, as the estimator's ``_net_similarity``:
        each other point's similarity to its exemplar, plus the preference of every exemplar."""
        exemplar = np.arange(self.ids.size) if attempt.exemplar is None else attempt.exemplar
        joins = (self.j == exemplar[self.i]) & ~self.loop
        return float(self.similarity[joins].sum()) + np.unique(exemplar[exemplar >= 0]).size * attempt.preference

    def run(self, preference: float, attempt: int = 0) -> DriverAttempt:
        """AP at ``preference``, as :func:`~spark_ap.run.loop.iterate` runs the local engine."""
        started = time.time()
        similarity = np.where(self.loop, preference, self.similarity)
        s = similarity if self.z is None else with_noise(similarity, self.z)
        exemplar, progress, _, _ = iterate_on_driver(self.i, self.j, s, self.settings)
        if exemplar is not None and self.settings.capacity:
            warn_unplaced(exemplar, self.settings.capacity)
        clusters = self.ids.size if exemplar is None else np.unique(exemplar[exemplar >= 0]).size
        converged, seconds = progress.converged(self.settings), round(time.time() - started, 3)
        log.info(
            "attempt %d on the driver: %d points -> %d clusters in %d iterations (converged=%s)",
            attempt,
            self.ids.size,
            clusters,
            progress.t,
            converged,
        )
        return DriverAttempt(preference, exemplar, clusters, progress.t, converged, progress.history, seconds)

    def levels(self, attempt: DriverAttempt) -> Levels:
        """``attempt`` as the one level of :func:`~spark_ap.multilevel.levels.run_levels`, in Spark."""
        n = self.ids.size
        # No exemplar found: every point is its own, as run_level counts it; -1 is a point the
        # placement left out: no exemplar (next null), as run_level keeps it.
        chosen = np.arange(n) if attempt.exemplar is None else attempt.exemplar
        out = chosen < 0
        kind = arrow_id_type(self.id_type)
        nxt = pa.array(self.ids[np.where(out, 0, chosen)], kind, mask=out)
        table = pa.table({"id": pa.array(self.ids, kind), "next": nxt})
        schema = T.StructType([T.StructField("id", self.id_type, False), T.StructField("next", self.id_type, True)])
        frame = frame_from_arrow(self.spark, table, schema)
        row = (
            0,
            n,
            self.i.size,
            "all pairs",
            attempt.clusters,
            attempt.n_iter,
            attempt.converged,
            None,
            attempt.seconds,
        )
        history = pd.DataFrame(attempt.history, columns=["iteration", "exemplars", "changed"]).assign(level=0)
        level = Level(frame, attempt.clusters, row, history, attempt.n_iter, attempt.converged)
        return Levels.of([level], follow(None, frame), attempt.preference, n)
