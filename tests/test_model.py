"""The fitted model: exemplars that assign new points, as a pyspark.ml Model in a Pipeline."""

import itertools
import json
import shutil
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from sklearn.cluster import AffinityPropagation as SklearnAP
from sklearn.datasets import make_blobs

from spark_ap import (
    AffinityPropagationModel,
    InvalidInputError,
    InvalidParamError,
    MultiLevelAffinityPropagation,
    similarity_matrix,
)
from spark_ap.engines.capacity import CapacityWarning
from tests.conftest import feature_frame


def _assigned(df) -> dict:
    return {row.id: (row.cluster, row.exemplar) for row in df.select("id", "cluster", "exemplar").collect()}


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_new_points_go_to_scikit_learns_prediction(spark, metric):
    X, _ = make_blobs(60, n_features=3, centers=3, random_state=11)
    new, _ = make_blobs(25, n_features=3, centers=3, random_state=12)
    model = MultiLevelAffinityPropagation(metric=metric, noise="sklearn").fit(feature_frame(spark, X))

    # scikit-learn on the same complete graph, preference and noise: its predict is the oracle.
    S = similarity_matrix(X, metric)
    preference = np.median(S[~np.eye(len(X), dtype=bool)])
    sk = SklearnAP(affinity="precomputed", preference=preference, random_state=0).fit(S)
    centers = X[sk.cluster_centers_indices_]
    # What scikit-learn's predict does: the nearest of its cluster centers.
    if metric == "cosine":
        unit = new / np.linalg.norm(new, axis=1, keepdims=True)
        expected = np.argmax(unit @ (centers / np.linalg.norm(centers, axis=1, keepdims=True)).T, axis=1)
    else:
        expected = np.argmin(((new[:, None, :] - centers[None, :, :]) ** 2).sum(-1), axis=1)

    assert [int(e) for e in model.exemplars["exemplar"]] == list(sk.cluster_centers_indices_)
    got = _assigned(model.transform(feature_frame(spark, new, ids=range(1000, 1025))))
    assert [got[1000 + i][0] for i in range(len(new))] == list(expected)
    assert all(got[1000 + i][1] == sk.cluster_centers_indices_[c] for i, c in enumerate(expected))


def test_transform_on_the_fitted_points_is_the_runs_assignment(spark):
    X, _ = make_blobs(50, n_features=2, centers=4, random_state=3)
    features = feature_frame(spark, X)
    model = MultiLevelAffinityPropagation().fit(features)
    run = {row.id: (row.cluster, row.exemplar) for row in model.summary.assignments.collect()}
    assert _assigned(model.transform(features)) == run
    assert len(model.clusterCenters()) == model.summary.exemplars.count()


def test_a_point_equidistant_from_two_exemplars_takes_the_lower_cluster(spark):
    exemplars = pd.DataFrame({"cluster": [0, 1], "exemplar": [7, 3], "features": [[0.0, 0.0], [2.0, 0.0]]})
    model = AffinityPropagationModel(exemplars)
    points = feature_frame(spark, [[1.0, 0.0], [1.0, 5.0], [1.5, 0.0]])
    assert _assigned(model.transform(points)) == {0: (0, 7), 1: (0, 7), 2: (1, 3)}


def test_save_load_and_a_pipeline_with_vector_features(spark, tmp_path):
    X, _ = make_blobs(40, n_features=2, centers=3, random_state=5)
    table = spark.createDataFrame(pd.DataFrame({"id": np.arange(40), "a": X[:, 0], "b": X[:, 1]}))
    pipeline = Pipeline(
        stages=[VectorAssembler(inputCols=["a", "b"], outputCol="features"), MultiLevelAffinityPropagation()]
    )
    fitted = pipeline.fit(table)
    fitted.save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    assert _assigned(loaded.transform(table)) == _assigned(fitted.transform(table))

    model = fitted.stages[-1]
    model.save(str(tmp_path / "model"))
    again = AffinityPropagationModel.load(str(tmp_path / "model"))
    assert again.uid == model.uid and again.getMetric() == model.getMetric() and not again.hasSummary
    points = feature_frame(spark, X)
    assert _assigned(again.transform(points)) == _assigned(model.transform(points))


