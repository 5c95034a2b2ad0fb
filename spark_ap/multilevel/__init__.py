"""Affinity Propagation for feature tables too large for a complete graph.

On a sparse graph a point can only choose an exemplar it has an edge to, so on
a k-nearest-neighbour graph no cluster holds more than k + 1 points or so.
:class:`MultiLevelAffinityPropagation` goes past that limit by levels:

1. Level 0 clusters the points on their k-nearest-neighbour graph (exact
   all-pairs when there are few points, approximate above that, see
   :mod:`spark_ap.multilevel.neighbors`).
2. Each next level clusters the previous level's exemplars, each standing for
   its whole cluster: exemplar i choosing exemplar k costs what all of i's
   members would lose by moving to k,
   ``s'(i, k) = sum over members m of i of (s(m, k) - s(m, i))``,
   computed exactly from each cluster's size and feature sum; staying an
   exemplar costs the points' preference (less s(i, i), which that sum
   counts). Every point follows its exemplar.
3. Levels stop when the number of clusters no longer shrinks.

So each level optimises the same objective as AP on the complete graph would,
over the exemplars that are left. That objective has a scale: with a fixed
preference, a cluster of many points is worth splitting (dense AP on 2,000
points of one 10-D Gaussian at the median preference of 50 such blobs finds 5
exemplars, on 200 points 1). ``resolution`` fixes the scale: the levels weigh
clusters as if the data had ``resolution`` points, so the clusters are those AP
finds on that many points of the same data, whatever the data's size.
"""

from spark_ap.multilevel.estimator import MultiLevelAffinityPropagation
from spark_ap.multilevel.result import MultiLevelResult

__all__ = ["MultiLevelAffinityPropagation", "MultiLevelResult"]
