"""The streaming job against a real Kafka broker: assignments, dead letters, a new model, a killed job."""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer
from pyspark.errors import StreamingQueryException
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagationModel, MultiLevelAffinityPropagation
from spark_ap.app.pipeline import publish_latest
from spark_ap.app.stream.job import _progress_bug, stream_failure
from spark_ap.app.stream.models import ModelSource
from spark_ap.app.stream.records import MAX_DEAD_VALUE, _Loaded, assign_records, parse_point
from spark_ap.errors import SparkAPError
from spark_ap.session import KAFKA_PACKAGE, submit_arguments
from tests.conftest import BIN, ROOT, feature_frame
from tests.support.kafka import KafkaBroker, _cluster_id


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as running:
        yield running


def _publish(spark, root: Path, name: str, X, **params):
    """Fit a model on ``X``, save it in the run folder ``root/name`` as the job does, point latest at it."""
    model = MultiLevelAffinityPropagation(**params).fit(feature_frame(spark, X))
    folder = root / name
    folder.mkdir(parents=True)
    model.save(str(folder / "model"))
    (folder / "summary.json").write_text("{}")
    return model, publish_latest(folder)


def _produce(broker, topic: str, values: list) -> None:
    # Idempotent: a retried send cannot reorder or repeat records, whose offsets the tests check.
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, value if value is None or isinstance(value, bytes) else json.dumps(value).encode())
    assert producer.flush(30) == 0


def _good(ids, X) -> list[dict]:
    return [{"id": int(i), "features": [float(v) for v in x]} for i, x in zip(ids, X, strict=True)]


def _read(broker, topic: str, until, timeout: float = 240.0, job=None) -> list[tuple]:
    """(key, value as dict, source header) of every record in ``topic``, once ``until(records)`` holds."""
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap_servers, "group.id": f"test-{time.monotonic_ns()}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.subscribe([topic])
    records, deadline = [], time.monotonic() + timeout
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(records)} records after {timeout} s")
            if job is not None and job.poll() is not None:
                raise AssertionError(f"the stream exited with {job.returncode} while {topic} had {len(records)}")
            message = consumer.poll(1.0)
            if message is not None and not message.error():
                source = dict(message.headers() or [])["source"].decode()
                records.append((message.key(), json.loads(message.value()), source))
        return records
    finally:
        consumer.close()


def _stream_args(broker, tmp: Path, topic: str, latest: Path) -> list[str]:
    return [
        "stream", "--bootstrap-servers", broker.bootstrap_servers, "--input-topic", topic,
        "--output-topic", f"{topic}-assigned", "--dead-letter-topic", f"{topic}-dead",
        "--model", str(latest), "--checkpoint-location", str(tmp / "checkpoint"), "--master", "local[2]",
    ]  # fmt: skip


def _available_now(broker, tmp: Path, topic: str, latest: Path) -> subprocess.CompletedProcess:
    """``spark-ap stream --available-now``: assign what the topic holds, then stop."""
    command = [str(BIN / "spark-ap"), *_stream_args(broker, tmp, topic, latest), "--available-now"]
    return subprocess.run(command, timeout=600)


def _expected(model, spark, X, ids) -> dict:
    """model.transform's (cluster, exemplar) per id: the batch path the stream must agree with."""
    rows = model.transform(feature_frame(spark, X, ids)).select("id", "cluster", "exemplar").collect()
    return {row.id: (row.cluster, row.exemplar) for row in rows}


@pytest.fixture(scope="module")
def saved(spark, tmp_path_factory):
    """Four models fit on different points, saved as ``<root>/<name>/model`` (a, b, c, d), and the fitted
    models by name: they assign the same points to other clusters, not only under other versions."""
    root = tmp_path_factory.mktemp("models")
    fitted = {}
    for name, centers, seed in (("a", 3, 1), ("b", 5, 2), ("c", 4, 7), ("d", 6, 8)):
        X, _ = make_blobs(40, n_features=2, centers=centers, random_state=seed)
        fitted[name] = MultiLevelAffinityPropagation().fit(feature_frame(spark, X))
        fitted[name].save(str(root / name / "model"))
    return root, fitted