def test_transform_on_a_stream(spark, tmp_path):
    X, _ = make_blobs(30, n_features=2, centers=2, random_state=8)
    model = MultiLevelAffinityPropagation().fit(feature_frame(spark, X))
    source = tmp_path / "points"
    feature_frame(spark, X).write.parquet(str(source))
    stream = spark.readStream.schema("id long, features array<double>").parquet(str(source))
    query = (
        model.transform(stream).writeStream.format("memory").queryName("assigned").trigger(availableNow=True).start()
    )
    query.awaitTermination(120)
    assert _assigned(spark.table("assigned")) == _assigned(model.transform(feature_frame(spark, X)))


@pytest.fixture(scope="module")
def saved_model(spark, tmp_path_factory):
    """A model of two exemplars as AffinityPropagationModel.save writes it."""
    model = AffinityPropagationModel(pd.DataFrame({"cluster": [0, 1], "exemplar": [3, 7],
                                                   "features": [[0.0, 0.0], [5.0, 5.0]]}))  # fmt: skip
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save(str(folder))
    return folder


def _tamper(folder, how: str) -> None:
    """Break a saved model as a hand, a truncated copy or another tool would."""
    import json
    import shutil

    (part,) = (folder / "metadata").glob("part-*")
    # As a model written without checksums (by an older spark-ap) is: the reader's own checks follow.
    (folder / "checksums.json").unlink()
    if how == "metric":
        metadata = json.loads(part.read_text())
        metadata["paramMap"]["metric"] = "manhattan"
        part.write_text(json.dumps(metadata))
    elif how == "no metadata part":
        part.unlink()
    elif how == "no data":
        shutil.rmtree(folder / "data")
    elif how == "truncated metadata":
        part.write_text(part.read_text()[:40])
    elif how == "no exemplars":
        exemplars = pd.read_parquet(folder / "data")
        shutil.rmtree(folder / "data")
        (folder / "data").mkdir()
        exemplars.iloc[:0].to_parquet(folder / "data" / "part-0.parquet")


@pytest.mark.parametrize(
    "how, message",
    [
        ("metric", "was not written by spark-ap: metric must be one of ('sqeuclidean', 'cosine'); got 'manhattan'"),
        ("no metadata part", "is not a readable spark-ap model: FileNotFoundError"),
        ("no data", "is not a readable spark-ap model"),
        ("truncated metadata", "is not a readable spark-ap model"),
        ("no exemplars", "has no exemplars: it cannot assign points"),
    ],
)
def test_a_damaged_model_folder_is_refused_naming_what_is_wrong(saved_model, tmp_path, how, message):
    import shutil

    from spark_ap import InvalidInputError

    shutil.copytree(saved_model, tmp_path / "model")
    assert AffinityPropagationModel.load(str(tmp_path / "model")).getMetric() == "sqeuclidean"
    _tamper(tmp_path / "model", how)
    with pytest.raises(InvalidInputError) as refused:
        AffinityPropagationModel.load(str(tmp_path / "model"))
    assert message in str(refused.value) and str(tmp_path / "model") in str(refused.value)


@pytest.mark.parametrize("how", ["metric", "no metadata part", "no data", "truncated metadata", "no exemplars"])
def test_a_model_folder_that_is_not_as_written_is_refused_by_its_checksums(saved_model, tmp_path, how):
    import json
    import shutil

    from spark_ap import InvalidInputError

    shutil.copytree(saved_model, tmp_path / "model")
    listed = (tmp_path / "model" / "checksums.json").read_text()
    _tamper(tmp_path / "model", how)
    (tmp_path / "model" / "checksums.json").write_text(listed)
    with pytest.raises(InvalidInputError, match="is damaged: ") as refused:
        AffinityPropagationModel.load(str(tmp_path / "model"))
    named = [name for name in json.loads(listed)["files"] if name in str(refused.value)]
    assert named, str(refused.value)  # the message names the file


