"""The conventions every engine, the final assignment and the numpy oracle follow, stated once.

The engines compute the same messages and the same clusters bit for bit
because they all keep these rules; each place that implements one names it
(``rules: ties`` and so on) rather than restating it.

**ids**
    Vertices are numbered 0..n-1 in id order, as Spark orders ids (numbers by
    value, strings by code point), so "the smallest id" is "the smallest
    number" wherever the engines work on numbers.

**ties**
    Where a largest value is picked (the top a(i,k') + s(i,k') of a source,
    the nearest exemplar, a cluster's refined exemplar) and several are
    equal, the smallest id wins, as ``np.argmax`` picks the first index.

**NaN**
    A vertex whose only edge is its self-edge has no k' != k: the largest
    a + s over them is -inf, so r(k,k) = inf and a(k,k) = inf - inf = NaN,
    as in the dense computation. Spark SQL orders NaN above every number, so
    such a vertex is an exemplar there; the numpy engines decide with
    "not r + a <= 0" rather than "r + a > 0" to agree.

**sums**
    Floating-point sums are only reproducible in a fixed order: a target's
    availability total, and a candidate exemplar's summed similarity in the
    refinement, add their terms in source order, as numpy adds a column
    (``np.bincount`` over edges sorted by (source, target); a fold over the
    sorted messages in Spark). Maxima are exact in any order, so partial
    tops merge wherever they meet.

**capacity**
    With ``maxClusterSize`` L, a target keeps the L - 1 largest positive
    r(i',k) of the other points, ties going to the smaller source (so every
    engine keeps the same terms), and the others' terms are 0 in its total,
    which is still added in source order; with L >= n nothing is dropped and
    every message is plain AP's. The update and its derivation:
    :func:`~spark_ap.engines.blocks.kernel.capacitated`, docs/capacity.md.

**decision**
    Vertex k is an exemplar when r(k,k) + a(k,k) > 0 (with the NaN rule
    above); ``run`` counts the iterations in a row its decision has held,
    which is all scikit-learn's convergence test needs.
"""

from __future__ import annotations

#: The edge state the engines hand over (to a save, to the final assignment, to the result), one
#: row per edge, self-edges included. ``similarity`` is the input value, ``s`` the value the
#: messages use (with the degeneracy noise when it is on), ``r`` and ``a`` the messages; ``e``
#: (the exemplar decision), ``run`` and ``changed`` are read on self-edges only.
EDGE_STATE = ("src", "dst", "similarity", "s", "r", "a", "e", "run", "changed")

#: The edge state a result shows as its ``messages``.
MESSAGES = EDGE_STATE[:6]
