"""scikit-learn's degeneracy noise, drawn per edge so partitioning cannot change it.

scikit-learn adds ``(eps * s + tiny * 100) * z`` to every similarity, with ``z``
standard normal, to break ties between equally good exemplars. It draws ``z``
from one random stream in row-major order, which a distributed engine cannot
reproduce. Here ``z`` is a function of (seed, src, dst) only: two 53-bit
uniforms from Spark's xxhash64 turned into a normal by the Box-Muller transform.
"""

from __future__ import annotations

import math

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F

EPS = float(np.finfo(float).eps)
TINY = float(np.finfo(float).tiny)


def _uniform(seed: int, src: Column, dst: Column, stream: int) -> Column:
    """A uniform in (0, 1) from the top 53 bits of a 64-bit hash."""
    bits = F.shiftrightunsigned(F.xxhash64(F.lit(seed), F.lit(stream), src, dst), 11)
    return (bits.cast("double") + 0.5) / float(2**53)


def standard_normal(seed: int, src: Column, dst: Column) -> Column:
    """A standard normal that depends only on (seed, src, dst)."""
    u1 = _uniform(seed, src, dst, 1)
    u2 = _uniform(seed, src, dst, 2)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)


def with_noise(s: Column, seed: int, src: Column, dst: Column) -> Column:
    """``s`` plus scikit-learn's degeneracy noise."""
    return s + (EPS * s + TINY * 100) * standard_normal(seed, src, dst)
