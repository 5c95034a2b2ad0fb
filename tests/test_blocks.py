"""The block engine and the local engine (its numpy step on the driver): the per-source merge, many chunks, and
runs that move between engines."""

import logging
import re
from collections import Counter

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_matrix, engines, similarity_matrix
from spark_ap.engines.blocks import exchange, kernel, pack
from spark_ap.engines.blocks.engine import BlockEngine
from spark_ap.engines.blocks.kernel import Chunk, Top
from spark_ap.engines.blocks.storage import Sources
from spark_ap.testing.reference import SparseReference
from tests.conftest import assignment_rows


def _top_by_sorting(src: np.ndarray, dst: np.ndarray, value: np.ndarray) -> dict:
    """Per source: sort its edges by (-value, dst), as argmax with first-wins would pick; the
    largest value, its target, the second largest (-inf for a single edge)."""
    expected = {}
    for i in np.unique(src):
        mine = sorted(zip(-value[src == i], dst[src == i], strict=True))
        expected[i] = (-mine[0][0], mine[0][1], -mine[1][0] if len(mine) > 1 else -np.inf)
    return expected


def test_merging_partial_tops_in_any_order_gives_the_top_of_all_edges():
    # Values from a small set, so ties (equal largest, equal second) are common.
    rng = np.random.default_rng(3)
    n, m = 30, 400
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    value = rng.integers(-4, 0, m).astype(float)
    expected = _top_by_sorting(src, dst, value)
    for seed in range(5):
        parts = np.random.default_rng(seed).integers(0, 4, m)
        top = Top.empty(n)
        for p in np.random.default_rng(seed).permutation(4):
            for k in np.flatnonzero(parts == p):  # one edge at a time: the finest split there is
                top.merge(np.array([src[k]]), np.array([value[k]]), np.array([dst[k]]), np.array([-np.inf]))
        got = {i: (top.largest[i], top.arg[i], top.second[i]) for i in np.unique(src)}
        assert got == expected


def test_the_top_over_chunks_is_the_top_of_all_edges():
    # Three chunks (targets split by k mod 3), values from a small set: ties are common,
    # and a source's edges and its tied largest ones are spread over the chunks.
    rng = np.random.default_rng(4)
    n = 30
    pairs = {(int(i), int(j)) for i, j in rng.integers(0, n, (300, 2))} | {(k, k) for k in range(n)}
    src, dst = np.array(sorted(pairs)).T
    value = rng.integers(-4, 0, src.size).astype(float)
    expected = _top_by_sorting(src, dst, value)  # every vertex is a source (its self-edge)
    chunks = []
    for part in range(3):
        mine = dst % 3 == part
        zeros = np.zeros(mine.sum())
        columns = {"i": src[mine], "j": dst[mine], "s": value[mine] - 1.0, "r": zeros, "a": np.ones(mine.sum())}
        columns.update(e=zeros.astype(bool), run=zeros.astype(np.int32), changed=zeros.astype(bool))
        chunks.append(Chunk.from_arrays(columns))
    top = Top.over(n, lambda: chunks)  # a + s: value - 1 + 1
    assert {i: (top.largest[i], top.arg[i], top.second[i]) for i in range(n)} == expected


def _integer_graph(n: int, density: float, seed: int) -> np.ndarray:
    """Similarities from a few integers (many exact ties), missing edges as -inf, preference -2."""
    rng = np.random.RandomState(seed)
    S = -rng.randint(1, 5, (n, n)).astype(float)
    S[rng.rand(n, n) > density] = -np.inf
    np.fill_diagonal(S, -2.0)
    return S


