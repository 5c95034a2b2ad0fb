"""Capacitated AP on blobs with one large blob, beside plain AP and a capacitated k-medoids.

    python scripts/capacity_demo.py [--out docs/images/capacity.png]

Three blobs of 600, 100 and 100 points and a bound of 200 points per cluster.
Plain AP runs at a preference where it finds the 3 blobs (the large one
above the bound); capacitated AP (``maxClusterSize=200``) at the same
preference; both with damping 0.9. The baseline is k-medoids with the same capacity and as many
clusters as capacitated AP found: medoids seeded by k-means++ on the
similarities, then alternately the points placed within the capacity (the
same exact assignment spark-ap's final step makes) and each cluster's medoid
moved to the member with the largest summed similarity, until nothing moves.
Each method's net similarity is Frey and Dueck's objective: every point's
similarity to its exemplar, plus the preference for every exemplar.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402

from spark_ap import MultiLevelAffinityPropagation, similarity_matrix, spark_session  # noqa: E402
from spark_ap.testing.baselines import k_medoids, net_similarity  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CAPACITY = 200
# Where plain AP finds the three blobs (3 clusters from about -800 to -3,200 here).
PREFERENCE = -800.0


def exemplars_of(result, n: int) -> np.ndarray:
    rows = result.assignments.toPandas().set_index("id").sort_index()
    return rows["exemplar"].to_numpy()[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "capacity.png")
    args = parser.parse_args()
    X, _ = make_blobs([600, 100, 100], centers=[[0, 0], [20, 0], [0, 20]], cluster_std=1.0, random_state=0)
    n = len(X)
    S = similarity_matrix(X)
    spark = spark_session("local[2]", **{"spark.ui.enabled": "false"})
    table = spark.createDataFrame([(i, [float(v) for v in x]) for i, x in enumerate(X)], ["id", "features"])

    # Damping 0.9: at these low preferences AP oscillates with 0.5 (scikit-learn's too).
    plain = MultiLevelAffinityPropagation(preference=PREFERENCE, damping=0.9).run(table)
    bounded = MultiLevelAffinityPropagation(preference=PREFERENCE, maxClusterSize=CAPACITY, damping=0.9).run(table)
    plain_e, bounded_e = exemplars_of(plain, n), exemplars_of(bounded, n)
    medoid_e = k_medoids(S, np.unique(bounded_e).size, CAPACITY, rounds=50)

    rows = []
    for name, exemplar in (
        ("plain AP", plain_e),
        (f"capacitated AP, maxClusterSize={CAPACITY}", bounded_e),
        (f"capacitated k-medoids, k={np.unique(medoid_e).size}", medoid_e),
    ):
        sizes = np.bincount(np.unique(exemplar, return_inverse=True)[1])
        rows.append((name, np.unique(exemplar).size, int(sizes.max()), net_similarity(S, exemplar, plain.preference)))
    print(f"800 points (600, 100, 100), preference {PREFERENCE:g}, damping 0.9\n")
    print("| method | clusters | largest cluster | net similarity |")
    print("| --- | ---: | ---: | ---: |")
    for name, clusters, largest, net in rows:
        print(f"| {name} | {clusters} | {largest} | {net:.1f} |")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
    for ax, (title, exemplar) in zip(
        axes, (("plain AP", plain_e), (f"maxClusterSize={CAPACITY}", bounded_e)), strict=True
    ):
        clusters = np.unique(exemplar, return_inverse=True)[1]
        ax.scatter(X[:, 0], X[:, 1], c=clusters, cmap="tab10", s=6)
        centres = np.unique(exemplar)
        ax.scatter(X[centres, 0], X[centres, 1], c="black", marker="x", s=60)
        sizes = np.bincount(clusters)
        ax.set_title(f"{title}: {centres.size} clusters, largest {sizes.max()}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"\npicture: {args.out}")
    spark.stop()


if __name__ == "__main__":
    main()
