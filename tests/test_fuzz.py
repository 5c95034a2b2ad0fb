"""Fuzz the edges of the application: the stream's record parser, the job's CSV/Parquet readers, the YAML file.

Each must take whatever it is given: a Kafka record comes out as an assignment or a
dead letter with a reason (never lost, never a failed batch), an input file is read
correctly or refused with spark-ap's own error, and a settings file is read or
refused with :class:`~spark_ap.errors.InvalidParamError` in one line. Hypothesis runs a
fixed number of derandomized examples, so a run in CI is the same as a run here;
inputs that once broke the code are kept as explicit examples and corpus rows.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spark_ap import AffinityPropagationModel
from spark_ap.app.config import EXTRA_KEYS, SECTIONS, read_config
from spark_ap.app.stream.job import assign_batch
from spark_ap.app.stream.records import RECORDS_SCHEMA, _Loaded, assign_records
from spark_ap.errors import InvalidParamError, SparkAPError
from spark_ap.params import SPECS

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure in CI is a failure here
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TOPICS = ("out", "dead")
#: The model the records are assigned with: two exemplars in two dimensions.
EXEMPLARS = pd.DataFrame({"cluster": [0, 1], "exemplar": [5, 9], "features": [[0.0, 0.0], [4.0, 0.0]]})
DIMENSION = 2


def _model() -> _Loaded:
    return _Loaded(AffinityPropagationModel(EXEMPLARS), "run-1", Path("run-1/model"))


# --- The oracle: which record values are points, by a rule of this test's own -------------------------


def _finite(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer beyond any float
        return False


def expected_point(value: bytes | None) -> tuple[Any, list[float]] | None:
    """(id, features) when ``value`` is a UTF-8 JSON object with an integer or string id and a list
    of DIMENSION finite numbers whose distances to the exemplars are finite; else None."""
    if value is None:
        return None
    try:
        point = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(point, dict):
        return None
    point_id, features = point.get("id"), point.get("features")
    if isinstance(point_id, bool) or not isinstance(point_id, (int, str)):
        return None
    if isinstance(point_id, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in point_id):
        return None  # a lone surrogate (from a \ud800 escape) is no text a UTF-8 key can hold
    if not isinstance(features, list) or len(features) != DIMENSION or not all(_finite(v) for v in features):
        return None
    x = np.array(features, dtype=float)
    centers = np.array(EXEMPLARS["features"].tolist())
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(((x - centers) ** 2).sum(axis=1)).all():
            return None
    return point_id, [float(v) for v in features]


def check_records(values: list[bytes | None], out: pd.DataFrame) -> None:
    """Every record of ``values`` has its one output row, on the topic the oracle says, well formed."""
    assert len(out) == len(values)  # none lost, none doubled
    for i, (value, (topic, key, record, source)) in enumerate(zip(values, out.itertuples(index=False), strict=True)):
        assert source == f"in/0/{i}"
        letter = json.loads(record)
        point = expected_point(value)
        if point is None:
            assert topic == "dead", f"{value!r:.200} was assigned: {letter}"
            assert isinstance(letter["reason"], str) and letter["reason"], letter
            assert letter["source"] == source and letter["model_version"] == "run-1"
        else:
            assert topic == "out", f"{value!r:.200} went to the dead letters: {letter['reason']}"
            assert letter["id"] == point[0] and letter["cluster"] in (0, 1) and math.isfinite(letter["distance"])
            assert key == str(point[0]).encode()


# --- Strategies: record values -------------------------------------------------------------------------

NUMBER_TEXT = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "9" * 400, "-0.0", "0", "1e308"]),
    st.floats().map(lambda v: json.dumps(v)),  # NaN and Infinity as Python's json writes them
    st.integers().map(str),
    st.sampled_from(["true", "null", '"1"', "[1]", "{}", "[]"]),  # numbers of the wrong type
)
ID_TEXT = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=8).map(json.dumps),
    st.sampled_from(['"\\ud800"', '"a\\u0000b"', "true", "null", "1.5", "[1]", "{}", '""', "1e3"]),
)


@st.composite
def record_texts(draw) -> bytes:
    """JSON records of roughly the right shape, written by hand: literals json.dumps never writes,
    wrong lengths, missing and repeated fields, extra fields."""
    features = draw(st.lists(NUMBER_TEXT, max_size=4))
    fields = [f'"id": {draw(ID_TEXT)}', f'"features": [{", ".join(features)}]']
    fields += draw(st.lists(st.sampled_from(['"extra": 1', '"id": 2', '"features": null', '"features": [1, 2]'])))
    fields = draw(st.permutations(fields))
    if draw(st.booleans()):
        fields = [f for f in fields if not f.startswith(draw(st.sampled_from(['"id"', '"features"'])))]
    return ("{" + ", ".join(fields) + "}").encode()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["id", "features", "x"]), children)
    ),
    max_leaves=12,
)
RECORD_VALUES = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"id": JSON_VALUES, "features": JSON_VALUES}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"id": st.integers() | st.text(), "features": st.lists(st.floats(), max_size=3)}).map(
        lambda v: json.dumps(v, ensure_ascii=False).encode()
    ),
    record_texts(),
    st.none(),
)


@FUZZ
@given(st.lists(RECORD_VALUES, min_size=1, max_size=8))
@example([b'{"id": "\\ud800", "features": [1, 0]}'])  # a lone surrogate as the id
@example([b'{"id": 1, "features": [' + b"9" * 400 + b", 0]}", b'{"id": 2, "features": [1e200, 1e200]}'])
@example([b"[" * 100_000 + b"]" * 100_000, b"\xef\xbb\xbf{}", b"", b" " * 100_000])
def test_every_record_is_assigned_or_a_dead_letter(values):
    check_records(values, assign_records(_records(values), _model(), TOPICS))


def _records(values: list[bytes | None]) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"key": [None] * n, "value": values, "topic": ["in"] * n, "partition": [0] * n,
                         "offset": list(range(n))})  # fmt: skip


#: Nasty records for the Spark path (one batch through the streaming job's own mapInPandas).
CORPUS: list[bytes | None] = [
    b'{"id": 1, "features": [1, 0]}',
    b'{"id": "a", "features": [3.5, 0.25]}',
    b'{"features": [1, 0], "id": 7, "extra": {"x": [1]}}',
    b'{"id": 2, "features": [1, 0], "id": 3}',  # a repeated field: JSON's last one
    None,
    b"",
    b" ",
    b"null",
    b"[]",
    b'"just a string"',
    b"42",
    b"{}",
    b'{"id": 1}',
    b'{"features": [1, 0]}',
    b'{"id": null, "features": [1, 0]}',
    b'{"id": true, "features": [1, 0]}',
    b'{"id": 1.5, "features": [1, 0]}',
    b'{"id": [1], "features": [1, 0]}',
    b'{"id": 1, "features": null}',
    b'{"id": 1, "features": "1, 0"}',
    b'{"id": 1, "features": [1]}',
    b'{"id": 1, "features": [1, 0, 0]}',
    b'{"id": 1, "features": []}',
    b'{"id": 1, "features": [[1], [0]]}',
    b'{"id": 1, "features": [true, false]}',
    b'{"id": 1, "features": ["1", "0"]}',
    b'{"id": 1, "features": [NaN, 0]}',
    b'{"id": 1, "features": [Infinity, 0]}',
    b'{"id": 1, "features": [-Infinity, 0]}',
    b'{"id": 1, "features": [1e999, 0]}',
    b'{"id": 1, "features": [' + b"9" * 400 + b", 0]}",
    b'{"id": 1, "features": [1e200, 1e200]}',
    b'{"id": "\\ud800", "features": [1, 0]}',
    b'{"id": "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80", "features": [1, 0]}',
    b'{"id": "caf\xe9", "features": [1, 0]}',  # Latin-1, not UTF-8
    b"\xef\xbb\xbf" + b'{"id": 1, "features": [1, 0]}',  # a BOM
    b'{"id": 1, "features": [1, 0]',  # cut short
    b"\xff\xfe\x00\x01" * 50,
    b"[" * 5_000 + b"]" * 5_000,
    b'{"id": "' + b"x" * 70_000 + b'", "features": [1, 0]}',
]


def test_the_stream_batch_keeps_every_record(spark):
    """The corpus as Spark's Kafka source gives it, one batch through the job's own query."""
    rows = [(None, v, "in", 0, i, datetime(1970, 1, 1)) for i, v in enumerate(CORPUS)]
    schema = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    batch = spark.createDataFrame(rows, schema).coalesce(1)  # one Python worker to start, on two busy cores
    out = assign_batch(batch, _model(), TOPICS, "features").toPandas()
    assert list(out.columns) == [c.split()[0] for c in RECORDS_SCHEMA.split(", ")]
    out = out.sort_values("source", key=lambda s: s.str.split("/").str[-1].astype(int), ignore_index=True)
    check_records(CORPUS, out)
    assert (out["topic"] == "out").sum() >= 5  # the corpus has good records too


# --- The CSV and Parquet readers: the job's --validate-only path --------------------------------------


def _parquet(table: pd.DataFrame):
    return lambda path: table.to_parquet(path)


def _name(row) -> str:
    return (row.values if hasattr(row, "values") else row)[0]


EDGES = "src,dst,similarity\n1,2,-1.0\n2,3,-2.0\n3,1,-0.5\n"
VALID_EDGES = "3 edges between 3 vertices, valid"
#: name, file contents (bytes, or a function writing the file), kind, and what validation must say:
#: its answer, or the class of its error and what the message must name.
FILES: list[Any] = [
    ("plain.csv", EDGES.encode(), "edges", VALID_EDGES),
    ("empty.csv", b"", "edges", (SparkAPError, ["empty.csv", "similarity"])),
    # No rows: Spark infers every column as a string, so the refusal names the similarity's type, not the
    # emptiness (validation checks the types first).
    ("header.csv", b"src,dst,similarity\n", "edges", (SparkAPError, ["similarity"])),
    # Spark reads this file right, but the preflight's header read (preflight.local_columns) keeps the BOM in
    # "\ufeffsrc" and refuses it: a clear refusal, if a needless one.
    ("bom.csv", b"\xef\xbb\xbf" + EDGES.encode(), "edges", (SparkAPError, ["bom.csv", "src"])),
    ("crlf.csv", EDGES.replace("\n", "\r\n").encode(), "edges", VALID_EDGES),
    (
        "quoted.csv",
        b'src,dst,similarity\n"a,b","c d",-1.0\n"c d","e ""q""",-2.0\n"e ""q""","a,b",-0.5\n',
        "edges",
        VALID_EDGES,
    ),
    # A quoted line break: the reader reads line by line (a file split across tasks), so the
    # record's halves are two rows with nulls, refused; never a silent wrong edge.
    (
        "quoted_newline.csv",
        b'src,dst,similarity\n"a\nb",c,-1.0\nc,"a\nb",-2.0\n',
        "edges",
        (SparkAPError, ["null", "src"]),
    ),
    ("missing.csv", b"src,dst\n1,2\n", "edges", (SparkAPError, ["missing.csv", "similarity"])),
    ("extra.csv", b"src,dst,similarity,note\n1,2,-1.0,x\n2,3,-2.0,y\n3,1,-0.5,z\n", "edges", VALID_EDGES),
    ("text.csv", b"src,dst,similarity\n1,2,-1.0\n2,3,abc\n3,1,-0.5\n", "edges", (SparkAPError, ["similarity"])),
    ("nan.csv", b"src,dst,similarity\n1,2,NaN\n2,3,-2.0\n3,1,-0.5\n", "edges", (SparkAPError, ["similarity"])),
    # inf and 1e999 (a double beyond range), and no line end after the last row
    ("inf.csv", b"src,dst,similarity\n1,2,-1.0\n2,3,inf\n3,1,1e999", "edges", (SparkAPError, ["similarity"])),
    (
        "dup_header.csv",
        b"src,dst,similarity,similarity\n1,2,-1.0,5\n2,3,-2.0,5\n",
        "edges",
        (SparkAPError, ["similarity"]),
    ),
    # Latin-1, not UTF-8: Spark reads both é and è as U+FFFD, so caf\xe9 and caf\xe8 would become one
    # vertex (Spark's CSV reader has no strict decoding): validation refuses ids holding U+FFFD.
    pytest.param(
        "latin1.csv",
        b"src,dst,similarity\ncaf\xe9,b,-1.0\nb,caf\xe8,-2.0\ncaf\xe8,caf\xe9,-0.5\n",
        "edges",
        (SparkAPError, ["U+FFFD", "UTF-8", "src"]),
    ),
    ("latin1_header.csv", b"src,dst,simil\xe9rity\n1,2,-1.0\n", "edges", (SparkAPError, ["similarity"])),
    ("zero.parquet", b"", "edges", (SparkAPError, ["zero.parquet", "not a Parquet file"])),
    ("garbage.parquet", b"PAR1 not really", "edges", (SparkAPError, ["garbage.parquet", "not a Parquet file"])),
    (
        "schema.parquet",
        _parquet(pd.DataFrame({"a": [1, 2], "b": [2, 1], "c": [-1.0, -1.0]})),
        "edges",
        (SparkAPError, ["schema.parquet", "similarity"]),
    ),
    (
        "strings.parquet",
        _parquet(pd.DataFrame({"src": [1, 2], "dst": [2, 1], "similarity": ["-1", "x"]})),
        "edges",
        (SparkAPError, ["similarity"]),
    ),
    (
        "edges.parquet",
        _parquet(pd.DataFrame({"src": [1, 2, 3], "dst": [2, 3, 1], "similarity": [-1.0, -2.0, -0.5]})),
        "edges",
        VALID_EDGES,
    ),
    ("points.csv", b"id,x,y\n1,0.0,0.0\n2,1.0,0.5\n3,4.0,4.0\n", "features", "3 feature rows, valid"),
    ("points_text.csv", b"id,x,y\n1,0.0,0.0\n2,one,0.5\n", "features", (SparkAPError, ["x"])),
    ("points_nan.csv", b"id,x,y\n1,0.0,NaN\n2,1.0,0.5\n", "features", (SparkAPError, ["features"])),
    ("points_noid.csv", b"key,x,y\n1,0.0,0.0\n2,1.0,0.5\n", "features", (SparkAPError, ["id"])),
    ("points_one.csv", b"id,x,y\n1,0.0,0.0\n", "features", (SparkAPError, ["1 row"])),
]


