"""Bad input is refused with an error that names the column, the count and an example."""

import pytest

from spark_ap import (
    AffinityPropagation,
    ColumnTypeError,
    DuplicateEdgeError,
    EmptyInputError,
    InvalidValueError,
    MissingColumnError,
)

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
