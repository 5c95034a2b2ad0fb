"""Capacitated AP against the exact optimum of the capacitated exemplar problem, on small instances.

    python scripts/benchmark_capacity.py [--instances 36] [--settings 0.5:15:200 0.9:50:1000 ...]
                                         [--ends best last] [--spark] [--verbose]

The instances come from a fixed generator (:func:`instances`): n from 20 to 60
points in 2 to 4 blobs of unequal sizes and spreads, a preference drawn from
several quantiles of the similarities, and a bound L from n/2 down to n/5.
Each is solved three ways:

* **optimum**: the capacitated exemplar problem as an integer program
  (``scipy.optimize.milp``): choose exemplars and assign every point to one,
  at most L points per cluster (exemplar included), maximising the net
  similarity (the similarities of the points to their exemplars plus the
  preference of every exemplar: Frey and Dueck's objective, with the bound);
* **capacitated AP**: ``maxClusterSize=L`` as spark-ap runs it on the driver
  (:func:`spark_ap.run.loop.iterate_on_driver`: the local engine's
  iterations, then the exact placement and the refined exemplars), or with
  ``--spark`` through ``AffinityPropagation(engine="local")`` on a local
  SparkSession;
* **capacitated k-medoids**: as many clusters as the optimum has, k-means++
  seeds, then the exact placement and medoid moves until nothing moves, best
  of 5 seeds (a baseline that is told the right count).

The gap is (optimum - net) / |optimum|. A run with points left out has no net
similarity on all the points: it is counted apart (and as an infinite gap).
"""

from __future__ import annotations

import argparse
import math
import warnings
from dataclasses import replace

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from spark_ap.engines.capacity import CapacityWarning
from spark_ap.run.loop import Settings, iterate_on_driver
from spark_ap.testing.baselines import k_medoids, net_similarity

EPS, TINY = np.finfo(float).eps, np.finfo(float).tiny


def instances(count: int = 36, seed: int = 20240611):
    """``count`` instances ``(S, preference, L)``: the same ones on every machine (numpy's PCG64)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(20, 61))
        blobs = int(rng.integers(2, 5))
        shares = rng.dirichlet(np.full(blobs, 0.7))
        sizes = np.maximum(1, np.floor(shares * n)).astype(int)
        sizes[np.argmax(sizes)] += n - sizes.sum()
        centres = rng.uniform(-12, 12, size=(blobs, 2))
        spread = rng.uniform(0.6, 2.5, size=blobs)
        X = np.concatenate([c + s * rng.normal(size=(k, 2)) for c, s, k in zip(centres, spread, sizes, strict=True)])
        S = -((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        off = S[~np.eye(n, dtype=bool)]
        preference = float(np.quantile(off, rng.choice([0.5, 0.2, 0.05, 0.01])))
        capacity = math.ceil(n / int(rng.integers(2, 6)))
        yield S, preference, capacity


def optimum(S: np.ndarray, preference: float, capacity: int) -> tuple[float, np.ndarray]:
    """The capacitated exemplar problem's best net similarity and each point's exemplar, by MILP.

    Binary c(i,k), i choosing k (c(k,k): k is an exemplar): every row sums to 1, c(i,k) <= c(k,k),
    and sum_i c(i,k) <= L c(k,k)."""
    n = S.shape[0]
    gain = S.copy()
    np.fill_diagonal(gain, preference)
    var = np.arange(n * n).reshape(n, n)  # var[i, k]
    rows = sparse.csr_matrix((np.ones(n * n), (np.repeat(np.arange(n), n), var.ravel())), shape=(n, n * n))
    i, k = np.nonzero(~np.eye(n, dtype=bool))
    pairs = np.arange(i.size)
    link = sparse.csr_matrix(
        (np.r_[np.ones(i.size), -np.ones(i.size)], (np.r_[pairs, pairs], np.r_[var[i, k], var[k, k]])),
        shape=(i.size, n * n),
    )
    load = sparse.lil_matrix((n, n * n))
    for c in range(n):
        load[c, var[:, c]] = 1.0
        load[c, var[c, c]] = 1.0 - capacity
    solved = milp(
        -gain.ravel(),
        constraints=[
            LinearConstraint(rows, 1, 1),
            LinearConstraint(link, -np.inf, 0),
            LinearConstraint(load.tocsr(), -np.inf, 0),
        ],
        integrality=np.ones(n * n),
        bounds=Bounds(0, 1),
        options={"time_limit": 300},
    )
    if solved.status != 0:
        raise RuntimeError(f"the MILP did not finish: {solved.message}")
    exemplar = np.argmax(solved.x.reshape(n, n) > 0.5, axis=1)
    return -solved.fun, exemplar


def capacitated_ap(S, preference, capacity, args, seed: int = 0) -> tuple[np.ndarray | None, bool, int]:
    """spark-ap's capacitated AP on the driver: each point's exemplar, converged, iterations.

    ``args.end`` "best": a run that does not converge ends on the best decisions it saw
    (:func:`spark_ap.run.loop.iterate_on_driver`, as the local engine does); "last": on its last
    iteration's, as before."""
    n = S.shape[0]
    i, j = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    s = np.where(i == j, preference, S[i, j])
    z = np.random.default_rng(seed).standard_normal(s.size)  # the degeneracy noise, as with noise="edge"
    s = s + (EPS * s + TINY * 100) * z
    settings = Settings(
        damping=args.damping,
        max_iter=args.max_iter,
        convergence_iter=args.convergence_iter,
        engine="local",
        capacity=capacity,
    )
    exemplar, progress, _, _ = iterate_on_driver(i, j, s, replace(settings, end_on=args.end))
    if exemplar is not None:  # a point left out is its own cluster, as a level counts it
        exemplar = np.where(exemplar >= 0, exemplar, np.arange(n))
    return exemplar, progress.converged(settings), progress.t