@pytest.mark.parametrize(("name", "content", "kind", "expected"), FILES, ids=[_name(f) for f in FILES])
def test_an_input_file_is_read_correctly_or_refused_clearly(spark, tmp_path, name, content, kind, expected):
    from spark_ap.app.job import parser, validate

    path = tmp_path / name
    content(path) if callable(content) else path.write_bytes(content)
    args = parser().parse_args(["--input", str(path), "--output", str(tmp_path / "run"), "--kind", kind])
    if isinstance(expected, str):
        assert validate(args) == f"{path}: {expected}"
        return
    error_type, named = expected
    with pytest.raises(Exception) as raised:
        validate(args)
    message = str(raised.value)
    assert isinstance(raised.value, error_type), f"{type(raised.value).__name__}: {message[:500]}"
    assert "\n\tat " not in message and "Traceback" not in message and "Py4J" not in message, message
    for word in named:
        assert word in message, message


def test_quoted_fields_keep_their_text(spark, tmp_path):
    """Not only the counts: a quoted comma and a doubled quote are read as the text they quote."""
    from spark_ap.app.job import read_table

    path = tmp_path / "quoted.csv"
    path.write_bytes(next(f[1] for f in FILES if _name(f) == "quoted.csv"))
    rows = read_table(spark, str(path), None).collect()
    assert sorted((r.src, r.dst, r.similarity) for r in rows) == [
        ("a,b", "c d", -1.0), ("c d", 'e "q"', -2.0), ('e "q"', "a,b", -0.5)
    ]  # fmt: skip