def _run_folder(saved, runs: Path, run: str, name: str) -> Path:
    """The run folder ``runs/<run>`` holding model ``name``, written as the job writes it, or its model
    overwritten in place (deleted, then written again); latest names it."""
    folder = runs / run
    shutil.rmtree(folder / "model", ignore_errors=True)
    shutil.copytree(saved[0] / name / "model", folder / "model")
    (folder / "summary.json").write_text("{}")
    return Path(publish_latest(folder))


def test_every_record_is_answered_once_on_the_right_topic(spark, broker, tmp_path):
    X, _ = make_blobs(80, n_features=3, centers=4, random_state=5)
    model, latest = _publish(spark, tmp_path / "runs", "run-1", X)
    new, _ = make_blobs(40, n_features=3, centers=4, random_state=6)
    ids = range(1000, 1040)
    bad = [
        (b"not json", "not JSON"),
        (b"[1, 2, 3]", "not a JSON object but a list"),
        ({"features": [1.0, 2.0, 3.0]}, "no id"),
        ({"id": 7}, "no features"),
        ({"id": 8, "features": [1.0, 2.0]}, "features has 2 values; the model's exemplars have 3"),
        (b'{"id": 9, "features": [1.0, NaN, 3.0]}', "features[1] is nan"),
        ({"id": 10, "features": ["a", 2.0, 3.0]}, "features must be a list of numbers"),
        ({"id": True, "features": [1.0, 2.0, 3.0]}, "id must be a string or an integer"),
        (None, "no value"),
    ]
    broker.create_topics("points", "points-assigned", "points-dead")
    _produce(broker, "points", _good(ids[:20], new[:20]) + [value for value, _ in bad] + _good(ids[20:], new[20:]))

    done = _available_now(broker, tmp_path, "points", latest)
    assert done.returncode == 0

    out = _read(broker, "points-assigned", lambda r: len(r) >= 40)
    assert sorted(value["id"] for _, value, _ in out) == list(ids)
    assert all(key == str(value["id"]).encode() for key, value, _ in out)
    expected = _expected(model, spark, new, ids)
    exemplar_features = dict(zip(range(len(X)), X, strict=True))
    for _, value, _ in out:
        assert (value["cluster"], value["exemplar"]) == expected[value["id"]]
        point = new[value["id"] - 1000]
        assert value["distance"] == pytest.approx(np.linalg.norm(point - exemplar_features[value["exemplar"]]))
        assert value["model_version"] == "run-1"

    dead = _read(broker, "points-dead", lambda r: len(r) >= len(bad))
    # Sources are topic/partition/offset: the bad records sit at offsets 20..28.
    by_offset = {int(source.rsplit("/", 1)[1]): value for _, value, source in dead}
    assert sorted(by_offset) == list(range(20, 20 + len(bad)))
    for offset, (record, reason) in enumerate(bad, start=20):
        assert reason in by_offset[offset]["reason"]
        if isinstance(record, bytes):
            assert by_offset[offset]["value"] == record.decode()


