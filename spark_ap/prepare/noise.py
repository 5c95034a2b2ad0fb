"""scikit-learn's degeneracy noise, in two flavours.

scikit-learn adds ``(eps * s + tiny * 100) * z`` to every similarity (after the
preferences are on the diagonal), with ``z`` standard normal, to break ties
between equally good exemplars. It draws ``z`` as
``np.random.RandomState(seed).standard_normal((n, n))``, one stream in
row-major order.

* ``"edge"`` (the default): ``z`` is a function of (seed, src, dst) only, two
  53-bit uniforms from Spark's xxhash64 turned into a normal by the Box-Muller
  transform. Any graph size, any partitioning, computed where the edges are.
* ``"sklearn"``: ``z`` is entry (i, k) of scikit-learn's matrix, with i and k
  the vertices' positions in id order. The driver draws the stream a block of
  rows at a time (never the n x n matrix) and keeps the entries of the edges,
  so it is for graphs up to :data:`SKLEARN_MAX_VERTICES` vertices. With it, a
  complete graph gives exactly scikit-learn's iteration count, not only its
  clusters.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_ap.compat import frame_from_arrow, to_arrow
from spark_ap.errors import InvalidParamError

EPS = float(np.finfo(float).eps)
TINY = float(np.finfo(float).tiny)
# n x n normals are drawn for scikit-learn's noise: 4e8 at this size, about 20 s
# on one core, as much as scikit-learn itself draws for a dense matrix that size.
SKLEARN_MAX_VERTICES = 20_000
# Normals drawn per block of rows (32 MB).
_BLOCK = 1 << 22


def _uniform(seed: int, src: Column, dst: Column, stream: int) -> Column:
    """A uniform in (0, 1) from the top 53 bits of a 64-bit hash."""
    bits = F.shiftrightunsigned(F.xxhash64(F.lit(seed), F.lit(stream), src, dst), 11)
    return (bits.cast("double") + 0.5) / float(2**53)


def standard_normal(seed: int, src: Column, dst: Column) -> Column:
    """A standard normal that depends only on (seed, src, dst)."""
    u1 = _uniform(seed, src, dst, 1)
    u2 = _uniform(seed, src, dst, 2)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)


def with_noise(s: Column, z: Column) -> Column:
    """``s`` plus scikit-learn's degeneracy noise for the standard normal ``z``."""
    return s + (EPS * s + TINY * 100) * z


def sklearn_normals(graph: DataFrame, seed: int) -> DataFrame:
    """``src, dst, z``: for every edge of ``graph``, scikit-learn's normal for its entry of the matrix.

    ``graph`` has a self-edge per vertex, so its sources are all the vertices.

    Raises
    ------
    InvalidParamError
        The graph has more than :data:`SKLEARN_MAX_VERTICES` vertices.
    """
    n = graph.filter(F.col("src") == F.col("dst")).count()
    if n > SKLEARN_MAX_VERTICES:
        raise InvalidParamError(
            f"noise='sklearn' draws scikit-learn's n x n normals on the driver; this graph has {n} vertices, "
            f"more than {SKLEARN_MAX_VERTICES}. Use noise='edge' (the default), which gives the same clusters."
        )
    pairs = to_arrow(graph.select("src", "dst"))
    src, dst = pairs.column("src").to_numpy(zero_copy_only=False), pairs.column("dst").to_numpy(zero_copy_only=False)
    # Positions in id order, as Spark orders ids: numbers by value, strings by code point.
    ids = np.unique(src)
    i, k = np.searchsorted(ids, src), np.searchsorted(ids, dst)
    order = np.lexsort((k, i))
    z = np.empty(src.size)
    stream = np.random.RandomState(seed)
    rows = max(1, _BLOCK // n)
    # The legacy generator's stream goes on across calls: row blocks drawn one
    # after the other are the rows of the one (n, n) draw.
    bounds = np.searchsorted(i[order], np.arange(0, n + rows, rows))
    for block, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=False)):
        first = block * rows
        values = stream.standard_normal((min(rows, n - first), n))
        at = order[lo:hi]
        z[at] = values[i[at] - first, k[at]]
    table = pa.table({"src": pairs.column("src"), "dst": pairs.column("dst"), "z": z})
    return frame_from_arrow(graph.sparkSession, table)
