"""Bad input is refused with an error that names the column, the count and an example."""

from collections import Counter

import pytest

from spark_ap import (
    AffinityPropagation,
    ColumnTypeError,
    DuplicateEdgeError,
    EmptyInputError,
    InvalidInputError,
    InvalidValueError,
    MissingColumnError,
    edges_from_features,
)
from spark_ap.engines.blocks import pack

SCHEMA = "src long, dst long, similarity double"


def run(spark, rows, schema=SCHEMA, **params):
    return AffinityPropagation(maxIter=5, **params).run(spark.createDataFrame(rows, schema))


def test_missing_column(spark):
    with pytest.raises(MissingColumnError, match=r"missing column\(s\) \['similarity'\]"):
        run(spark, [(0, 1, 1.0)], "src long, dst long, weight double")


def test_string_similarity(spark):
    with pytest.raises(ColumnTypeError, match="'similarity' has type string"):
        run(spark, [(0, 1, "1.0")], "src long, dst long, similarity string")


def test_mixed_id_types(spark):
    with pytest.raises(ColumnTypeError, match="mixed types"):
        run(spark, [(0, "1", 1.0)], "src long, dst string, similarity double")


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), float("-inf")])
def test_null_nan_or_infinite_similarity(spark, bad):
    rows = [(0, 1, -1.0), (1, 0, bad), (1, 2, -2.0), (2, 1, bad)]
    with pytest.raises(InvalidValueError, match=r"2 of 4 edges have a null, NaN or infinite similarity") as info:
        run(spark, rows)
    assert "'src': 1" in str(info.value) or "'src': 2" in str(info.value)


def test_null_id(spark):
    with pytest.raises(InvalidValueError, match=r"1 of 2 edges have a null id"):
        run(spark, [(0, 1, -1.0), (None, 0, -1.0)])


def test_duplicate_pairs(spark):
    rows = [(0, 1, -1.0), (0, 1, -2.0), (1, 0, -1.0), (2, 0, -3.0), (2, 0, -3.0), (2, 0, -4.0)]
    with pytest.raises(DuplicateEdgeError, match=r"2 \(src, dst\) pairs occur more than once \(5 rows in all\)"):
        run(spark, rows)


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # 5 iterations on purpose
@pytest.mark.parametrize("engine", ["local", "blocks", "graphframes"])
def test_every_engine_refuses_duplicate_pairs_before_saving_anything(spark, tmp_path, monkeypatch, engine):
    # The local and blocks engines find them as they sort the edges (with chunks of a few edges,
    # the repeated pairs fall in different chunks and partitions); graphframes is checked first.
    monkeypatch.setattr(pack, "CHUNK_EDGES", 3)
    rows = [("b", "a", -1.0), ("a", "b", -1.0), ("a", "b", -2.0), ("a", "c", -3.0), ("c", "a", -3.0)]
    rows += [("c", "c", -5.0), ("c", "c", -6.0), ("c", "c", -7.0), ("b", "c", -2.0), ("d", "a", -4.0)]
    schema = "from string, to string, sim double"
    state = tmp_path / "state"
    ap = AffinityPropagation(engine=engine, srcCol="from", dstCol="to", weightCol="sim", stateDir=str(state), maxIter=5)
    refused = r"2 \(src, dst\) pairs occur more than once \(5 rows in all\)"
    with pytest.raises(DuplicateEdgeError, match=refused) as info:
        ap.run(spark.createDataFrame(rows, schema))
    a, b, count = info.value.example
    assert count == Counter((s, d) for s, d, _ in rows)[a, b] > 1
    assert f"from={a!r}, to={b!r} occurs {count} times" in str(info.value)
    assert not list(state.glob("*iteration-*"))
    # Nothing stands in the way of the corrected input's run in the same folder.
    once = list({(s, d): (s, d, v) for s, d, v in rows}.values())
    assert ap.run(spark.createDataFrame(once, schema)).numEdges == len(once) + 3  # a, b and d get a self-edge


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # 5 iterations on purpose
@pytest.mark.parametrize("how, combine", [("max", max), ("mean", lambda *v: sum(v) / len(v))])
def test_duplicate_pairs_can_be_combined(spark, how, combine):
    rows = [(0, 1, -1.0), (0, 1, -2.0), (1, 0, -1.0), (2, 0, -3.0), (2, 0, -3.5), (2, 0, -4.0), (0, 2, -3.0)]
    rows += [(1, 2, -2.0), (2, 1, -2.0)]
    combined = [(0, 1, combine(-1.0, -2.0)), (1, 0, -1.0), (2, 0, combine(-3.0, -3.5, -4.0)), (0, 2, -3.0)]
    combined += [(1, 2, -2.0), (2, 1, -2.0)]
    result = run(spark, rows, duplicates=how, seed=1)
    expected = run(spark, combined, seed=1)
    assert result.numEdges == 9  # six edges and three self-edges
    assert sorted(tuple(r) for r in result.messages.collect()) == sorted(tuple(r) for r in expected.messages.collect())


