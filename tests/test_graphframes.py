"""The graphframes engine: GraphFrame.aggregateMessages rounds, against scikit-learn, the blocks engine and by hand."""

import numpy as np
import pytest
from graphframes import GraphFrame
from sklearn.cluster import AffinityPropagation as SklearnAP
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

from spark_ap import AffinityPropagation, edges_from_matrix, similarity_matrix
from tests.conftest import assignment_rows, dense_messages, exemplars_of, labels_of


def standardised(data: np.ndarray, every: int) -> np.ndarray:
    return similarity_matrix(StandardScaler().fit_transform(data)[::every])


def test_same_result_as_sklearn(spark):
    # One dataset here, at about a second per iteration; tests/test_sklearn_parity.py runs
    # more on the other engines, which the tests below tie to this one message for message.
    S = standardised(load_wine().data, 6)
    value = float(S[~np.eye(len(S), dtype=bool)].min())
    sk = SklearnAP(affinity="precomputed", preference=value, random_state=0).fit(S)
    assert len(sk.cluster_centers_indices_) > 1

    result = AffinityPropagation(engine="graphframes", preference="min", noise="sklearn").run(
        edges_from_matrix(spark, S)
    )

    assert result.numIterations == sk.n_iter_
    assert exemplars_of(result) == sorted(sk.cluster_centers_indices_)
    np.testing.assert_array_equal(labels_of(result, range(len(S))), sk.labels_)


def sparse_asymmetric(n: int, density: float, seed: int) -> np.ndarray:
    """Asymmetric similarities with missing edges as -inf, a few exact ties, preference -6."""
    rng = np.random.RandomState(seed)
    S = -np.round(rng.rand(n, n) * 10, 1)
    S[rng.rand(n, n) > density] = -np.inf
    np.fill_diagonal(S, -6.0)
    return S


def test_a_whole_run_equals_the_blocks_engine(spark):
    edges = edges_from_matrix(spark, sparse_asymmetric(24, 0.5, seed=2), diagonal=True)
    params = dict(damping=0.6, convergenceIter=5, seed=1)
    runs = [AffinityPropagation(engine=engine, **params).run(edges) for engine in ("blocks", "graphframes")]
    assert runs[0].converged and runs[0].exemplars.count() > 1
    blocks, graphframes = (
        (assignment_rows(r), r.numIterations, r.history.values.tolist(), sorted(tuple(m) for m in r.messages.collect()))
        for r in runs
    )
    messages = blocks[3]
    assert len(messages) > 250
    assert graphframes == blocks  # every message bit for bit, noise included


def test_three_points_by_hand(spark):
    # The hand computation of tests/test_messages.py, one iteration from r = a = 0 at damping 0.5.
    S = np.array([[0.0, -1.0, -4.0], [-1.0, 0.0, -2.0], [-4.0, -2.0, 0.0]])
    R = np.array([[-1.0, 1.0, -1.5], [0.5, -1.0, -0.5], [-1.0, 0.5, -0.5]])
    A = 0.5 * np.array([[0.5, -0.5, -0.5], [-1.0, 1.5, -0.5], [-0.5, 0.0, 0.0]])
    with pytest.warns(UserWarning):
        result = AffinityPropagation(
            engine="graphframes", maxIter=1, convergenceIter=2, noise="none", preference=-3.0
        ).run(edges_from_matrix(spark, S))
    got_R, got_A = dense_messages(result, 3)
    np.testing.assert_array_equal(got_R, R)
    np.testing.assert_array_equal(got_A, A)


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 4 iterations
def test_each_iteration_is_aggregate_messages_rounds(spark, monkeypatch):
    # A spy that calls the real method: a refactor that routes around GraphFrames fails here.
    calls = []
    real = GraphFrame.aggregateMessages

    def counted(self, *args, **kwargs):
        calls.append(("sendToSrc" in kwargs, "sendToDst" in kwargs))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GraphFrame, "aggregateMessages", counted)
    result = AffinityPropagation(engine="graphframes", maxIter=4, convergenceIter=5).run(
        edges_from_matrix(spark, -np.random.RandomState(0).rand(6, 6))
    )
    assert result.numIterations == 4
    assert calls == [(True, False), (False, True)] * 4


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 2 iterations
def test_a_second_run_in_a_session_compiles_no_code(spark):
    # Spark caches the classes it generates for a plan's code by their text; a run's classes
    # must fit in that cache (spark_ap.session.DEFAULTS), or each run compiles them all again.
    compiled = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    edges = edges_from_matrix(spark, -np.random.RandomState(1).rand(5, 5))
    ap = AffinityPropagation(engine="graphframes", maxIter=2, convergenceIter=3)
    assignment_rows(ap.run(edges))
    before = compiled.getCount()
    assignment_rows(ap.run(edges))
    assert compiled.getCount() - before < 20  # about 180 with Spark's default cache


def test_a_graphframe_in_and_a_graphframe_out(spark):
    # Two groups with an edge between them; vertex 5 has no edge at all and a preference of its own.
    vertices = spark.createDataFrame(
        [(0, None), (1, None), (2, None), (3, None), (4, None), (5, -1.0)], "id long, preference double"
    )
    pairs = [(0, 1, -1.0), (1, 0, -1.0), (1, 2, -1.5), (2, 1, -1.0), (3, 4, -1.0), (4, 3, -1.2), (2, 3, -9.0)]
    edges = spark.createDataFrame(pairs, "src long, dst long, similarity double")
    ap = AffinityPropagation(preference=-5.0)
    result = ap.run(GraphFrame(vertices, edges))
    assert assignment_rows(result) == assignment_rows(ap.run(edges, vertices))

    graph = result.graph
    assert isinstance(graph, GraphFrame)
    members = {row.id: (row.cluster, row.exemplar, row.isExemplar) for row in graph.vertices.collect()}
    assert members[5][1:] == (5, True)
    assert {v[1] for k, v in members.items() if k < 3} == {1}  # 0, 1, 2 choose 1
    assert sorted(k for k, v in members.items() if v[2]) == sorted({v[1] for v in members.values()})
    assert set(graph.edges.columns) == {"src", "dst", "similarity", "r", "a"}
    # Going on with GraphFrames: the edges inside clusters, by motif.
    inside = graph.find("(x)-[e]->(y)").filter("x.cluster = y.cluster and x.id != y.id").count()
    assert inside == 6  # every edge but 2 -> 3
