"""Cluster in batch, assign in real time: a Kafka broker, a fitted model, the streaming job and a few points.

    make stream-demo

Starts a single-node Kafka broker on 127.0.0.1 (Apache Kafka's own jars,
resolved on first use), fits a model on the bundled example and publishes it
as a run folder with a ``latest`` link (as the DAG does), starts
``spark-ap stream`` on it, produces a few points and two bad records, and
prints what comes back on the output and dead-letter topics. Everything it
writes is under ``output/stream-demo/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, Producer

from spark_ap import MultiLevelAffinityPropagation, spark_session
from spark_ap.app.pipeline import publish_latest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test broker's launcher is in tests/support, not in the package

from tests.support.kafka import KafkaBroker  # noqa: E402

OUT = ROOT / "output" / "stream-demo"
POINTS, ASSIGNED, DEAD = "points", "assignments", "points-dead"


def fit_and_publish(table: pd.DataFrame) -> Path:
    """Fit a model on ``table`` (id, x, y) and publish it as the run folder ``runs/blobs_400``."""
    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.log.level": "ERROR"}
    spark = spark_session("local[2]", **conf)
    rows = [(int(i), [float(x), float(y)]) for i, x, y in table[["id", "x", "y"]].itertuples(index=False)]
    model = MultiLevelAffinityPropagation(numClusters=6).fit(
        spark.createDataFrame(rows, "id long, features array<double>")
    )
    folder = OUT / "runs" / "blobs_400"
    folder.mkdir(parents=True)
    model.save(str(folder / "model"))
    (folder / "summary.json").write_text(json.dumps({"clusters": len(model.exemplars)}))
    print(f"Fitted {len(model.exemplars)} exemplars on the {len(table)} example points; model in {folder / 'model'}")
    return publish_latest(folder)


def read(servers: str, topic: str, count: int, job: subprocess.Popen, timeout: float = 180.0) -> list[dict]:
    consumer = Consumer(
        {"bootstrap.servers": servers, "group.id": "stream-demo", "auto.offset.reset": "earliest", "log_level": 3}
    )
    consumer.subscribe([topic])
    records, deadline = [], time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline and job.poll() is None:
        message = consumer.poll(1.0)
        if message is not None and not message.error():
            records.append(json.loads(message.value()))
    consumer.close()
    return records


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    table = pd.read_csv(ROOT / "examples" / "blobs_400.csv")
    latest = fit_and_publish(table)
    with KafkaBroker(OUT / "kafka") as broker:
        broker.create_topics(POINTS, ASSIGNED, DEAD)
        print(f"Kafka broker on {broker.bootstrap_servers}")
        command = [
            str(Path(sys.executable).parent / "spark-ap"), "stream",
            "--bootstrap-servers", broker.bootstrap_servers, "--input-topic", POINTS,
            "--output-topic", ASSIGNED, "--dead-letter-topic", DEAD, "--model", str(latest),
            "--checkpoint-location", str(OUT / "checkpoint"), "--trigger-seconds", "1", "--master", "local[2]",
        ]  # fmt: skip
        print("Starting:", " ".join(command[1:]))
        with open(OUT / "stream.log", "wb") as log:
            job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                # New points near the example's own: a few of them, moved a little.
                rng = np.random.default_rng(0)
                near = table.sample(8, random_state=0)[["x", "y"]].to_numpy() + rng.normal(0, 0.5, (8, 2))
                points = [{"id": f"p-{i}", "features": [round(float(v), 3) for v in x]} for i, x in enumerate(near)]
                producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "log_level": 3})
                for value in [json.dumps(p).encode() for p in points] + [
                    b"not json",
                    b'{"id": "p-x", "features": [1]}',
                ]:
                    producer.produce(POINTS, value)
                producer.flush(30)
                print(f"Produced {len(points)} points and 2 bad records to {POINTS!r}\n")
                assigned = read(broker.bootstrap_servers, ASSIGNED, len(points), job)
                dead = read(broker.bootstrap_servers, DEAD, 2, job)
            finally:
                os.killpg(job.pid, signal.SIGTERM)
                try:
                    job.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(job.pid, signal.SIGKILL)
                    job.wait()
    features = {p["id"]: p["features"] for p in points}
    print(f"{ASSIGNED}:")
    print(f"  {'id':<5} {'features':<18} {'cluster':>7} {'exemplar':>8} {'distance':>8}  model_version")
    for r in sorted(assigned, key=lambda r: r["id"]):
        print(
            f"  {r['id']:<5} {str(features[r['id']]):<18} {r['cluster']:>7} {r['exemplar']:>8} "
            f"{r['distance']:>8.3f}  {r['model_version']}"
        )
    print(f"{DEAD}:")
    for r in dead:
        print(f"  {r['value']!r}: {r['reason']}")
    print(f"\nModel: {latest} -> {os.readlink(latest)}")
    print(f"Stream checkpoint: {OUT / 'checkpoint'}; its log: {OUT / 'stream.log'}")
    if len(assigned) < len(points) or len(dead) < 2:
        print(f"Not every record came back; see {OUT / 'stream.log'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
