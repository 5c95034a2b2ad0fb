"""The estimator behaves like a pyspark.ml one: keyword-only params, getters, setters, save/load."""

import numpy as np
import pytest

from spark_ap import AffinityPropagation, InvalidParamError, edges_from_matrix


def test_defaults():
    ap = AffinityPropagation()
    assert ap.getDamping() == 0.5
    assert ap.getMaxIter() == 200
    assert ap.getConvergenceIter() == 15
    assert ap.getPreference() == "median"
    assert (ap.getSrcCol(), ap.getDstCol(), ap.getWeightCol()) == ("src", "dst", "similarity")
    assert ap.getCheckpointInterval() == 10
    assert ap.getCheckpointKind() == "auto"
    assert ap.getNoise() == "edge"
    assert ap.getEngine() == "auto"
    assert ap.getSeed() == 0


def test_noise_takes_the_old_booleans():
    assert AffinityPropagation(noise=True).getNoise() == "edge"
    assert AffinityPropagation(noise=False).getNoise() == "none"
    assert AffinityPropagation().setNoise("sklearn").getNoise() == "sklearn"


def test_params_are_keyword_only():
    with pytest.raises(TypeError):
        AffinityPropagation(0.9)


def test_setters_chain_and_getters_read_back():
    ap = AffinityPropagation().setDamping(0.8).setMaxIter(50).setPreference("0.25").setWeightCol("w")
    assert (ap.getDamping(), ap.getMaxIter(), ap.getPreference(), ap.getWeightCol()) == (0.8, 50, "0.25", "w")
    assert ap.setPreference(-3).getPreference() == -3


@pytest.mark.parametrize(
    "params, message",
    [
        ({"damping": 0.4}, "damping must be in \\[0.5, 1\\)"),
        ({"damping": 1.0}, "damping must be in \\[0.5, 1\\)"),
        ({"maxIter": 0}, "maxIter must be >= 1"),
        ({"convergenceIter": 0}, "convergenceIter must be >= 1"),
        ({"checkpointInterval": 0}, "checkpointInterval must be >= 1, or -1"),
        ({"checkpointInterval": -2}, "checkpointInterval must be >= 1, or -1"),
        ({"preference": "1.5"}, "quantile in \\(0, 1\\)"),
        ({"preference": "average"}, "preference must be"),
        ({"preference": float("nan")}, "preference must be finite"),
        ({"checkpointKind": "disk"}, "checkpointKind must be"),
        ({"preference": "0"}, "quantile in \\(0, 1\\)"),
        ({"duplicates": "sum"}, "duplicates must be one of"),
        ({"noise": "gauss"}, "noise must be one of"),
        ({"engine": "spark"}, "engine must be one of"),
        ({"engine": "dataframe"}, "replaced by engine='graphframes'"),
    ],
)
def test_out_of_range_params_fail_fast(params, message):
    with pytest.raises(InvalidParamError, match=message):
        AffinityPropagation(**params)
    name, value = next(iter(params.items()))
    with pytest.raises(InvalidParamError, match=message):
        getattr(AffinityPropagation(), "set" + name[0].upper() + name[1:])(value)


def test_save_and_load(tmp_path, spark):
    ap = AffinityPropagation(damping=0.75, preference="0.1", maxIter=33, srcCol="a", dstCol="b", seed=4)
    ap.setDuplicates("mean").setStateDir(str(tmp_path / "state"))
    ap.save(str(tmp_path / "ap"))
    loaded = AffinityPropagation.load(str(tmp_path / "ap"))
    assert loaded.uid == ap.uid
    for param in ap.params:
        assert loaded.getOrDefault(param) == ap.getOrDefault(param), param.name
    assert AffinityPropagation().getStateDir() is None


def test_string_ids_and_custom_column_names(spark):
    S = np.array([[0.0, -1.0, -9.0, -9.5], [-1.0, 0.0, -9.0, -9.5], [-9.0, -9.0, 0.0, -1.0], [-9.5, -9.5, -1.0, 0.0]])
    ids = ["ant", "bee", "cat", "dog"]
    edges = edges_from_matrix(spark, S, ids=ids).toDF("from", "to", "w")
    ap = AffinityPropagation(srcCol="from", dstCol="to", weightCol="w", preference=-5.0)
    rows = {r.id: r for r in ap.assignClusters(edges).collect()}
    assert set(rows) == set(ids)
    assert rows["ant"].cluster == rows["bee"].cluster != rows["cat"].cluster == rows["dog"].cluster
    assert rows["ant"].exemplar in ("ant", "bee") and rows["cat"].exemplar in ("cat", "dog")


def test_self_edges_and_vertex_preferences_win_over_the_param(spark):
    # Two far apart pairs. A very high preference on vertex 0 (self-edge) and on
    # vertex 2 (vertices table) makes both exemplars; the others get -1000.
    edges = spark.createDataFrame(
        [(0, 1, -1.0), (1, 0, -1.0), (2, 3, -1.0), (3, 2, -1.0), (0, 0, 5.0)],
        "src long, dst long, similarity double",
    )
    vertices = spark.createDataFrame([(2, 5.0), (3, None)], "id long, preference double")
    result = AffinityPropagation(preference=-1000.0).run(edges, vertices)
    assert sorted(r.exemplar for r in result.exemplars.collect()) == [0, 2]
    prefs = {r.src: r.similarity for r in result.messages.filter("src = dst").collect()}
    assert prefs == {0: 5.0, 1: -1000.0, 2: 5.0, 3: -1000.0}