def test_repeated_pairs_are_counted_as_a_counter_counts_them():
    rng = np.random.default_rng(4)
    for size in (0, 1, 2, 50, 500):
        i, j = rng.integers(0, 6, size), rng.integers(0, 6, size)
        order = np.lexsort((j, i))
        i, j = i[order], j[order]
        counts = Counter(zip(i.tolist(), j.tolist(), strict=True))
        many = {pair: count for pair, count in counts.items() if count > 1}
        found = kernel.repeated_pairs(i, j)
        if not many:
            assert found is None
            continue
        pairs, rows, (a, b, count) = found
        assert (pairs, rows) == (len(many), sum(many.values()))
        assert (a, b) == min(many) and count == many[a, b]


def test_numbering_and_sorting_are_binary_search_and_lexsort():
    # The fast paths (a subtraction for consecutive integer ids, one 64-bit key, counting a
    # chunk's targets) against the plain numpy calls, on ids of every kind and with repeats.
    rng = np.random.default_rng(6)
    kinds = {
        "consecutive from 0": np.arange(50),
        "consecutive from -20": np.arange(-20, 30),
        "one": np.array([7]),
        "with gaps": np.sort(rng.choice(1000, 50, replace=False)) - 500,
        "strings": np.array(sorted(f"v{k}" for k in range(50))),
    }
    for kind, ids in kinds.items():
        values = rng.choice(ids, 300)
        assert kernel.numbers(ids, values).tolist() == np.searchsorted(ids, values).tolist(), kind
    for size in (0, 1, 500):
        # Numbers up to the largest a vertex gets, few of them: many repeated pairs.
        i, j = (rng.choice([0, 1, 5, 2**31 - 2], size) for _ in range(2))
        assert kernel.by_pair(i, j).tolist() == np.lexsort((j, i)).tolist()
    # A chunk's targets: a range with gaps (vertices without edges here), sorted by (i, j).
    targets = [3, 4, 9, 10, 11, 40]
    i, j = rng.integers(41, 100, 400), rng.choice(targets, 400)
    i[:6] = j[:6] = targets  # the self-edges
    order = np.lexsort((j, i))
    zeros = np.zeros(400)
    col = {"i": i[order], "j": j[order], "s": zeros, "r": zeros, "a": zeros, "e": zeros, "run": zeros, "changed": zeros}
    chunk = Chunk.from_arrays(col)
    assert chunk.vertices.tolist() == targets
    assert chunk.jl.tolist() == np.searchsorted(chunk.vertices, col["j"]).tolist()