@pytest.mark.parametrize(
    "rows, metric, message",
    [
        ([(0, [1.0, 2.0]), (1, None)], "sqeuclidean", "1 row(s) of 'features' cannot be assigned"),
        ([(0, [1.0, 2.0]), (1, [1.0]), (2, [1.0, 2.0, 3.0])], "sqeuclidean", "2 row(s) of 'features'"),
        ([(0, [1.0, float("nan")])], "sqeuclidean", "e.g. [1.0, nan]"),
        ([(0, [1.0, float("inf")])], "sqeuclidean", "1 row(s)"),
        ([(0, [1.0, None])], "sqeuclidean", "e.g. [1.0, None]"),
        ([(0, [0.0, 0.0]), (1, [1.0, 0.0])], "cosine", "or all 0 (cosine)), e.g. [0.0, 0.0]"),
        # Its squared distance to every exemplar overflows: it went to cluster 0, not to the nearer [5, 5].
        ([(0, [1e308, 1e308])], "sqeuclidean", "values whose squares overflow), e.g. [1e+308, 1e+308]"),
    ],
)
def test_transform_refuses_rows_it_cannot_assign_with_a_count_and_an_example(spark, rows, metric, message):
    from spark_ap import InvalidInputError

    model = AffinityPropagationModel(pd.DataFrame({"cluster": [0, 1], "exemplar": [3, 7],
                                                   "features": [[1.0, 1.0], [5.0, 5.0]]}))  # fmt: skip
    model._set(metric=metric)
    table = spark.createDataFrame(rows, "id long, features array<double>")
    with pytest.raises(InvalidInputError, match="transform: ") as refused:
        model.transform(table)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "columns, message",
    [
        ("id long, x array<double>", "no features column 'features'"),
        ("id long, features array<double>, cluster int", "already has a column 'cluster'"),
        ("id long, features array<double>, exemplar long", "already has a column 'exemplar'"),
    ],
)
def test_transform_refuses_a_table_without_features_or_with_its_output_columns(spark, columns, message):
    from spark_ap import InvalidInputError

    model = AffinityPropagationModel(pd.DataFrame({"cluster": [0], "exemplar": [3], "features": [[1.0, 1.0]]}))
    row = (0, [1.0, 1.0], 5) if columns.count(",") == 2 else (0, [1.0, 1.0])
    with pytest.raises(InvalidInputError, match=message):
        model.transform(spark.createDataFrame([row], columns))


