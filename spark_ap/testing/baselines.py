"""Baselines that capacitated AP is measured against (scripts/benchmark_capacity.py, scripts/capacity_demo.py):
a capacitated k-medoids and the net similarity both are scored by. numpy only, on a dense similarity matrix."""

from __future__ import annotations

import numpy as np

from spark_ap.engines.capacity import place


def net_similarity(S: np.ndarray, exemplar: np.ndarray, preference: float) -> float:
    """The objective AP maximises: each point's similarity to its exemplar, plus the preference once per
    exemplar (an exemplar's own similarity is the preference); ``exemplar[i]`` is point i's exemplar."""
    points = np.arange(S.shape[0])
    others = exemplar != points
    return float(S[points[others], exemplar[others]].sum() + preference * np.unique(exemplar).size)


def k_medoids(S: np.ndarray, k: int, capacity: int, seed: int = 0, rounds: int = 100) -> np.ndarray:
    """Each point's medoid under a capacity: k-means++ seeds on -S, then the exact placement
    (:func:`spark_ap.engines.capacity.place`) and medoid moves until the medoids stay."""
    rng = np.random.default_rng(seed)
    n = S.shape[0]
    medoids = [int(rng.integers(n))]
    for _ in range(k - 1):
        gap = -S[:, medoids].max(axis=1)  # squared distance to the nearest medoid
        medoids.append(int(rng.choice(n, p=gap / gap.sum())))
    chosen = np.arange(n)
    for _ in range(rounds):
        centres = np.array(sorted(medoids))
        i, j = np.nonzero(~np.eye(n, dtype=bool) & np.isin(np.arange(n), centres)[None, :])
        chosen = place(i, j, S[i, j], centres, n, capacity)
        moved = []
        for c in centres:
            members = np.flatnonzero(chosen == c)
            moved.append(int(members[np.argmax(S[np.ix_(members, members)].sum(axis=0))]))
        if sorted(moved) == list(centres):
            break
        medoids = moved
    return chosen
