"""The estimator behaves like a pyspark.ml one: keyword-only params, getters, setters, save/load."""

import inspect
from datetime import datetime, timezone

import numpy as np
import pytest

from spark_ap import AffinityPropagation, InvalidParamError, MultiLevelAffinityPropagation, edges_from_matrix, params
from spark_ap.app import config, job, pipeline
from tests.conftest import ROOT


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
    ap = AffinityPropagation().setDamping(0.8).setMaxIter(50).setPreference("quantile:0.25").setWeightCol("w")
    assert (ap.getDamping(), ap.getMaxIter(), ap.getPreference(), ap.getWeightCol()) == (0.8, 50, "quantile:0.25", "w")
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
        ({"preference": "quantile:1.5"}, "quantile in \\(0, 1\\)"),
        ({"preference": "1.5"}, "quantile in \\(0, 1\\)"),
        ({"preference": "average"}, "preference must be"),
        ({"preference": float("nan")}, "preference must be finite"),
        ({"checkpointKind": "disk"}, "checkpointKind must be"),
        ({"preference": "0"}, "quantile in \\(0, 1\\)"),
        ({"duplicates": "sum"}, "duplicates must be one of"),
        ({"noise": "gauss"}, "noise must be one of"),
        ({"engine": "spark"}, "engine must be one of"),
        ({"engine": "dataframe"}, "replaced by engine='graphframes'"),
        # NaN, infinities, wrong types and blanks: spark-ap's error naming the param, never pyspark's TypeError.
        ({"damping": float("nan")}, "damping must be in \\[0.5, 1\\); got nan"),
        ({"damping": "0.7"}, "damping must be a number; got '0.7'"),
        ({"damping": True}, "damping must be a number; got True"),
        ({"maxIter": float("inf")}, "maxIter must be a whole number; got inf"),
        ({"maxIter": 2.5}, "maxIter must be a whole number; got 2.5"),
        ({"maxIter": True}, "maxIter must be a number; got True"),
        ({"seed": float("nan")}, "seed must be a whole number; got nan"),
        ({"preference": float("inf")}, "preference must be finite; got inf"),
        ({"preference": ""}, "preference must be a number, 'median', 'min', or a quantile"),
        ({"srcCol": ""}, "srcCol must not be empty; got ''"),
        ({"weightCol": " "}, "weightCol must not be empty; got ' '"),
        ({"weightCol": 5}, "weightCol must be a string; got 5"),
        ({"stateDir": ""}, "stateDir must not be empty; got ''"),
        ({"engine": ""}, "engine must be one of"),
    ],
)
def test_out_of_range_params_fail_fast(params, message):
    with pytest.raises(InvalidParamError, match=message):
        AffinityPropagation(**params)
    name, value = next(iter(params.items()))
    with pytest.raises(InvalidParamError, match=message):
        getattr(AffinityPropagation(), "set" + name[0].upper() + name[1:])(value)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"numNeighbors": float("nan")}, "numNeighbors must be a whole number; got nan"),
        ({"numNeighbors": "3"}, "numNeighbors must be a number; got '3'"),
        ({"resolution": -1}, "resolution must be >= 0; got -1"),
        ({"numClusters": 1.5}, "numClusters must be a whole number; got 1.5"),
        ({"idCol": ""}, "idCol must not be empty; got ''"),
        ({"featuresCol": ""}, "featuresCol must not be empty; got ''"),
        ({"metric": ""}, "metric must be one of \\('sqeuclidean', 'cosine'\\); got ''"),
        ({"damping": float("nan")}, "damping must be in \\[0.5, 1\\); got nan"),
    ],
)
def test_multilevel_params_out_of_range_fail_fast(params, message):
    with pytest.raises(InvalidParamError, match=message):
        MultiLevelAffinityPropagation(**params)
    name, value = next(iter(params.items()))
    with pytest.raises(InvalidParamError, match=message):
        getattr(MultiLevelAffinityPropagation(), "set" + name[0].upper() + name[1:])(value)


def test_whole_numbers_written_as_floats_are_taken():
    # YAML and JSON write 50.0 for 50: an int param takes an integral float (and the run sees an int).
    assert AffinityPropagation(maxIter=50.0).getMaxIter() == 50
    assert isinstance(AffinityPropagation(maxIter=50.0).getMaxIter(), int)


def test_save_and_load(tmp_path, spark):
    ap = AffinityPropagation(damping=0.75, preference="quantile:0.1", maxIter=33, srcCol="a", dstCol="b", seed=4)
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


# One spec, every surface: spark_ap.params.SPECS against the estimators, the
# command line, the YAML file and the DAG's params.