@pytest.mark.parametrize(
    "schema, row, message",
    [
        ("id long, features array<string>", (0, ["1", "2"]), "'features' has type array<string>; it must be an array"),
        ("id long, features double", (0, 1.0), "'features' has type double; it must be an array of numbers"),
        ("id long, features string", (0, "1,1"), "'features' has type string"),
    ],
)
def test_transform_refuses_features_of_another_type_naming_it(spark, schema, row, message):
    from spark_ap import ColumnTypeError

    model = AffinityPropagationModel(pd.DataFrame({"cluster": [0], "exemplar": [3], "features": [[1.0, 1.0]]}))
    with pytest.raises(ColumnTypeError) as refused:  # Spark's cast error or AnalysisException before
        model.transform(spark.createDataFrame([row], schema))
    assert str(refused.value).startswith("transform: ") and message in str(refused.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: "", "The model path is empty"),
        (lambda tmp: " ", "The model path is empty"),
        (
            lambda tmp: (tmp / "model.txt").write_text("x") and str(tmp / "model.txt"),
            "model.txt is a file, not a model",
        ),
        (lambda tmp: (tmp / "gone").symlink_to(tmp / "run") or str(tmp / "gone"), "gone is a link to"),
        (lambda tmp: str(tmp / "run" / "model"), "model is a folder that does not exist"),
    ],
)
def test_load_refuses_a_path_without_a_model_folder_naming_it(tmp_path, make, message):
    from spark_ap import InvalidInputError

    with pytest.raises(InvalidInputError) as refused:  # Spark's PATH_NOT_FOUND before, naming metadata/
        AffinityPropagationModel.load(make(tmp_path))
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "rows, schema, error, message",
    [
        (
            [(1.0, [1.0]), (2.5, [2.0])],
            "id double, features array<double>",
            "ColumnTypeError",
            "column 'id' has type double",
        ),
        (
            [(0, ["a"]), (1, ["b"])],
            "id long, features array<string>",
            "ColumnTypeError",
            "'features' has type array<string>",
        ),
        (
            [(0, [1e200, 0.0]), (1, [-1e200, 0.0]), (2, [0.0, 0.0])],
            "id long, features array<double>",
            "InvalidValueError",
            "2 of 3 feature rows hold a value in 'features' beyond",
        ),
        ([(0, [1.0]), (1, [float("nan")])], "id long, features array<double>", "InvalidValueError", "NaN or infinite"),
    ],
)
def test_fit_refuses_a_bad_feature_table_naming_the_column(spark, rows, schema, error, message):
    import spark_ap

    with pytest.raises(getattr(spark_ap, error)) as refused:
        MultiLevelAffinityPropagation().fit(spark.createDataFrame(rows, schema))
    assert message in str(refused.value)


def test_a_model_of_unicode_ids_assigns_new_points_as_scikit_learn(spark, tmp_path):
    X = np.array([[0.0, 0.0], [0.3, 0.1], [0.1, 0.4], [10.0, 10.0], [10.2, 9.9], [9.8, 10.3]])
    ids = ["ä", "ö", "ü", "中", "文", "🙂" * 2000]  # ascending code points; one 2,000-character id
    features = spark.createDataFrame(
        [(i, [float(v) for v in x]) for i, x in zip(ids, X, strict=True)], "id string, features array<double>"
    )
    model = MultiLevelAffinityPropagation(noise="sklearn").fit(features)
    model.write().save(str(tmp_path / "model"))
    loaded = AffinityPropagationModel.load(str(tmp_path / "model"))
    S = similarity_matrix(X)
    sk = SklearnAP(affinity="precomputed", preference=float(np.median(S[~np.eye(6, dtype=bool)])), random_state=0)
    sk.fit(S)
    new = np.array([[0.2, 0.2], [9.9, 10.1]])
    nearest = [sk.cluster_centers_indices_[np.argmin(((X[sk.cluster_centers_indices_] - p) ** 2).sum(1))] for p in new]
    table = spark.createDataFrame([("neu", [0.2, 0.2]), ("新", [9.9, 10.1])], "id string, features array<double>")
    assigned = {row.id: row.exemplar for row in loaded.transform(table).collect()}
    assert assigned == {"neu": ids[nearest[0]], "新": ids[nearest[1]]}


# Fits with maxClusterSize on blobs of one large and two small clusters (tests/test_capacity.py's):
# the placement moves points of the large blob past their nearest exemplar, or leaves points out.
CAPACITY_FITS = {
    "placed past the nearest exemplar": ((60, 12), {"maxClusterSize": 30, "preference": -60.0}),
    "left out": ((30, 6), {"maxClusterSize": 5, "preference": -2000.0, "damping": 0.9}),
}