def test_empty_edges(spark):
    with pytest.raises(EmptyInputError, match="no rows"):
        run(spark, [])


def test_vertices_that_appear_only_as_targets_get_clustered(spark):
    # 1, 2 and 3 only receive edges; they still get a self-edge and a cluster.
    rows = [(0, 1, -1.0), (0, 2, -2.0), (0, 3, -3.0)]
    result = AffinityPropagation(preference=-2.5).run(spark.createDataFrame(rows, SCHEMA))
    assert sorted(r.id for r in result.assignments.collect()) == [0, 1, 2, 3]
    assert result.numVertices == 4 and result.numEdges == 7


def test_vertex_preferences_must_be_finite_numbers(spark):
    from spark_ap import ColumnTypeError as TypeErr

    edges = spark.createDataFrame([(0, 1, -1.0), (1, 0, -1.0)], SCHEMA)
    nan_prefs = spark.createDataFrame([(0, float("nan")), (1, -1.0)], "id long, preference double")
    with pytest.raises(InvalidValueError, match=r"1 vertices have a NaN or infinite preference in 'preference'"):
        AffinityPropagation().run(edges, nan_prefs)
    text_prefs = spark.createDataFrame([(0, "high")], "id long, preference string")
    with pytest.raises(TypeErr, match="preference column 'preference' has type string"):
        AffinityPropagation().run(edges, text_prefs)
    string_ids = spark.createDataFrame([("0",)], "id string")
    with pytest.raises(TypeErr, match="is string but the edge ids are bigint"):
        AffinityPropagation().run(edges, string_ids)


@pytest.mark.parametrize("engine", ["local", "graphframes"])
def test_vertices_tables_need_one_row_per_vertex(spark, engine):
    # A repeated id would give its vertex two self-edges (and a null id a vertex without one).
    edges = spark.createDataFrame([(0, 1, -1.0), (1, 0, -1.0), (1, 2, -2.0), (2, 1, -2.0)], SCHEMA)
    ap = AffinityPropagation(engine=engine)
    for schema, rows in [("id long, preference double", [(2, -3.0), (3, -3.0), (2, -3.0)]), ("id long", [(2,), (2,)])]:
        repeated = r"1 ids occur on more than one row of the vertices table in 'id'; for example 2 occurs 2 times"
        with pytest.raises(InvalidValueError, match=repeated):
            ap.run(edges, spark.createDataFrame(rows, schema))
    nulls = spark.createDataFrame([(3, -1.0), (None, -1.0)], "id long, preference double")
    with pytest.raises(InvalidValueError, match=r"1 of 2 rows of the vertices table have a null id in 'id'"):
        ap.run(edges, nulls)


def test_a_single_vertex_is_one_cluster(spark):
    with pytest.warns(UserWarning, match="equal similarities"):  # scikit-learn's warning for one point
        result = AffinityPropagation().run(spark.createDataFrame([(5, 5, -1.0)], SCHEMA))
    assert [tuple(r) for r in result.assignments.collect()] == [(5, 0, 5)]


FEATURES = "id long, features array<double>"


@pytest.mark.parametrize(
    "rows, schema, error, message",
    [
        ([(0, [1.0, 2.0])], FEATURES, InvalidInputError, r"has 1 row\(s\); clustering needs at least 2"),
        (
            [(0, [1.0, 2.0]), (1, None), (2, [0.0, 1.0])],
            FEATURES,
            InvalidValueError,
            r"1 of 3 feature rows have a null",
        ),
        (
            [(0, [1.0, 2.0]), (1, [1.0, None]), (2, [0.0, float("nan")])],
            FEATURES,
            InvalidValueError,
            r"2 of 3 feature rows hold a null, NaN or infinite value in 'features'",
        ),
        (
            [(0, [1.0, 2.0]), (1, [1.0]), (2, [0.0, 1.0])],
            FEATURES,
            InvalidValueError,
            r"1 of 3 feature rows in 'features' do not have the 2 values most rows have; for example \{'id': 1",
        ),
        ([(0, [1.0]), (0, [2.0])], FEATURES, InvalidValueError, r"1 ids occur on more than one feature row"),
        ([(0, ["a"]), (1, ["b"])], "id long, features array<string>", ColumnTypeError, "must be an array of numbers"),
        ([(None, [1.0]), (1, [2.0])], FEATURES, InvalidValueError, r"1 of 2 feature rows have a null id"),
    ],
)
def test_bad_feature_tables(spark, rows, schema, error, message):
    with pytest.raises(error, match=message):
        edges_from_features(spark.createDataFrame(rows, schema))


def test_cosine_refuses_zero_vectors(spark):
    features = spark.createDataFrame([(0, [1.0, 0.0]), (1, [0.0, 0.0]), (2, [0.0, 1.0])], FEATURES)
    with pytest.raises(InvalidValueError, match="1 feature rows are all zeros.*id 1"):
        edges_from_features(features, metric="cosine")