def capacitated_ap_spark(spark, S, preference, capacity, args) -> tuple[np.ndarray | None, bool, int]:
    """The same through ``AffinityPropagation(engine="local")``; points left out are -1."""
    from spark_ap import AffinityPropagation, edges_from_matrix

    ap = AffinityPropagation(
        engine="local",
        preference=preference,
        damping=args.damping,
        maxIter=args.max_iter,
        convergenceIter=args.convergence_iter,
        maxClusterSize=capacity,
    )
    result = ap.run(edges_from_matrix(spark, S))
    rows = result.assignments.toPandas().sort_values("id")
    exemplar = rows["exemplar"].fillna(-1).to_numpy().astype(int)
    return exemplar, result.converged, result.numIterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=36)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["0.5:15:200"],
        help="damping:convergenceIter:maxIter of each capacitated AP to run (default: the estimator's defaults)",
    )
    parser.add_argument(
        "--ends",
        nargs="+",
        choices=["best", "last"],
        default=["best"],
        help="what a run that does not converge ends on: the best decisions it saw (as spark-ap does), "
        "its last iteration's (as before), or both, each a row (on the driver only)",
    )
    parser.add_argument("--spark", action="store_true", help="run AffinityPropagation on a local SparkSession")
    parser.add_argument("--verbose", action="store_true", help="a line per instance")
    args = parser.parse_args()
    spark = None
    if args.spark:
        from spark_ap import spark_session

        spark = spark_session("local[2]", **{"spark.ui.enabled": "false"})
    runs = []
    for text in args.settings:
        damping, convergence_iter, max_iter = text.split(":")
        for end in args.ends if spark is None else ["best"]:
            runs.append(
                argparse.Namespace(
                    damping=float(damping), convergence_iter=int(convergence_iter), max_iter=int(max_iter), end=end
                )
            )
    tally = [Tally() for _ in runs]
    medoid_gaps = []
    for number, (S, preference, capacity) in enumerate(instances(args.instances)):
        best, exact = optimum(S, preference, capacity)
        k = np.unique(exact).size
        medoid = max(net_similarity(S, k_medoids(S, k, capacity, seed), preference) for seed in range(5))
        medoid_gaps.append((best - medoid) / abs(best))
        for run, counts in zip(runs, tally, strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if spark is None:
                    exemplar, done, iterations = capacitated_ap(S, preference, capacity, run)
                else:
                    exemplar, done, iterations = capacitated_ap_spark(spark, S, preference, capacity, run)
            gap, clusters = counts.add(S, preference, capacity, best, exemplar, done)
            if args.verbose:
                print(
                    f"{number:2d}: {run.damping}:{run.convergence_iter}:{run.max_iter} ends on {run.end}: "
                    f"n={S.shape[0]} L={capacity} K*={k} K={clusters} it={iterations} "
                    f"converged={done} gap={gap:.4f} k-medoids={medoid_gaps[-1]:.4f}",
                    flush=True,
                )
    medoid_gaps = np.array(medoid_gaps)
    how = "AffinityPropagation(engine='local'), local SparkSession" if spark else "on the driver"
    print(f"{args.instances} instances, capacitated AP {how}")
    print("| method | median gap | worst gap | within 1% | clusters over L | runs leaving points out | converged |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run, counts in zip(runs, tally, strict=True):
        gaps = np.array(counts.gaps)
        print(
            f"| capacitated AP, damping {run.damping}, convergenceIter {run.convergence_iter}, maxIter "
            f"{run.max_iter}, unconverged ends on the {run.end} decisions | {np.median(gaps):.2%} | "
            f"{gaps.max():.2%} | {(gaps <= 0.01).sum()} | {counts.over} | "
            f"{counts.left_out} ({counts.short} with K x L < n) | {counts.converged} |"
        )
    print(
        f"| capacitated k-medoids (the optimum's K, best of 5 seeds) | {np.median(medoid_gaps):.2%} | "
        f"{medoid_gaps.max():.2%} | {(medoid_gaps <= 0.01).sum()} | 0 | 0 | - |"
    )
    if spark is not None:
        spark.stop()


class Tally:
    """One setting's counts over the instances."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.over = self.left_out = self.short = self.converged = 0

    def add(self, S, preference, capacity, best, exemplar, done) -> tuple[float, int]:
        n = S.shape[0]
        self.converged += done
        exemplar = np.arange(n) if exemplar is None else exemplar
        placed = exemplar >= 0
        clusters = np.unique(exemplar[placed]).size
        self.over += int(np.bincount(exemplar[placed]).max() > capacity)
        if placed.all():
            gap = (best - net_similarity(S, exemplar, preference)) / abs(best)
        else:
            self.left_out += 1
            self.short += clusters * capacity < n
            gap = math.inf
        self.gaps.append(gap)
        return gap, clusters


if __name__ == "__main__":
    warnings.simplefilter("ignore", CapacityWarning)
    main()
