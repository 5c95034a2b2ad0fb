"""The numpy kernel of the blocks and local engines: a chunk of edges and one iteration on it.

A :class:`Chunk` holds every edge into a range of target vertices, sorted by
(source, target), so ``np.bincount`` adds each target's terms in source order,
as a dense column sum does: its availabilities are bit for bit the reference's.
Its responsibilities need, per source, the largest and second largest
a(i,k') + s(i,k') over *all* the source's edges (:class:`Top`), which other
chunks hold too; the maxima are exact in any order, so partial Tops merge
into the whole one wherever they meet (the engines differ in where).

Vertices are numbered 0..n-1 in id order, so "the smallest id" is "the
smallest number" (ties go to it, as ``np.argmax`` picks the first index). A
chunk's sources are indices into the Top arrays the step is given: vertex
numbers for the local engine, whose one chunk holds every edge, and positions
among a partition's sources for the blocks engine, whose arrays are sized by
the sources a partition touches.

This module imports numpy alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

# Top.arg of a source with no edge yet: above every vertex number (they are int32 below it).
NO_TARGET = np.iinfo(np.int32).max


@dataclass
class Top:
    """Per source vertex: the largest a + s, the target giving it (smallest on ties), the second largest."""

    largest: np.ndarray
    arg: np.ndarray
    second: np.ndarray

    @classmethod
    def empty(cls, size: int) -> Top:
        return cls(np.full(size, -np.inf), np.full(size, NO_TARGET, dtype=np.int32), np.full(size, -np.inf))

    def values(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.largest, self.arg, self.second

    def take(self, at: np.ndarray) -> Top:
        """The Top of the sources ``at``."""
        return Top(self.largest[at], self.arg[at], self.second[at])

    def merge(self, at: np.ndarray, largest: np.ndarray, arg: np.ndarray, second: np.ndarray) -> None:
        """Fold in the values of the distinct sources ``at`` over more edges; exact in any order."""
        old_largest, old_arg, old_second = self.largest[at], self.arg[at], self.second[at]
        wins = (largest > old_largest) | ((largest == old_largest) & (arg < old_arg))
        self.largest[at] = np.where(wins, largest, old_largest)
        self.arg[at] = np.where(wins, arg, old_arg)
        self.second[at] = np.where(wins, np.maximum(second, old_largest), np.maximum(old_second, largest))

    @classmethod
    def over(cls, size: int, chunks: Callable[[], Iterable[Chunk]]) -> Top:
        """The Top of each source over the edges of ``chunks()``, in three passes that scatter into
        arrays of ``size`` values (``ufunc.at``; each a maximum or a minimum, so exact in any order).

        ``chunks`` is called once per pass, so that a pass may read one chunk at a time (the blocks
        engine maps each chunk's files in turn rather than holding them all).
        """
        top = cls.empty(size)
        for chunk in chunks():
            with np.errstate(invalid="ignore"):  # ufunc.at warns on the NaN the next pass explains
                np.maximum.at(top.largest, chunk.i, chunk.a + chunk.s)
        for chunk in chunks():
            # The smallest target giving the largest; "not <" rather than "==": a vertex whose
            # only edge is its self-edge has a NaN availability (see step), and that edge is its largest.
            giving = ~(chunk.a + chunk.s < top.largest[chunk.i])
            np.minimum.at(top.arg, chunk.i, np.where(giving, chunk.vertices[chunk.jl], NO_TARGET))
        for chunk in chunks():
            others = np.where(chunk.vertices[chunk.jl] == top.arg[chunk.i], -np.inf, chunk.a + chunk.s)
            np.maximum.at(top.second, chunk.i, others)
        return top

    @classmethod
    def of_sorted(cls, chunk: Chunk) -> Top:
        """:meth:`over` the one chunk of every edge, whose sources are 0..n-1 in order (the local
        engine's): the same values, by ``reduceat`` over each source's run of edges (three times
        as fast as the scatters of ``ufunc.at``)."""
        starts, largest, first = _largest_per_source(chunk.i, chunk.a + chunk.s)
        arg = chunk.vertices[chunk.jl[first]]
        # As over(): the largest of the source's other targets, -inf for a source with one edge.
        others = np.where(
            chunk.vertices[chunk.jl] == np.repeat(arg, np.diff(np.r_[starts, chunk.i.size])), -np.inf, chunk.a + chunk.s
        )
        return cls(largest, arg.astype(np.int32), np.maximum.reduceat(others, starts))


class Chunk:
    """The edges into a range of target vertices, sorted by (src, dst), as numpy arrays.

    ``i`` is each edge's source as an index into the :class:`Top` arrays the step
    is given (see the module docstring); ``vertices`` are the chunk's targets
    (vertex numbers, sorted), ``jl`` each edge's target as a position among them,
    and ``diagonal`` the position of each target's self-edge. ``e``, ``run`` and
    ``changed`` are per target: its exemplar decision, for how many iterations
    it has held, and whether the last iteration changed it.
    """

    ARRAYS = ("i", "jl", "s", "r", "a", "vertices", "diagonal", "e", "run", "changed")
    # The edge state's columns after the similarity ``s``; a state before the first
    # iteration has them all zero (r = a = 0, no decision made).
    MESSAGES = ("r", "a", "e", "run", "changed")
    KINDS = {"r": np.float64, "a": np.float64, "e": np.bool_, "run": np.int32, "changed": np.bool_}

    def __init__(self, **arrays: np.ndarray) -> None:
        for name in self.ARRAYS:
            setattr(self, name, arrays[name])

    @classmethod
    def from_arrays(cls, col: dict[str, np.ndarray], loop: np.ndarray | None = None) -> Chunk:
        """Build a chunk from edge columns sorted by (i, j): ``i`` (see the class), ``j`` (each edge's
        target vertex number), ``s`` and, unless they are all zero, the :attr:`MESSAGES` (of which
        ``e``, ``run`` and ``changed`` are read on self-edges). ``loop`` marks the self-edges; by
        default the edges with ``i == j`` (when ``i`` holds vertex numbers)."""
        col = with_messages(col)
        i, j = col["i"].astype(np.int32), col["j"].astype(np.int32)
        # A chunk's targets are a range of vertex numbers: count them over it rather than sort.
        low = int(j.min()) if j.size else 0
        present = np.bincount(j - low) > 0
        vertices = (np.flatnonzero(present) + low).astype(np.int32)
        jl = (np.cumsum(present, dtype=np.int32) - 1)[j - low]
        diagonal = np.flatnonzero(i == j if loop is None else loop)
        diagonal = diagonal[np.argsort(jl[diagonal])].astype(np.int32)
        if diagonal.size != vertices.size:
            raise ValueError("every target vertex of a chunk needs its self-edge")
        return cls(
            i=i,
            jl=jl,
            s=col["s"],
            r=col["r"],
            a=col["a"],
            vertices=vertices,
            diagonal=diagonal,
            e=col["e"][diagonal].astype(bool),
            run=col["run"][diagonal].astype(np.int32),
            changed=col["changed"][diagonal].astype(bool),
        )

    def decided(self) -> np.ndarray:
        """Per target, its exemplar decision r(k,k) + a(k,k) > 0 in this state (NaN decides, see :meth:`step`)."""
        d = self.diagonal
        return ~((self.r[d] + self.a[d]) <= 0)

    def nearest(self, exemplar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per source with edges here into the targets ``exemplar`` (a boolean per target of this
        chunk): the largest s over those edges and its target, as :meth:`Top.merge` takes them
        (the second largest is not needed: -inf)."""
        keep = exemplar[self.jl]
        if not keep.any():
            return np.empty(0, np.int32), np.empty(0), np.empty(0, np.int32), np.empty(0)
        i = self.i[keep]
        starts, largest, first = _largest_per_source(i, self.s[keep])
        return i[starts], largest, self.vertices[self.jl[keep][first]], np.full(starts.size, -np.inf)

    def scores(self, choice: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per target, the similarities from the members of its cluster under ``choice`` (per source
        index, the exemplar chosen, -1: none), summed in source order, and how many there are;
        ``targets`` are the targets' own indices into ``choice``."""
        own = choice[targets][self.jl]
        same = (choice[self.i] >= 0) & (choice[self.i] == own)
        # np.bincount adds in array order: each target's terms in source order (see assign.refine).
        score = np.bincount(self.jl[same], weights=self.s[same], minlength=self.vertices.size)
        return score, np.bincount(self.jl[same], minlength=self.vertices.size)

    def step(self, top: Top, damping: float, capacity: int | None = None) -> None:
        """One iteration on this chunk's edges, given every source's :class:`Top` of the last one;
        ``capacity``: at most that many points per cluster (:func:`capacitated`)."""
        # r(i,k) = s(i,k) - max_{k' != k} (a(i,k') + s(i,k'))
        i = self.i
        best = np.where(top.arg[i] == self.vertices[self.jl], top.second[i], top.largest[i])
        self.r = damping * self.r + (1 - damping) * (self.s - best)
        # a(i,k) = min(0, r(k,k) + sum_{i' not in {i,k}} max(0, r(i',k))), a(k,k) = sum_{i' != k} max(0, r(i',k))
        d = self.diagonal
        own = np.maximum(self.r, 0)
        own[d] = self.r[d]
        if capacity is None:
            # inf - inf = NaN for a vertex whose only edge is its self-edge, as in the dense computation.
            with np.errstate(invalid="ignore"):
                rest = np.bincount(self.jl, weights=own, minlength=self.vertices.size)[self.jl] - own
            computed = np.minimum(rest, 0)
        else:
            computed, rest = capacitated(self.i, self.jl, own, d, self.vertices.size, capacity)
        computed[d] = rest[d]
        self.a = damping * self.a + (1 - damping) * computed
        # "not <= 0" rather than "> 0": a vertex whose only edge is its self-edge has r = inf
        # and a = inf - inf = NaN, and Spark SQL (the graphframes engine, the final assignment)
        # orders NaN above every number, so it counts as an exemplar there; here too.
        decision = self.decided()
        self.run = np.where(decision == self.e, self.run + 1, 1).astype(np.int32)
        self.changed = decision != self.e
        self.e = decision

    def counts(self) -> dict:
        """This chunk's exemplar decisions: how many, how many changed, the shortest run."""
        return {"exemplars": int(self.e.sum()), "changed": int(self.changed.sum()), "min_run": int(self.run.min())}

    def columns(self) -> dict[str, np.ndarray]:
        """The chunk as edge columns ``i, j, s, r, a, e, run, changed`` (``i`` as the chunk holds it,
        ``j`` the target's vertex number); e, run and changed are set on self-edges only."""
        d, size = self.diagonal, self.i.size
        e, run, changed = np.zeros(size, bool), np.zeros(size, np.int32), np.zeros(size, bool)
        e[d], run[d], changed[d] = self.e, self.run, self.changed
        j = self.vertices[self.jl]
        return {"i": self.i, "j": j, "s": self.s, "r": self.r, "a": self.a, "e": e, "run": run, "changed": changed}


def capacitated(
    i: np.ndarray, jl: np.ndarray, own: np.ndarray, diagonal: np.ndarray, targets: int, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Capacitated AP's availabilities before damping, and the sums they come from (rules: capacity).

    ``own`` is max(0, r) per edge and r(k,k) on the self-edges (``diagonal``), ``jl`` each
    edge's target among ``targets`` and ``i`` its source (ties between equal responsibilities go to
    the smaller). With L = ``capacity``, let v_1 >= v_2 >= ... be the positive r(i',k), i' != k,
    and W = r(k,k) + v_1 + ... + v_{L-1}. Then a(k,k) = W - r(k,k), and for i != k

        a(i,k) = min(r(k,k) + (the L-2 largest v but i's), -(the (L-1)-th largest v but i's))

    = min(W - v_i, -v_L) when i is among the L-1 largest, else min(W - v_{L-1}, -v_{L-1}); a
    missing v is 0, and a zero bound is plain AP's min(., 0). W adds its terms in source order
    as plain AP's sum does, so with L >= n every value is plain AP's, bit for bit.
    """
    size = own.size
    if capacity == 1:  # nobody may join another: c(i,k) = 1 has no valid column
        return np.full(size, -np.inf), np.zeros(size)
    loop = np.zeros(size, dtype=bool)
    loop[diagonal] = True
    positive = (own > 0) & ~loop
    at = np.flatnonzero(positive)
    at = at[np.lexsort((i[at], -own[at], jl[at]))]  # per target, the largest first
    target = jl[at]
    rank = np.arange(at.size) - np.searchsorted(target, target)
    kept = np.zeros(size, dtype=bool)
    kept[at[rank < capacity - 1]] = True
    last, beyond = np.zeros(targets), np.zeros(targets)  # v_{L-1} and v_L per target
    has_last = np.zeros(targets, dtype=bool)
    last[target[rank == capacity - 2]] = own[at[rank == capacity - 2]]
    has_last[target[rank == capacity - 2]] = True
    beyond[target[rank == capacity - 1]] = own[at[rank == capacity - 1]]
    # Only the positive terms the capacity leaves out are dropped: with none dropped, W is plain AP's sum.
    with np.errstate(invalid="ignore"):  # inf - inf, as plain AP's (see Chunk.step)
        total = np.bincount(jl, weights=np.where(positive & ~kept, 0.0, own), minlength=targets)[jl]
        rest = total - np.where(kept | loop | ~has_last[jl], own, last[jl])
    bound = np.where(kept, beyond[jl], last[jl])
    return np.where(bound > 0, np.minimum(rest, -bound), np.minimum(rest, 0)), rest


def start_columns(initial: bool) -> list[str]:
    """The edge-state columns an engine's start reads: all but ``similarity``, or ``src, dst, s``
    of a state before the first iteration (``initial``), whose :attr:`Chunk.MESSAGES` are zeros."""
    return ["src", "dst", "s"] if initial else ["src", "dst", "s", *Chunk.MESSAGES]


def with_messages(col: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``col`` with the :attr:`Chunk.MESSAGES` a state before the first iteration leaves out, made zeros."""
    size = col["s"].size
    missing = {name: np.zeros(size, kind) for name, kind in Chunk.KINDS.items() if name not in col}
    return {**col, **missing}


def add_counts(total: dict, counts: dict | None) -> dict:
    """``total`` with the decision ``counts`` of more vertices folded in (None: none)."""
    if counts is None:
        return total
    runs = [run for run in (total["min_run"], counts["min_run"]) if run is not None]
    return {
        "exemplars": total["exemplars"] + counts["exemplars"],
        "changed": total["changed"] + counts["changed"],
        "min_run": min(runs) if runs else None,
    }


NO_COUNTS = {"exemplars": 0, "changed": 0, "min_run": None}


def runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal values in ``values`` (sorted, or grouped); none if empty."""
    if not values.size:
        return []
    starts = np.r_[0, np.flatnonzero(values[1:] != values[:-1]) + 1, values.size]
    return list(zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True))


def _largest_per_source(i: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run of one source in ``i`` (edges sorted by (source, target)): the run's start, its
    largest ``x`` and the first position holding that (the smallest target, as argmax picks)."""
    starts = np.r_[0, np.flatnonzero(i[1:] != i[:-1]) + 1]
    largest = np.maximum.reduceat(x, starts)
    counts = np.diff(np.r_[starts, x.size])
    positions = np.arange(x.size)
    first = np.minimum.reduceat(np.where(x == np.repeat(largest, counts), positions, x.size), starts)
    # A vertex whose only edge is its self-edge ends up with a NaN availability
    # (inf - inf, as in the dense computation); nothing equals NaN, so take its edge.
    return starts, largest, np.where(first == x.size, starts, first)


def numbers(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The positions (int32) of ``values`` in ``ids``, sorted and distinct, which hold every one of them.

    Ids that are consecutive integers (0..n-1, or any other run) are numbered
    by a subtraction; others by binary search, about 20 times slower at a
    million vertices (each lookup misses the cache).
    """
    if ids.size and ids.dtype.kind == "i" and int(ids[-1]) - int(ids[0]) == ids.size - 1:
        return (values - ids[0]).astype(np.int32)
    return np.searchsorted(ids, values).astype(np.int32)


def by_pair(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The order that sorts edges by (i, j), both below 2**31: ``np.lexsort((j, i))``,
    computed as a stable sort of one 64-bit key (twice as fast)."""
    return np.argsort((i.astype(np.int64) << 32) | j.astype(np.int64), kind="stable")


def repeated_pairs(i: np.ndarray, j: np.ndarray) -> tuple[int, int, tuple[int, int, int]] | None:
    """Pairs (i, j) that occur more than once in edges sorted by (i, j): how many, on how many
    edges in all, and the first of them as ``(i, j, count)``; None when every pair is one edge."""
    first = np.flatnonzero(np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])])  # where each pair starts
    counts = np.diff(np.r_[first, i.size])
    many = np.flatnonzero(counts > 1)
    if many.size == 0:
        return None
    k = many[0]
    return int(many.size), int(counts[many].sum()), (int(i[first[k]]), int(j[first[k]]), int(counts[k]))