def test_new_and_overwritten_models_are_used_without_a_restart_and_a_failed_batch_reruns_identically(
    saved, spark, broker, tmp_path
):
    runs, fitted = tmp_path / "runs", saved[1]
    latest = _run_folder(saved, runs, "run-1", "a")
    broker.create_topics("events", "events-assigned", "events-dead")
    new, _ = make_blobs(150, n_features=2, centers=5, random_state=3)
    expected = {name: _expected(model, spark, new, range(150)) for name, model in fitted.items()}
    checkpoint = tmp_path / "checkpoint"

    def batches(log: str) -> list[int]:
        folder = checkpoint / log
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []

    def answered(records, name: str, version: str) -> None:
        """``records`` are model ``name``'s answers (which no other model gives) under ``version``."""
        found = {v["id"]: (v["cluster"], v["exemplar"]) for _, v, _ in records}
        mine = {i: expected[name][i] for i in found}
        assert found == mine and all(mine != {i: expected[o][i] for i in found} for o in fitted if o != name)
        assert {value["model_version"] for _, value, _ in records} == {version}

    # The job under spark-submit, one micro-batch a second of at most 10 records.
    args = [*_stream_args(broker, tmp_path, "events", latest), "--trigger-seconds", "1"]
    submit = [str(BIN / "spark-submit"), *submit_arguments({"spark.jars.packages": KAFKA_PACKAGE})]
    command = [*submit, str(ROOT / "scripts" / "spark_ap_job.py"), *args, "--max-offsets-per-trigger", "10"]
    with open(tmp_path / "stream.log", "wb") as log:
        job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _produce(broker, "events", _good(range(0, 30), new[0:30]))
            answered(_read(broker, "events-assigned", lambda r: len(r) >= 30, job=job), "a", "run-1")

            # A new run published: used from the next micro-batch on.
            _run_folder(saved, runs, "run-2", "b")
            _produce(broker, "events", _good(range(30, 60), new[30:60]))
            second = _read(broker, "events-assigned", lambda r: len(r) >= 60, job=job)[30:]
            answered(second, "b", "run-2")

            # The same run's model overwritten in place: used from the next micro-batch on too.
            _run_folder(saved, runs, "run-2", "c")
            _produce(broker, "events", _good(range(60, 90), new[60:90]))
            third = _read(broker, "events-assigned", lambda r: len(r) >= 90, job=job)[60:]
            answered(third, "c", "run-2")

            # A micro-batch that writes its records and then fails to commit: commits/ is a file now. Once
            # the last batch has committed and reported its progress (its commit is a file renamed in place,
            # and its checksum file after it), the job is idle until new records come.
            def idle() -> bool:
                last = batches("offsets")[-1]
                reported = f'"batchId" : {last},' in (tmp_path / "stream.log").read_text()
                return batches("commits")[-1:] == [last] and reported

            deadline = time.monotonic() + 120
            while not idle():
                assert job.poll() is None and time.monotonic() < deadline, "the last micro-batch never committed"
                time.sleep(0.05)
            (checkpoint / "commits").rename(tmp_path / "commits")
            (checkpoint / "commits").write_text("not a folder")
            _produce(broker, "events", _good(range(90, 150), new[90:150]))
            assert job.wait(timeout=300) != 0
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
    errors = [line for line in (tmp_path / "stream.log").read_text().splitlines() if "spark-ap stream: error:" in line]
    assert len(errors) == 1 and str(checkpoint / "commits") in errors[0], errors
    (checkpoint / "commits").unlink()
    (tmp_path / "commits").rename(checkpoint / "commits")

    def end_of(batch: int) -> int:  # an offsets file: a version line, metadata, then {topic: {partition: end}}
        return json.loads((checkpoint / "offsets" / str(batch)).read_text().splitlines()[2])["events"]["0"]

    committed, failed = batches("commits")[-1], batches("offsets")[-1]
    assert failed == committed + 1
    replayed = range(end_of(committed), end_of(failed))
    assert json.loads((checkpoint / "models" / str(failed)).read_text())["version"] == "run-2"

    # While the job is down, run-2's model is overwritten in place once more: the failed batch runs
    # again with the model it started with (c), the batches after it with the new one (d).
    _run_folder(saved, runs, "run-2", "d")
    done = _available_now(broker, tmp_path, "events", latest)
    assert done.returncode == 0, (tmp_path / "stream.log").read_text()[-3000:]

    out = _read(broker, "events-assigned", lambda r: len({s for _, _, s in r}) >= 150)
    by_offset: dict[int, list] = {}
    for key, value, source in out:
        by_offset.setdefault(int(source.rsplit("/", 1)[1]), []).append((key, value))
    assert sorted(by_offset) == list(range(150))
    assert all(value["id"] == offset for offset, found in by_offset.items() for _, value in found)
    # Committed batches are written once; the failed batch twice, identically, with model c.
    assert [offset for offset, found in by_offset.items() if len(found) != 1] == list(replayed)
    assert len(replayed) >= 1
    assert all(by_offset[offset][0] == by_offset[offset][1] for offset in replayed)
    answered([(key, value, None) for offset in replayed for key, value in by_offset[offset][:1]], "c", "run-2")
    after = [(key, value, None) for offset in range(replayed.stop, 150) for key, value in by_offset[offset]]
    assert after
    answered(after, "d", "run-2")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b'"a string"', "not a JSON object but a str"),
        (b'{"id": null, "features": [1, 2]}', "no id"),
        (b'{"id": 1.5, "features": [1, 2]}', "id must be a string or an integer"),
        (b'{"id": "a", "features": [1, Infinity]}', "features[1] is inf"),
        (b'{"id": "a", "features": "1,2"}', "features must be a list of numbers"),
    ],
)
def test_the_reason_names_what_is_wrong_with_a_record(value, reason):
    point, problem = parse_point(value, "features", 2)
    assert point is None and reason in problem