IDS = {
    "strings": [f"v{k:02d}" for k in range(40)],  # numbered by asking their owners
    "longs": list(range(-15, 25)),  # consecutive: numbered by a subtraction
    "gapped longs": list(range(-30, 50, 2)),  # numbered by asking their owners
}


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 8 iterations
@pytest.mark.parametrize(
    "ids, exchange, partitions",
    [("strings", "routed", 3), ("longs", "driver", 2), ("gapped longs", "routed", 5), ("longs", "routed", 1)],
)
def test_many_small_chunks_compute_the_sparse_reference_messages(spark, monkeypatch, ids, exchange, partitions):
    # About 30 chunks over the engine's partitions: every per-source maximum and tie is
    # merged across chunks, partitions and owners; the vertices are numbered in id order.
    monkeypatch.setattr(pack, "CHUNK_EDGES", 25)
    monkeypatch.setattr(BlockEngine, "partitions", lambda self: partitions)
    ids = IDS[ids]
    S = _integer_graph(40, 0.5, seed=8)
    src, dst = np.nonzero(np.isfinite(S))
    ref = SparseReference(src, dst, S[src, dst])
    for _ in range(8):
        ref.step(0.6)
    ap = AffinityPropagation(maxIter=8, convergenceIter=9, damping=0.6, noise=False, engine="blocks", exchange=exchange)
    result = ap.run(edges_from_matrix(spark, S, ids=ids, diagonal=True))
    got = sorted((row.src, row.dst, row.similarity, row.r, row.a) for row in result.messages.collect())
    names = [ids[k] for k in ref.src], [ids[k] for k in ref.dst]
    assert got == sorted(zip(*names, ref.s.tolist(), ref.r.tolist(), ref.a.tolist(), strict=True))


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 4 iterations
def test_a_vertex_with_most_edges_leaves_partitions_empty_and_the_messages_exact(spark, monkeypatch):
    # Every vertex points to vertex 0: its 30 in-edges are one chunk that no bound can cut, so
    # some of the 6 partitions hold no chunk, and some owners no vertex a partition touches.
    monkeypatch.setattr(pack, "CHUNK_EDGES", 4)
    monkeypatch.setattr(BlockEngine, "partitions", lambda self: 6)
    n = 30
    S = np.full((n, n), -np.inf)
    S[:, 0] = -np.arange(1.0, n + 1)
    S[np.arange(n), np.arange(1, n + 1) % n] = -3.0  # and a ring, so every vertex has an out-edge
    np.fill_diagonal(S, -30.0)
    src, dst = np.nonzero(np.isfinite(S))
    ref = SparseReference(src, dst, S[src, dst])
    for _ in range(4):
        ref.step(0.5)
    ids = [f"w{k:03d}" for k in range(n)]
    ap = AffinityPropagation(maxIter=4, convergenceIter=5, noise=False, engine="blocks", exchange="routed")
    result = ap.run(edges_from_matrix(spark, S, ids=ids, diagonal=True))
    got = sorted((row.src, row.dst, row.r, row.a) for row in result.messages.collect())
    expected = sorted(
        zip([ids[k] for k in ref.src], [ids[k] for k in ref.dst], ref.r.tolist(), ref.a.tolist(), strict=True)
    )
    assert got == expected
    local = AffinityPropagation(maxIter=4, convergenceIter=5, noise=False, engine="local").run(
        edges_from_matrix(spark, S, ids=ids, diagonal=True)
    )
    assert assignment_rows(result) == assignment_rows(local)


def _partials(rng: np.random.Generator, n: int, parts: int) -> list[tuple[np.ndarray, Top]]:
    """Per partition, distinct sorted sources and their partial Tops, from values of a small set
    (ties in the largest and the second are common)."""
    out = []
    for _ in range(parts):
        sources = np.sort(rng.choice(n, rng.integers(0, n + 1), replace=False)).astype(np.int32)
        largest = rng.integers(-3, 0, sources.size).astype(float)
        second = largest - rng.integers(0, 2, sources.size)
        arg = rng.integers(0, n, sources.size).astype(np.int32)
        out.append((sources, Top(largest, arg, second)))
    return out


@pytest.mark.parametrize("n, parts", [(50, 4), (3, 8), (1, 2)])
def test_the_routed_exchange_answers_each_partition_the_merge_of_all(n, parts):
    # The protocol alone, without Spark: partials to the owners of their sources, the owners'
    # merge, the answers back; against one merge of every partial. With fewer vertices than
    # owners, some owners' ranges are empty.
    rng = np.random.default_rng(n)
    partials = _partials(rng, n, parts)
    expected = Top.empty(n)
    for sources, top in partials:
        expected.merge(sources, *top.values())
    wire = exchange.RoutedWire(exchange.owner_starts(n, parts))
    at_owner: dict[int, list] = {}
    for index, (sources, top) in enumerate(partials):
        outbox, sent = wire.send(index, Sources(sources, sources.astype(np.int64)), top)
        assert sent is None  # nothing for the driver
        for owner, data in outbox:
            at_owner.setdefault(owner, []).append((owner, data))
    answers: dict[int, list] = {}
    for owner, pieces in at_owner.items():
        for index, answer in exchange._merged(wire.starts)(owner, iter(pieces)):
            answers.setdefault(index, []).append((index, answer))
    for index, (sources, _) in enumerate(partials):
        got = wire.top(answers.get(index, []), Sources(sources, sources.astype(np.int64)))
        assert [x.tolist() for x in got.values()] == [x.tolist() for x in expected.take(sources).values()]


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 5 iterations
@pytest.mark.parametrize(
    "first_engine, then_engine", [("blocks", "graphframes"), ("graphframes", "blocks"), ("local", "blocks")]
)
def test_a_save_of_one_engine_resumes_on_the_other(spark, tmp_path, first_engine, then_engine):
    # (The local engine's saves are written by the driver, not by Spark.)
    X, _ = make_blobs(20, centers=3, random_state=9)
    edges = edges_from_matrix(spark, similarity_matrix(X), ids=[f"p{k}" for k in range(20)])
    params = dict(seed=3, maxIter=5, convergenceIter=6, checkpointInterval=3, stateDir=str(tmp_path))
    first = AffinityPropagation(engine=first_engine, **params).run(edges)
    assert first.resumedFrom is None and first.numIterations == 5
    # The first run kept its newest save, of iteration 3; the other engine goes on from there.
    again = AffinityPropagation(engine=then_engine, **params).run(edges)
    assert again.resumedFrom == 3 and again.numIterations == 5
    assert again.history.values.tolist() == first.history.values.tolist()
    assert sorted(tuple(r) for r in again.messages.collect()) == sorted(tuple(r) for r in first.messages.collect())


