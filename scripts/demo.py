"""Cluster the bundled 2-D example with the spark-ap job and print where the results are.

python scripts/demo.py [--output output/demo]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from spark_ap.job import parser, run

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--output", default="output/demo", help="run folder prefix; a timestamp is appended")
    output = f"{cli.parse_args().output}-{time.strftime('%Y%m%d-%H%M%S')}"
    args = parser().parse_args(
        ["--input", str(ROOT / "examples" / "blobs_400.csv"), "--output", output]
        + ["--kind", "features", "--config", str(ROOT / "conf" / "spark-ap.yaml")]
        + ["--damping", "0.7", "--preference", "0.1"]
    )
    out = run(args)
    print("\nThe run folder:")
    for name in (
        "summary.json",
        "assignments.parquet",
        "exemplars.csv",
        "history.csv",
        "clusters.png",
        "convergence.png",
    ):
        print(f"  {out / name}")


if __name__ == "__main__":
    main()