def test_a_good_record_keeps_its_id_and_features():
    assert parse_point(b'{"id": "a-7", "features": [1, 2.5], "extra": 3}', "features", 2) == (("a-7", [1.0, 2.5]), None)


def test_a_cosine_model_refuses_a_zero_vector():
    point, problem = parse_point(b'{"id": 1, "features": [0, 0.0]}', "features", 2, "cosine")
    assert point is None and "all 0" in problem
    assert parse_point(b'{"id": 1, "features": [0, 0.0]}', "features", 2)[1] is None


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--model", "/nonexistent/latest", "--model /nonexistent/latest holds no model"),
        ("--kafka-option", "security.protocol", "expected KEY=VALUE"),
        ("--trigger-seconds", "0", "--trigger-seconds must be a positive number of seconds; got 0"),
        ("--trigger-seconds", "-2.5", "--trigger-seconds must be a positive number of seconds; got -2.5"),
        ("--trigger-seconds", "nan", "--trigger-seconds must be a positive number of seconds; got nan"),
        ("--max-offsets-per-trigger", "0", "--max-offsets-per-trigger must be at least 1; got 0"),
    ],
)
def test_the_job_refuses_what_it_cannot_use_before_spark_starts(tmp_path, flag, value, message):
    model = tmp_path / "run" / "model" / "metadata"
    model.mkdir(parents=True)
    args = {"--model": str(tmp_path / "run"), "--checkpoint-location": str(tmp_path / "checkpoint"), flag: value}
    topics = ["--input-topic", "in", "--output-topic", "out", "--dead-letter-topic", "dead"]
    paths = [x for pair in args.items() for x in pair]
    command = [str(BIN / "spark-ap"), "stream", "--bootstrap-servers", "127.0.0.1:9", *topics, *paths]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_model_on_a_namenode_that_does_not_answer_is_refused_in_one_line(tmp_path):
    # A URI is read through Spark (spark_ap.files): the session starts, and the namenode is asked once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the socket is closed
    topics = ["--input-topic", "in", "--output-topic", "out", "--dead-letter-topic", "dead"]
    paths = ["--model", f"hdfs://127.0.0.1:{port}/runs", "--checkpoint-location", str(tmp_path / "checkpoint")]
    command = [str(BIN / "spark-ap"), "stream", "--bootstrap-servers", "127.0.0.1:9", *topics, *paths]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("spark-ap stream: error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert errors == [
        f"spark-ap stream: error: hdfs://127.0.0.1:{port}/runs: cannot reach the namenode 127.0.0.1:{port} "
        "within 10 s (Connection refused)"
    ]
    assert not (tmp_path / "checkpoint").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        # Blank names would reach Kafka's client, which fails mid-start with a stack trace.
        ("--bootstrap-servers", "", "--bootstrap-servers is empty"),
        ("--input-topic", "", "--input-topic is empty"),
        ("--output-topic", " ", "--output-topic is empty"),
        ("--dead-letter-topic", "", "--dead-letter-topic is empty"),
        ("--features-field", "", "--features-field is empty"),
        ("--model", "", "--model is empty"),
        ("--checkpoint-location", "", "--checkpoint-location is empty"),
        # Wrong types and values, in one line (argparse printed the usage of every option first).
        ("--trigger-seconds", "abc", "argument --trigger-seconds: invalid float value: 'abc'"),
        ("--trigger-seconds", "inf", "--trigger-seconds must be a positive number of seconds; got inf"),
        ("--max-offsets-per-trigger", "1.5", "argument --max-offsets-per-trigger: invalid int value: '1.5'"),
        ("--starting-offsets", "", "argument --starting-offsets: invalid choice: ''"),
        # The checkpoint folder: a file, a link to nothing, inside a file.
        ("--checkpoint-location", "{tmp}/notes.txt", "--checkpoint-location {tmp}/notes.txt is a file, not a folder"),
        ("--checkpoint-location", "{tmp}/gone", "--checkpoint-location {tmp}/gone is a link to {tmp}/nowhere, which"),
        ("--checkpoint-location", "{tmp}/notes.txt/cp", "{tmp}/notes.txt (in {tmp}/notes.txt/cp) is a file"),
        ("--model", "{tmp}/gone", "--model {tmp}/gone holds no model"),
        ("--model", "{tmp}/notes.txt", "--model {tmp}/notes.txt holds no model"),
    ],
)
def test_the_job_refuses_bad_options_in_one_line_and_writes_nothing(
    tmp_path, capsys, monkeypatch, flag, value, message
):
    # In-process (the subprocess table above runs the command): a row that reached Spark would fail here.
    from spark_ap.app.stream import job as stream_job

    monkeypatch.setattr(stream_job, "spark_session", lambda **_: pytest.fail("Spark started"))
    (tmp_path / "run" / "model" / "metadata").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    args = {"--bootstrap-servers": "127.0.0.1:9", "--input-topic": "in", "--output-topic": "out"}
    args |= {"--dead-letter-topic": "dead", "--model": str(tmp_path / "run")}
    args |= {"--checkpoint-location": str(tmp_path / "checkpoint"), flag: value.format(tmp=tmp_path)}
    try:
        code = stream_job.main([x for pair in args.items() for x in pair])
    except SystemExit as exit:  # argparse's refusals
        code = exit.code
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("spark-ap stream: error: ") and message.format(tmp=tmp_path) in line, line
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def _loaded(exemplars: pd.DataFrame, metric: str = "sqeuclidean") -> _Loaded:
    model = AffinityPropagationModel(exemplars)
    model._set(metric=metric)
    return _Loaded(model, "run-1", Path("run-1/model"))