def test_vertices_with_only_a_self_edge_are_exemplars_in_every_engine(spark):
    # 1, 2 and 3 only receive edges: r(k,k) = inf and a(k,k) = inf - inf = NaN, which
    # every engine takes as "exemplar", so the run converges the same way in all.
    edges = spark.createDataFrame([(0, 1, -1.0), (0, 2, -2.0), (0, 3, -3.0)], "src long, dst long, similarity double")
    engines = ("blocks", "graphframes", "local")
    runs = [AffinityPropagation(preference=-2.5, convergenceIter=3, engine=engine).run(edges) for engine in engines]
    for run in runs:
        assert run.converged and run.history["exemplars"].iloc[-1] == 3
    assert [assignment_rows(r) for r in runs[1:]] == [assignment_rows(runs[0])] * 2
    assert runs[0].numIterations == runs[1].numIterations == runs[2].numIterations


@pytest.mark.parametrize("exchange", ["driver", "routed"])
def test_the_local_engine_is_the_blocks_engine_on_the_driver(spark, exchange):
    # String ids, noise on, to convergence: every message, the history and the clusters.
    S = _integer_graph(30, 0.5, seed=5)
    edges = edges_from_matrix(spark, S, ids=[f"p{k}" for k in range(30)], diagonal=True)
    runs = [
        AffinityPropagation(engine=engine, exchange=exchange, seed=2, convergenceIter=8).run(edges)
        for engine in ("blocks", "local")
    ]
    assert runs[0].converged and runs[0].exemplars.count() > 1
    blocks, local = (
        (assignment_rows(r), r.numIterations, r.history.values.tolist(), sorted(tuple(m) for m in r.messages.collect()))
        for r in runs
    )
    assert local == blocks


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 4 iterations
def test_the_driver_keeps_no_report_of_past_iterations(spark):
    # PySpark's driver keeps every accumulator it ever made; an iteration's (each partition's
    # Top: arrays of its sources' values) must be emptied once read, or a long run's driver grows without end.
    from pyspark.accumulators import _accumulatorRegistry

    edges = edges_from_matrix(spark, -np.random.RandomState(2).rand(6, 6))
    before = set(_accumulatorRegistry)
    AffinityPropagation(maxIter=4, convergenceIter=5, engine="blocks", exchange="driver").run(edges)
    made = [_accumulatorRegistry[aid] for aid in set(_accumulatorRegistry) - before]
    reports = [acc for acc in made if isinstance(acc.accum_param, (exchange.Reports, pack.Repeated))]
    # The start's repeated pairs and reports, 4 iterations, the two nearest-exemplar rounds of the finish.
    assert len(reports) == 8
    assert all(acc.value == [] for acc in reports)


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 3 iterations
def test_the_routed_exchange_sends_nothing_per_vertex_through_the_driver(spark, monkeypatch):
    # The two doors of the driver, watched while the real jobs run: what the tasks report (their
    # accumulator updates) and what the driver broadcasts. The driver exchange's reports hold
    # 24 bytes per source and it broadcasts 20 bytes per vertex; the routed exchange's reports
    # hold each partition's counts alone, and it broadcasts nothing per vertex.
    import pickle

    from pyspark import SparkContext

    n = 400
    S = _integer_graph(n, 0.1, seed=3)
    edges = edges_from_matrix(spark, S, diagonal=True)
    taken, broadcast = exchange._taken, SparkContext.broadcast
    for name, end_on in (("driver", "best"), ("routed", "last"), ("routed", "best")):
        received, sent = [], []

        def watched_taken(reports, received=received):
            got = taken(reports)
            received.append(len(pickle.dumps(got)))
            return got

        def watched_broadcast(sc, value, sent=sent):
            sent.append(len(pickle.dumps(value)))
            return broadcast(sc, value)

        monkeypatch.setattr(exchange, "_taken", watched_taken)
        monkeypatch.setattr(SparkContext, "broadcast", watched_broadcast)
        ap = AffinityPropagation(
            engine="blocks", exchange=name, maxIter=3, convergenceIter=4, noise=False, endOn=end_on
        )
        result = ap.run(edges)
        monkeypatch.undo()
        exemplars = result.exemplars.count()
        assert len(received) >= 4  # the start, 3 iterations (and the finish's rounds)
        if name == "driver":
            assert max(received) > 24 * n and max(sent) > 20 * n
        else:
            if end_on == "last":
                assert max(received) < 1000  # two partitions' counts
            else:
                # With each iteration's exemplars, to end on the best decisions the unconverged run
                # saw (graphs of up to 5 million edges): 8 bytes per exemplar more.
                decided = int(result.history["exemplars"].max())
                assert 8 * decided < max(received) < 8 * decided + 1000
            # Only per-cluster values are broadcast by the finish (the exemplars, their clusters'
            # sizes, the refined ones with their ids): at most 16 bytes per cluster.
            assert max(sent) < 16 * exemplars + 1000 < 20 * n


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # a fixed 2 iterations
def test_auto_iterates_on_the_driver_up_to_a_number_of_edges(spark, monkeypatch, caplog):
    edges = edges_from_matrix(spark, -np.random.RandomState(1).rand(5, 5))  # 25 edges with the self-edges
    chosen = {}
    for limit in (25, 24):
        monkeypatch.setattr(engines, "LOCAL_MAX_EDGES", limit)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="spark_ap"):
            AffinityPropagation(maxIter=2, convergenceIter=3).run(edges)
        chosen[limit] = re.search(r"iterating with the (\w+) engine", caplog.text).group(1)
    assert chosen == {25: "local", 24: "blocks"}


def test_the_local_engines_top_by_runs_is_the_scattered_top():
    # Top.of_sorted (reduceat over each source's run of edges) against Top.over (scatters, in any
    # order) on random sparse graphs with ties, sources with only their self-edge, and a NaN.
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 12))
        present = rng.random((n, n)) < 0.5
        np.fill_diagonal(present, True)
        i, j = np.nonzero(present)
        chunk = Chunk.from_arrays({"i": i, "j": j, "s": rng.integers(-3, 1, size=i.size).astype(float)})
        chunk.a = rng.integers(-2, 1, size=i.size).astype(float)
        if trial % 7 == 0:
            chunk.a[rng.integers(0, i.size)] = np.nan
        with np.errstate(invalid="ignore"):
            scattered, runs = Top.over(n, lambda c=chunk: [c]), Top.of_sorted(chunk)
        for expected, got in zip(scattered.values(), runs.values(), strict=True):
            np.testing.assert_array_equal(got, expected)
            assert got.dtype == expected.dtype