@pytest.mark.parametrize(
    "case", [c if c != "left out" else pytest.param(c, marks=pytest.mark.slow) for c in CAPACITY_FITS]
)
@pytest.mark.filterwarnings("ignore::spark_ap.engines.capacity.CapacityWarning")
def test_transform_on_the_fitted_points_is_the_fits_labels_under_a_capacity(spark, tmp_path, case):
    (large, small), params = CAPACITY_FITS[case]
    X, _ = make_blobs([large, small, small], centers=[[0, 0], [12, 0], [0, 12]], random_state=0)
    features = feature_frame(spark, X)
    model = MultiLevelAffinityPropagation(**params).fit(features)
    run = {row.id: (row.cluster, row.exemplar) for row in model.summary.assignments.collect()}
    # The test can tell: by numpy, some points of the fit are not in their nearest exemplar's cluster.
    E = X[model.exemplars["exemplar"].astype(int)]
    nearest = np.argmin(((X[:, None, :] - E[None, :, :]) ** 2).sum(-1), axis=1)
    moved = [i for i in range(len(X)) if run[i][0] != nearest[i]]
    assert moved and (case != "left out" or any(run[i][0] == -1 for i in moved))
    assert _assigned(model.transform(features)) == run

    # Saved and loaded: the bound, the fitted sizes (counted from the run) and the fit's labels.
    model.save(str(tmp_path / "model"))
    again = AffinityPropagationModel.load(str(tmp_path / "model"))
    counted = Counter(c for c, _ in run.values() if c >= 0)
    assert again.getMaxClusterSize() == params["maxClusterSize"] == model.getMaxClusterSize()
    assert again.clusterSizes() == [counted[c] for c in range(len(counted))] == model.clusterSizes()
    assert _assigned(again.transform(features)) == run

    # A row with a moved point's id but other features (another exemplar's) is a new point: nearest.
    point = moved[0]
    other = next(k for k in range(len(E)) if k != run[point][0])
    reused = _assigned(again.transform(feature_frame(spark, [E[other]], ids=[point])))
    assert reused[point][0] == other


def brute_force_room(S: np.ndarray, room: np.ndarray) -> tuple[int, float]:
    """The most rows placed, then the largest total similarity, over every assignment of the rows of
    ``S`` (rows x clusters) to a cluster or none with at most ``room[k]`` rows in cluster k."""
    best = (0, 0.0)
    B, K = S.shape
    for choice in itertools.product(range(-1, K), repeat=B):
        load = Counter(c for c in choice if c >= 0)
        if all(load[k] <= room[k] for k in load):
            placed = [(b, c) for b, c in enumerate(choice) if c >= 0]
            best = max(best, (len(placed), sum(S[b, c] for b, c in placed)))
    return best


def room_case(seed: int):
    """3 exemplars, maxClusterSize 4, fitted sizes from 1 to 4 (room 3 to 0), 3 to 6 new points; on
    odd seeds fuller clusters, often fewer places than points."""
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(3, 2)) * 3
    sizes = rng.integers(2 if seed % 2 else 1, 5, size=3)
    batch = rng.normal(size=(int(rng.integers(3, 7)), 2)) * 3
    return E, sizes, 4, batch


def room_model(E, sizes, capacity):
    exemplars = pd.DataFrame(
        {"cluster": range(len(E)), "exemplar": [100 + k for k in range(len(E))], "features": [list(e) for e in E]}
    )
    model = AffinityPropagationModel(exemplars.assign(size=sizes))
    return model.copy({model.maxClusterSize: capacity}).setAssignment("withRoom")


@pytest.mark.parametrize("seed", range(8))
def test_with_room_places_a_batch_into_the_room_the_fit_left_as_brute_force(spark, seed):
    E, sizes, capacity, batch = room_case(seed)
    model = room_model(E, sizes, capacity)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _assigned(model.transform(feature_frame(spark, batch)))
    cluster = np.array([got[b][0] for b in range(len(batch))])
    assert all(got[b][1] == (None if c < 0 else 100 + c) for b, c in enumerate(cluster))
    room = capacity - sizes
    placed = cluster >= 0
    assert np.all(np.bincount(cluster[placed], minlength=3) <= room)
    S = -((batch[:, None, :] - E[None, :, :]) ** 2).sum(-1)
    count, total = brute_force_room(S, room)
    assert int(placed.sum()) == count
    assert S[np.flatnonzero(placed), cluster[placed]].sum() == pytest.approx(total, rel=1e-9, abs=1e-9)
    left = [str(w.message) for w in caught if issubclass(w.category, CapacityWarning)]
    if count < len(batch):
        assert any(f"{len(batch) - count} of {len(batch)} points" in m for m in left), left
    else:
        assert not left