def _records(values: list) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"key": [None] * n, "value": values, "topic": ["in"] * n, "partition": [0] * n,
                         "offset": list(range(n))})  # fmt: skip


def test_no_record_can_stop_a_batch(spark):
    model = _loaded(pd.DataFrame({"cluster": [0, 1], "exemplar": [5, 9], "features": [[0.0, 0.0], [4.0, 0.0]]}))
    values = [
        b'{"id": 1, "features": [1, 0]}',
        b'{"id": 2, "features": [' + b"9" * 400 + b", 0]}",  # an integer too large for a float
        b"[" * 100_000 + b"]" * 100_000,  # nesting too deep for the parser
        b'{"id": 3, "features": [1e200, 1e200]}',  # finite, but its distance overflows
        b"\xff" * 100_000,  # far longer than a dead letter keeps
    ]
    out = assign_records(_records(values), model, ("out", "dead"))
    assert list(out["topic"]) == ["out", "dead", "dead", "dead", "dead"]
    assert json.loads(out["value"][0]) == {
        "id": 1, "cluster": 0, "exemplar": 5, "distance": 1.0, "model_version": "run-1"
    }  # fmt: skip
    letters = [json.loads(v) for v in out["value"][1:]]
    assert "could not be read: OverflowError" in letters[0]["reason"]
    assert "could not be read: RecursionError" in letters[1]["reason"]
    assert "distance to the nearest exemplar is inf" in letters[2]["reason"]
    assert letters[3]["value_bytes"] == 100_000 and len(out["value"][4]) < 4 * MAX_DEAD_VALUE
    assert [v["source"] for v in letters] == ["in/0/1", "in/0/2", "in/0/3", "in/0/4"]


def test_a_model_that_cannot_be_read_leaves_the_last_one_in_use(saved, tmp_path, caplog):
    latest = _run_folder(saved, tmp_path / "runs", "run-1", "a")
    models = ModelSource(str(latest), str(tmp_path / "checkpoint"))
    assert models.for_batch(0).version == "run-1"
    broken = tmp_path / "runs" / "run-2"
    (broken / "model" / "metadata").mkdir(parents=True)  # a model folder without its files
    (broken / "summary.json").write_text("{}")
    publish_latest(broken)
    with caplog.at_level(logging.WARNING, logger="spark_ap.stream"):
        assert models.for_batch(1).version == "run-1"
    assert "cannot be read" in caplog.text
    assert json.loads((tmp_path / "checkpoint" / "models" / "1").read_text())["version"] == "run-1"


POINTS = make_blobs(30, n_features=2, centers=5, random_state=3)[0]