@pytest.mark.parametrize("estimator", [AffinityPropagation, MultiLevelAffinityPropagation])
def test_estimators_params_are_the_spec(estimator):
    specs = {spec.name: spec for spec in params.specs(estimator.__name__)}
    made = estimator()
    assert sorted(p.name for p in made.params) == sorted(specs)
    for name, spec in specs.items():
        param = made.getParam(name)
        assert param.doc == spec.doc, name
        assert (made.getOrDefault(param) if made.isDefined(param) else None) == spec.default, name
        getter, setter = "get" + name[0].upper() + name[1:], "set" + name[0].upper() + name[1:]
        assert getattr(made, getter)() == spec.default, getter
        assert callable(getattr(made, setter)), setter
    for method in (estimator.__init__, estimator.setParams):
        signature = inspect.signature(method)
        keywords = {n: p.default for n, p in signature.parameters.items() if p.kind == p.KEYWORD_ONLY}
        assert keywords == {name: spec.default for name, spec in specs.items()}, method.__qualname__


def test_every_param_is_checked_with_its_spec():
    for spec in params.SPECS.values():
        estimator = AffinityPropagation if params.AP in spec.estimators else MultiLevelAffinityPropagation
        if spec.low is not None:
            with pytest.raises(InvalidParamError, match=spec.name):
                estimator(**{spec.name: spec.type(spec.low - 1)})
        if spec.high is not None:
            with pytest.raises(InvalidParamError, match=spec.name):
                estimator(**{spec.name: spec.high})
        if spec.choices:
            with pytest.raises(InvalidParamError, match=spec.name):
                estimator(**{spec.name: "nonsense"})
            for choice in spec.choices:
                estimator(**{spec.name: choice})


def test_command_line_flags_are_the_spec():
    options = {action.dest: action for action in job.parser()._actions if action.option_strings[:1] != ["--no-noise"]}
    for spec in params.SPECS.values():
        if spec.section is None:
            continue
        action = options[spec.name]
        assert spec.flag in action.option_strings
        assert f"(default {spec.default})" in action.help
        assert tuple(action.choices or ()) == spec.choices, spec.name