# --- The YAML settings file ----------------------------------------------------------------------------

NAMES = sorted({*SPECS, *SECTIONS, *(k for keys in EXTRA_KEYS.values() for k in keys)})
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["median", "min", "quantile:0.1", "quantile:2", "edges", "features", "cosine", "0.5", ""]),
)
KEYS = st.one_of(st.sampled_from(NAMES), st.text(max_size=8), st.integers(), st.booleans(), st.none(), st.floats())
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=16,
)
#: Settings files shaped like the real one: sections of real setting names with values of any type.
SETTINGS_FILES = st.dictionaries(
    st.sampled_from(SECTIONS) | KEYS,
    st.none() | st.dictionaries(st.sampled_from(NAMES) | KEYS, SCALARS | DOCUMENTS, max_size=5),
    max_size=4,
)
YAML_TEXTS = st.one_of(
    SETTINGS_FILES.map(yaml.safe_dump),
    DOCUMENTS.map(yaml.safe_dump),
    st.text(max_size=80),
    st.text(alphabet=":-[]{}!&*#?|>'\"%@` \n\tabz01.", max_size=60),
).map(str.encode)


@settings(FUZZ, max_examples=300)
@given(YAML_TEXTS | st.binary(max_size=40))
@example(b"ap:\n  maxIter: " + b"9" * 400 + b"\n")  # a whole number beyond any float
@example(b"ap:\n  damping: .nan\n")
@example(b"{1: a, b: c}\n")  # keys of mixed types
@example(b"ap: {1: 2, x: 3}\n")
@example(b"ap:\n  stateDir: 2001-02-30\n")  # a date that does not exist
@example(b"ap: [\n")  # a YAML syntax error, whose message spans lines
@example(b"ap: {maxIter: 1}\n\xff\n")  # not UTF-8
@example(b"ap:\n  preference: [1]\n")
@example(b"spark: " + b"[" * 5000 + b"]" * 5000)  # deeper than PyYAML's recursion can go
@example(b"!!python/object:os.system {}\n")  # a tag that would build an object
def test_a_settings_file_is_read_or_refused_in_one_line(text):
    handle, name = tempfile.mkstemp(suffix=".yaml")
    os.close(handle)
    path = Path(name)
    try:
        path.write_bytes(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # preference="0.1": the old spelling of a quantile
            sections = read_config(path)
    except InvalidParamError as error:
        assert str(error) and "\n" not in str(error), str(error)
        return
    finally:
        path.unlink()
    assert set(sections) <= set(SECTIONS) and all(isinstance(v, dict) for v in sections.values())