def _assigned(model: _Loaded, points=POINTS) -> list:
    out = assign_records(_records([json.dumps(p).encode() for p in _good(range(len(points)), points)]), model,
                         ("out", "dead"))  # fmt: skip
    return [(value["cluster"], value["exemplar"]) for value in map(json.loads, out["value"])]


def test_a_model_overwritten_in_place_is_used_from_the_next_micro_batch(saved, tmp_path):
    latest = _run_folder(saved, tmp_path / "runs", "run-1", "a")
    models = ModelSource(str(latest), str(tmp_path / "checkpoint"))
    first = _assigned(models.for_batch(0))
    _run_folder(saved, tmp_path / "runs", "run-1", "b")
    second = models.for_batch(1)
    assert second.version == "run-1" and _assigned(second) != first
    assert _assigned(second) == _assigned(ModelSource(str(latest), str(tmp_path / "other")).newest())


def test_a_replayed_batch_uses_the_model_pinned_to_it_not_what_its_folder_holds_now(saved, tmp_path):
    latest = _run_folder(saved, tmp_path / "runs", "run-1", "a")
    checkpoint = tmp_path / "checkpoint"
    first = _assigned(ModelSource(str(latest), str(checkpoint)).for_batch(0))
    _run_folder(saved, tmp_path / "runs", "run-1", "b")
    # A restarted job (a new ModelSource) runs batch 0 again, and then batch 1.
    models = ModelSource(str(latest), str(checkpoint))
    assert _assigned(models.for_batch(0)) == first
    assert _assigned(models.for_batch(1)) != first
    assert _assigned(models.for_batch(0)) == first  # and again without a restart
    pins = [json.loads((checkpoint / "models" / str(b)).read_text()) for b in (0, 1)]
    assert [pin["version"] for pin in pins] == ["run-1", "run-1"] and pins[0]["content"] != pins[1]["content"]


def test_a_replay_whose_pinned_model_is_gone_is_refused_in_one_line(saved, tmp_path):
    latest = _run_folder(saved, tmp_path / "runs", "run-1", "a")
    checkpoint = tmp_path / "checkpoint"
    ModelSource(str(latest), str(checkpoint)).for_batch(0)
    _run_folder(saved, tmp_path / "runs", "run-1", "b")
    shutil.rmtree(checkpoint / "models" / "content")
    with pytest.raises(SparkAPError) as refused:
        ModelSource(str(latest), str(checkpoint)).for_batch(0)
    message = str(refused.value)
    assert "\n" not in message and "holds other content now" in message
    assert f"delete {checkpoint / 'models' / '0'} to run it with the newest model" in message


def test_a_failed_query_without_commits_is_not_taken_for_the_kafka_progress_bug(tmp_path):
    # The bug's own text, with a checkpoint whose first batch never committed: no commits/ folder.
    (tmp_path / "offsets").mkdir()
    (tmp_path / "offsets" / "0").write_text("v1")
    error = Exception('NPE at KafkaMicroBatchStream.metrics: the value of "scala.Option.get()" is null')
    assert _progress_bug(error, str(tmp_path)) is False
    (tmp_path / "commits").write_text("a file")
    assert _progress_bug(error, str(tmp_path)) is False


def test_no_cluster_id_looks_like_an_option_to_the_storage_tool():
    # One random id in 64 starts with "-": 2000 draws would find it (all but surely) were it let through.
    ids = [_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert {len(i) for i in ids} == {22} and len(set(ids)) == len(ids)


def test_a_micro_batch_that_fails_stops_the_stream_with_its_own_error_in_one_line(spark, tmp_path):
    def fail(batch, batch_id):
        raise SparkAPError(f"Batch {batch_id} ran with model run-1 (content 0123456789ab), whose copy is missing")

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "points.json").write_text('{"id": 1}\n')
    query = (
        spark.readStream.schema("id long").json(str(tmp_path / "in")).writeStream.foreachBatch(fail)
        .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(availableNow=True).start()
    )  # fmt: skip
    with pytest.raises(StreamingQueryException) as stopped:
        query.awaitTermination()
    assert stream_failure(stopped.value) == (
        "spark_ap.errors.SparkAPError: Batch 0 ran with model run-1 (content 0123456789ab), whose copy is missing"
    )