def test_the_room_cases_overfill_a_cluster_by_nearest_and_leave_points_out():
    # The cases above are ones that need the placement: the nearest exemplars would overfill a
    # cluster's room on some seeds, and on some there are fewer places than points.
    overfilled = short = 0
    for seed in range(8):
        E, sizes, capacity, batch = room_case(seed)
        nearest = np.argmin(((batch[:, None, :] - E[None, :, :]) ** 2).sum(-1), axis=1)
        overfilled += bool(np.any(np.bincount(nearest, minlength=3) > capacity - sizes))
        short += bool((capacity - sizes).sum() < len(batch))
    assert overfilled >= 4 and short >= 2


def test_nearest_is_the_default_and_ignores_the_room(spark):
    # The same model as nearest (the default): every point to its nearest exemplar, full or not.
    E, sizes, capacity, batch = room_case(1)
    model = room_model(E, sizes, capacity).setAssignment("nearest")
    assert AffinityPropagationModel().getAssignment() == "nearest"
    got = _assigned(model.transform(feature_frame(spark, batch)))
    nearest = np.argmin(((batch[:, None, :] - E[None, :, :]) ** 2).sum(-1), axis=1)
    assert [got[b][0] for b in range(len(batch))] == nearest.tolist()
    with pytest.raises(InvalidParamError, match="assignment must be one of"):
        model.setAssignment("closest")


def test_with_room_refuses_a_stream_and_repeated_ids(spark, tmp_path):
    E, sizes, capacity, batch = room_case(0)
    model = room_model(E, sizes, capacity)
    with pytest.raises(InvalidInputError, match="needs one row per id"):
        model.transform(feature_frame(spark, batch[:2], ids=[7, 7]))
    feature_frame(spark, batch).write.parquet(str(tmp_path / "points"))
    stream = spark.readStream.schema("id long, features array<double>").parquet(str(tmp_path / "points"))
    with pytest.raises(InvalidInputError, match="a stream takes"):
        model.transform(stream)


def test_a_model_saved_without_the_bound_and_the_sizes_still_loads(spark, saved_model, tmp_path):
    # As an older spark-ap wrote it: no maxClusterSize, idCol or assignment params, no size column,
    # no displaced points. It loads with no bound and no sizes and assigns by nearest exemplar.
    shutil.copytree(saved_model, tmp_path / "model")
    folder = tmp_path / "model"
    (folder / "checksums.json").unlink()
    (part,) = (folder / "metadata").glob("part-*")
    metadata = json.loads(part.read_text())
    for key in ("paramMap", "defaultParamMap"):
        for name in ("maxClusterSize", "idCol", "assignment"):
            metadata[key].pop(name, None)
    metadata.pop("displaced", None)
    part.write_text(json.dumps(metadata))
    assert "size" not in pd.read_parquet(folder / "data").columns
    loaded = AffinityPropagationModel.load(str(folder))
    assert loaded.getMaxClusterSize() == 0 and loaded.clusterSizes() is None and loaded.displaced.empty
    points = feature_frame(spark, [[1.0, 1.0], [4.0, 4.5]])
    assert _assigned(loaded.transform(points)) == {0: (0, 3), 1: (1, 7)}
    assert _assigned(loaded.setAssignment("withRoom").transform(points)) == {0: (0, 3), 1: (1, 7)}  # no bound
    with pytest.raises(InvalidInputError, match="needs the fitted cluster sizes"):
        loaded.copy({loaded.maxClusterSize: 3}).transform(points)