@pytest.mark.parametrize(
    "text, message",
    [
        ('ap:\n  damping: "0.8"\n', "ap.damping must be a number; got '0.8'"),
        ("ap:\n  maxIter: 2.5\n", "ap.maxIter must be a whole number; got 2.5"),
        ("ap:\n  seed: true\n", "ap.seed must be a number; got True"),
        ("ap:\n  engine: 1\n", "ap.engine must be one of"),
        ("ap:\n  preference: [1]\n", "ap.preference must be a number, 'median'"),
        ("ap: [1]\n", "section ap must hold 'name: value' settings; it holds list [1]"),
        ("spark: oops\n", "section spark must hold 'name: value' settings; it holds str 'oops'"),
        ("ap:\n  bogus: 1\n", "unknown ap setting(s) ['bogus']"),
        ("model:\n  k: 1\n", "unknown section(s) ['model']"),
        ("input:\n  kind: graph\n", "input.kind must be one of ('edges', 'features'); got 'graph'"),
        ("input:\n  srcCol: 1\n", "input.srcCol must be a string; got 1"),
        ("features:\n  numNeighbors: 0\n", "features.numNeighbors must be >= 1; got 0"),
        ("airflow:\n  catchup: maybe\n", "airflow.catchup must be true or false; got 'maybe'"),
        ("airflow:\n  schedule: 5\n", "airflow.schedule must be a string; got 5"),
        # NaN, infinities, blanks and numbers written as text, named as the file spells them.
        ("ap:\n  damping: .nan\n", "ap.damping must be in [0.5, 1); got nan"),
        ("ap:\n  maxIter: .inf\n", "ap.maxIter must be a whole number; got inf"),
        ("ap:\n  preference: .nan\n", "ap.preference must be finite; got nan"),
        ("ap:\n  preference: ''\n", "ap.preference must be a number, 'median', 'min', or a quantile"),
        ("ap:\n  stateDir: ''\n", "ap.stateDir must not be empty; got ''"),
        ("input:\n  weightCol: ''\n", "input.weightCol must not be empty; got ''"),
        ("features:\n  numNeighbors: '3'\n", "features.numNeighbors must be a number; got '3'"),
        ("airflow:\n  input: ''\n", "airflow.input must be a path, not empty; got ''"),
        ("airflow:\n  output_root: ' '\n", "airflow.output_root must be a path, not empty; got ' '"),
    ],
)
def test_a_bad_settings_file_ends_the_job_with_one_line_naming_the_setting(tmp_path, capsys, text, message):
    settings = tmp_path / "settings.yaml"
    settings.write_text(text)
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    assert job.main(["--input", str(edges), "--output", str(tmp_path / "run"), "--config", str(settings)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"spark-ap: error: {settings}: ") and message in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--input", "--output"])
def test_an_empty_path_is_refused_before_spark_starts(tmp_path, capsys, flag):
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    argv = {"--input": str(edges), "--output": str(tmp_path / "run"), flag: " "}
    assert job.main([item for pair in argv.items() for item in pair]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"({flag}) is empty" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.csv"]


def test_yaml_file_holds_the_defaults():
    conf = config.read_config(config.DEFAULT_CONFIG)
    for section in ("ap", "features", "input"):
        for name, value in conf[section].items():
            if name != "kind":
                assert params.SPECS[name].section == section and value == params.SPECS[name].default, name


def test_dag_params_are_the_spec_and_go_to_the_job_as_flags():
    schemas = params.dag_params()
    offered = [spec for spec in params.SPECS.values() if spec.dag]
    assert sorted(schemas) == sorted(spec.snake for spec in offered)
    for spec in offered:
        assert schemas[spec.snake]["default"] == spec.default
        assert schemas[spec.snake].get("enum", list(spec.choices) or None) == (list(spec.choices) or None)
    # The arguments a DAG run gives the job parse back to the same settings.
    values = {spec.snake: schemas[spec.snake]["default"] for spec in offered}
    values.update({"input": "in.csv", "output_root": "/tmp/out", "kind": "features", "damping": 0.75, "seed": 3})
    args = job.parser().parse_args(pipeline.job_arguments(values, datetime(2026, 12, 1, tzinfo=timezone.utc))["args"])
    merged = job.settings(args)
    for spec in offered:
        section = merged[spec.section]
        assert section[spec.name] == values[spec.snake], spec.name


def test_a_number_is_always_a_value_and_words_name_statistics():
    args = job.parser().parse_args(["--input", "x", "--output", "y", "--preference", "0.3"])
    assert job.settings(args)["ap"]["preference"] == 0.3
    args = job.parser().parse_args(["--input", "x", "--output", "y", "--preference", "quantile:0.3"])
    assert job.settings(args)["ap"]["preference"] == "quantile:0.3"
    assert params.quantile("quantile:0.3") == 0.3 and params.quantile("median") == 0.5
    assert params.quantile("min") is None
    # The spelling before quantile: still means a quantile, with a warning naming the new one.
    with pytest.warns(FutureWarning, match="quantile:0.3"):
        assert params.quantile("0.3") == 0.3


def test_command_line_errors_speak_in_flags(tmp_path, capsys):
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    assert job.main(["--input", str(edges), "--output", str(tmp_path / "run"), "--max-iter", "0"]) == 2
    assert "--max-iter must be >= 1" in capsys.readouterr().err
    points = tmp_path / "points.csv"
    points.write_text("id,x,y\n0,1.0,2.0\n1,2.0,3.0\n")
    assert job.main(["--input", str(points), "--output", str(tmp_path / "run")]) == 2
    assert "this looks like a feature table: add --kind features" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_multilevel_setters_and_save_and_load(tmp_path, spark):
    ap = MultiLevelAffinityPropagation().setNumNeighbors(7).setMetric("cosine").setPreference("quantile:0.2")
    with pytest.raises(InvalidParamError, match="numNeighbors"):
        ap.setNumNeighbors(0)
    assert ap.getNumNeighbors() == 7  # a refused value leaves the old one
    ap.save(str(tmp_path / "ml"))
    loaded = MultiLevelAffinityPropagation.load(str(tmp_path / "ml"))
    assert (loaded.getNumNeighbors(), loaded.getMetric(), loaded.getPreference()) == (7, "cosine", "quantile:0.2")


def test_docs_params_table_lists_the_spec():
    page = (ROOT / "docs" / "notebook.md").read_text()
    table = page[page.index("## Parameters") : page.index("## Output")]
    for spec in params.specs(params.AP):
        assert f"`{spec.name}`" in table, spec.name


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_number_param_with_one_bound_or_none_refuses_nan_and_infinities(value):
    # damping's two bounds refuse NaN by chance (no comparison holds); a param with one bound must too.
    for spec in (params.Spec("x", float, 1.0, "doc", low=0.0), params.Spec("y", float, 1.0, "doc")):
        with pytest.raises(InvalidParamError, match=f"{spec.name} must be .*; got {value}$"):
            spec.check(value)
