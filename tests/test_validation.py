"""Bad input is refused with an error that names the column, the count and an example."""

from collections import Counter
from decimal import Decimal

import numpy as np
import pytest
from sklearn.cluster import AffinityPropagation as SklearnAP

from spark_ap import (
    AffinityPropagation,
    ColumnTypeError,
    DuplicateEdgeError,
    EmptyInputError,
    InvalidInputError,
    InvalidValueError,
    MissingColumnError,
    MultiLevelAffinityPropagation,
    edges_from_features,
    similarity_matrix,
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


@pytest.mark.parametrize(
    "rows, schema, error, message",
    [
        # Float ids are refused, naming the column and its type: 2.5 has no id it could be.
        (
            [(1.0, 2.5, -1.0), (2.5, 1.0, -1.0)],
            "src double, dst double, similarity double",
            ColumnTypeError,
            "The edge table column 'src' has type double; ids must be integers or strings.",
        ),
        ([(1, 2.0, -1.0)], "src long, dst float, similarity double", ColumnTypeError, "'dst' has type float"),
        # Whole numbers beyond the long range (a CSV's inferred decimal) are refused with one, never wrapped.
        (
            [(Decimal(2**63), Decimal(1), -1.0), (Decimal(1), Decimal(2**63), -1.0)],
            "src decimal(20,0), dst decimal(20,0), similarity double",
            ColumnTypeError,
            "'src' has type decimal(20,0), whole numbers beyond the 64-bit range (-2**63 to 2**63-1) of integer ids; "
            "for example {'src': Decimal('9223372036854775808')}. Read the ids as strings.",
        ),
        (
            [(Decimal(1), Decimal(2), -1.0)],
            "src decimal(20,0), dst decimal(20,0), similarity double",
            ColumnTypeError,
            "'src' has type decimal(20,0); ids must be integers or strings (its values fit a long",
        ),
        # Similarities whose message sums overflow to inf: refused naming the column, a count and an example.
        (
            [(0, 1, -1e308), (1, 0, -1e308), (1, 2, -1.0), (2, 1, -1.0)],
            SCHEMA,
            InvalidValueError,
            "2 of 4 edges have a similarity in 'similarity' beyond ±",
        ),
        (
            [(0, 1, 1e308), (1, 0, -1.0)],
            SCHEMA,
            InvalidValueError,
            "for example {'src': 0, 'dst': 1, 'similarity': 1e+308}",
        ),
    ],
)
def test_bad_edge_tables(spark, rows, schema, error, message):
    with pytest.raises(error) as refused:
        run(spark, rows, schema)
    assert message in str(refused.value)


@pytest.mark.parametrize("engine", ["local", "blocks"])
def test_a_preference_whose_sums_overflow_is_refused_as_such_similarities_are(spark, engine):
    # Preferences are the self-edges' similarities: -1e308 on 3 points overflows the availabilities'
    # sums, and without the check the run "converged" with every point its own cluster.
    rows = [(0, 1, -1.0), (1, 0, -1.0), (1, 2, -2.0), (2, 1, -2.0)]
    with pytest.raises(InvalidValueError) as refused:
        run(spark, rows, preference=-1e308, engine=engine)
    assert "preference=-1e+308 (-1e+308) is beyond ±" in str(refused.value)
    assert "overflow on this graph of 7 edges" in str(refused.value)
    # Per-vertex preferences of that size too.
    vertices = spark.createDataFrame([(0, -1e308), (1, -1.0), (2, -1.0)], "id long, preference double")
    with pytest.raises(InvalidValueError, match=r"The vertices' preferences reach 1e\+308, beyond ±"):
        AffinityPropagation(maxIter=5, engine=engine).run(spark.createDataFrame(rows, SCHEMA), vertices)


def _blobs6():
    """Six points in two tight, far apart groups, and their similarities."""
    X = np.array([[0.0, 0.0], [0.3, 0.1], [0.1, 0.4], [10.0, 10.0], [10.2, 9.9], [9.8, 10.3]])
    return X, similarity_matrix(X)


@pytest.mark.parametrize(
    "ids, engine",
    [
        (["α", "β", "γ", "δ", "ε", "ζ"], "auto"),  # ascending, as Spark orders strings (UTF-8 bytes)
        (["日本-" + "x" * 10_000 + str(i) for i in range(6)], "blocks"),  # 10,000-character ids, in executors
        ([-(2**63), -(2**63) + 1, -1, 0, 2**63 - 2, 2**63 - 1], "local"),  # the ends of the long range
    ],
)
def test_any_ids_cluster_as_scikit_learn(spark, ids, engine):
    # Ids are names: unicode, very long or at the ends of the long range, they cluster as indices do.
    _, S = _blobs6()
    pref = float(np.median(S[~np.eye(6, dtype=bool)]))
    sk = SklearnAP(affinity="precomputed", preference=pref, random_state=0).fit(S)
    rows = [(ids[i], ids[j], float(S[i, j])) for i in range(6) for j in range(6) if i != j]
    kind = "long" if isinstance(ids[0], int) else "string"
    schema = f"src {kind}, dst {kind}, similarity double"
    result = AffinityPropagation(noise="sklearn", engine=engine).run(spark.createDataFrame(rows, schema))
    got = {row.id: row.exemplar for row in result.assignments.collect()}
    assert got == {ids[i]: ids[sk.cluster_centers_indices_[sk.labels_[i]]] for i in range(6)}
    assert result.numIterations == sk.n_iter_


def test_unicode_ids_of_a_feature_table_cluster_as_scikit_learn(spark):
    X, S = _blobs6()
    ids = ["ä", "ö", "ü", "中", "文", "🙂"]  # ascending code points
    sk = SklearnAP(affinity="precomputed", preference=float(np.median(S[~np.eye(6, dtype=bool)])), random_state=0)
    sk.fit(S)
    features = spark.createDataFrame(
        [(i, [float(v) for v in x]) for i, x in zip(ids, X, strict=True)], "id string, features array<double>"
    )
    result = MultiLevelAffinityPropagation(noise="sklearn").run(features)
    got = {row.id: row.exemplar for row in result.assignments.collect()}
    assert got == {ids[i]: ids[sk.cluster_centers_indices_[sk.labels_[i]]] for i in range(6)}


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
        (
            [(1.0, [1.0]), (2.5, [2.0])],
            "id double, features array<double>",
            ColumnTypeError,
            r"The feature table column 'id' has type double; ids must be integers or strings",
        ),
        # Squared distances between these overflow to inf: refused, not one cluster of -inf similarities.
        (
            [(0, [1e200, 0.0]), (1, [-1e200, 0.0]), (2, [0.0, 0.0])],
            FEATURES,
            InvalidValueError,
            r"2 of 3 feature rows hold a value in 'features' beyond ±.*, where squared distances between rows "
            r"overflow; for example \{'id': 0",
        ),
    ],
)
def test_bad_feature_tables(spark, rows, schema, error, message):
    with pytest.raises(error, match=message):
        edges_from_features(spark.createDataFrame(rows, schema))


def test_cosine_refuses_zero_vectors(spark):
    features = spark.createDataFrame([(0, [1.0, 0.0]), (1, [0.0, 0.0]), (2, [0.0, 1.0])], FEATURES)
    with pytest.raises(InvalidValueError, match="1 feature rows are all zeros.*id 1"):
        edges_from_features(features, metric="cosine")
