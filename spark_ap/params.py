"""Every param of spark-ap's estimators, once: name, type, default, bounds or choices, doc.

Each surface is derived from :data:`SPECS`: the estimators' ``Param`` objects,
defaults and checks (:mod:`spark_ap.estimators.affinity`, :mod:`spark_ap.multilevel`),
the command line's flags and the YAML file's keys (:mod:`spark_ap.app.job`,
``spark_ap/app/spark-ap.yaml``), and the Airflow DAG's ``Param`` objects
(:func:`dag_params`). ``tests/test_params.py`` checks that every surface agrees.

Names are the estimators' (camelCase); the command line spells them in
kebab-case (``maxIter``: ``--max-iter``), the DAG in snake_case (``max_iter``).

This module imports neither Spark nor numpy: the DAG file reads it when it is
parsed.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from spark_ap.errors import InvalidParamError, user_stacklevel

AP = "AffinityPropagation"
MULTILEVEL = "MultiLevelAffinityPropagation"
BOTH = (AP, MULTILEVEL)

ENGINES = ("auto", "local", "blocks", "graphframes")
EXCHANGES = ("auto", "driver", "routed")
NOISES = ("edge", "sklearn", "none")
METRICS = ("sqeuclidean", "cosine")
DUPLICATES = ("error", "max", "mean")
CHECKPOINT_KINDS = ("auto", "local", "reliable")
END_ONS = ("best", "last")
# What an input table holds: the job's --kind, input.kind, airflow.kind and the DAG's kind.
INPUT_KINDS = ("edges", "features")
PREFERENCE_WORDS = ("median", "min")
QUANTILE = re.compile(r"quantile:(\S+)")


@dataclass(frozen=True)
class Spec:
    """One param.

    Attributes
    ----------
    name : str
        As on the estimators (camelCase).
    type : type
        ``int``, ``float`` or ``str``; ``object`` for ``preference``.
    default : object
        ``None`` for a param without a default (``stateDir``).
    doc : str
        One line, the Param's doc and the command line's help.
    estimators : tuple of str
        The estimators that have it.
    section : str or None
        The YAML file's section and the command line's group: ``ap`` (both
        estimators), ``features`` (feature tables only), ``input`` (input
        columns), or None when the job sets it itself.
    result : bool
        Whether it decides what a run computes; a resumed run may change the
        others (how a run works, not what it finds).
    choices : tuple
        The allowed values, if a closed set.
    low, high : float or None
        ``low <= value`` and ``value < high`` (``high`` is exclusive).
    also : tuple
        Values allowed outside the bounds (``checkpointInterval=-1``).
    retired : tuple of (value, message)
        Values that once meant something, with what to use instead.
    dag : bool
        Offered as a Param of the Airflow DAG.
    """

    name: str
    type: type
    default: object
    doc: str
    estimators: tuple[str, ...] = BOTH
    section: str | None = "ap"
    result: bool = True
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    also: tuple = ()
    retired: tuple = ()
    dag: bool = False

    @property
    def flag(self) -> str:
        """The command line's option: ``maxIter`` -> ``--max-iter``."""
        return "--" + re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), self.name)

    @property
    def snake(self) -> str:
        """The DAG's name: ``maxIter`` -> ``max_iter``."""
        return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), self.name)

    def check(self, value: object) -> None:
        """Raise :class:`InvalidParamError` naming the param unless ``value`` is allowed.

        An ``int`` param takes a whole-number float (``50.0``, as YAML or JSON may write 50);
        NaN and infinities are refused whatever the bounds (no comparison holds for NaN).
        """
        if value is None and self.default is None:
            return
        if self.name == "preference":
            check_preference(value)
            return
        for old, message in self.retired:
            if value == old:
                raise InvalidParamError(f"{self.name}={old!r}: {message}")
        if value in self.also:
            return
        if self.choices and value not in self.choices:
            raise InvalidParamError(f"{self.name} must be one of {self.choices}; got {value!r}")
        if self.type is str and not isinstance(value, str):
            raise InvalidParamError(f"{self.name} must be a string; got {value!r}")
        if self.type is str and not value.strip():
            # A column named "" or a state folder "" (the current folder) is a setting left blank.
            raise InvalidParamError(f"{self.name} must not be empty; got {value!r}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            if self.type in (int, float):
                raise InvalidParamError(f"{self.name} must be a number; got {value!r}")
            return
        if self.type is int and isinstance(value, float) and not value.is_integer():  # float(10**400) overflows
            raise InvalidParamError(f"{self.name} must be a whole number; got {value!r}")
        if self.low is not None and self.high is not None and not self.low <= value < self.high:
            raise InvalidParamError(f"{self.name} must be in [{self.low:g}, {self.high:g}); got {value}")
        if self.low is not None and value < self.low:
            also = "".join(f", or {v}" for v in self.also)
            raise InvalidParamError(f"{self.name} must be >= {self.low:g}{also}; got {value}")
        if value != value or value in (float("inf"), float("-inf")):  # a float param with no bound, or one only
            raise InvalidParamError(f"{self.name} must be a finite number; got {value}")


SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in [
        # How AP runs: both estimators, section ap.
        Spec("damping", float, 0.5, "damping in [0.5, 1): new = damping * old + (1 - damping) * computed",
             low=0.5, high=1.0, dag=True),
        Spec("maxIter", int, 200, "iterations at most", low=1, dag=True),
        Spec("convergenceIter", int, 15, "stop when no exemplar decision has changed for this many iterations",
             low=1, dag=True),
        Spec("preference", object, "median",
             "preference of vertices without a self-edge: a number (the value), or a statistic of the "
             "off-diagonal similarities: median, min, or quantile:Q with Q in (0, 1)", dag=True),
        Spec("noise", str, "edge",
             "scikit-learn's tiny degeneracy noise: edge (drawn per edge from seed), sklearn (scikit-learn's own "
             "draws for random_state=seed, up to 20,000 vertices) or none", choices=NOISES),
        Spec("seed", int, 0, "seed of the degeneracy noise (and of a feature table's neighbour search)", low=0,
             dag=True),
        Spec("maxClusterSize", int, 0,
             "capacitated AP (Givoni and Frey): at most this many points per cluster, its exemplar included; "
             "0: no bound", low=0, dag=True),
        Spec("endOn", str, "best",
             "a run that does not converge ends on: best (the decisions of the largest net similarity it saw, "
             "on graphs of up to 5 million edges) or last (its last iteration's, as scikit-learn)",
             choices=END_ONS, dag=True),
        Spec("engine", str, "auto",
             "how iterations run, with the same results: local (numpy on the driver), blocks (numpy on chunks of "
             "edges in executors), graphframes (GraphFrame.aggregateMessages rounds); auto: local up to 5 million "
             "edges, else blocks", result=False, choices=ENGINES, dag=True,
             retired=(("dataframe", "the Spark SQL window engine was replaced by engine='graphframes', which "
                       "computes the same messages with GraphFrame.aggregateMessages; use 'graphframes' or "
                       "'blocks'."),)),
        Spec("exchange", str, "auto",
             "how the blocks engine merges per-vertex maxima across partitions, with the same results: driver "
             "(through the driver: fastest on one machine), routed (by shuffles to the vertices' owners and back: "
             "nothing per vertex on the driver, for clusters); auto: driver while vertices x partitions <= 4e6",
             result=False, choices=EXCHANGES),
        Spec("checkpointInterval", int, 10,
             "save the state (or write a reliable checkpoint) every this many iterations; -1: never",
             result=False, low=1, also=(-1,), dag=True),
        Spec("checkpointKind", str, "auto",
             "local: checkpoints in executor storage only; reliable: also to the SparkContext checkpoint "
             "directory every checkpointInterval iterations; auto: reliable when a checkpoint directory is set",
             result=False, choices=CHECKPOINT_KINDS),
        Spec("stateDir", str, None,
             "directory (local path or URI) where the run saves its state every checkpointInterval iterations, "
             "and from which a rerun with the same params and input resumes", section=None, result=False),
        # Edge tables: AffinityPropagation only.
        Spec("duplicates", str, "error",
             "repeated (src, dst) pairs: error (refuse them), or one edge with the max or the mean similarity",
             estimators=(AP,), choices=DUPLICATES, dag=True),
        Spec("srcCol", str, "src", "edge table: source id column", estimators=(AP,), section="input"),
        Spec("dstCol", str, "dst", "edge table: target id column", estimators=(AP,), section="input"),
        Spec("weightCol", str, "similarity", "edge table: similarity column", estimators=(AP,), section="input"),
        Spec("preferenceCol", str, "preference", "vertices table: per-vertex preference column",
             estimators=(AP,), section=None),
        Spec("idCol", str, "id", "id column of the vertices table, or of the feature table", section="input"),
        # Feature tables: MultiLevelAffinityPropagation only.
        Spec("featuresCol", str, "features", "feature table: an array-of-numbers or ML vector column",
             estimators=(MULTILEVEL,), section=None),
        Spec("metric", str, "sqeuclidean",
             "similarity of feature vectors: sqeuclidean (negative squared distance) or cosine",
             estimators=(MULTILEVEL,), section="input", choices=METRICS, dag=True),
        Spec("numNeighbors", int, 10, "neighbours per point of an approximate k-NN graph",
             estimators=(MULTILEVEL,), section="features", low=1, dag=True),
        Spec("exactBelow", int, 2000, "up to this many points: the complete graph and exact AP; above: levels",
             estimators=(MULTILEVEL,), section="features", low=0, dag=True),
        Spec("levelExactBelow", int, 400, "levels above the first with up to this many exemplars use all their pairs",
             estimators=(MULTILEVEL,), section="features", low=0),
        Spec("preferenceSample", int, 2000, "points whose pairwise similarities estimate the preference",
             estimators=(MULTILEVEL,), section="features", low=2),
        Spec("numTrees", int, 4, "random projection trees of the k-NN graph; more find more true neighbours",
             estimators=(MULTILEVEL,), section="features", low=1),
        Spec("leafSize", int, 1000, "points per leaf of those trees; each leaf compares all its points",
             estimators=(MULTILEVEL,), section="features", low=2),
        Spec("resolution", int, 10000, "levels weigh clusters as if the data had this many points (0: its true size)",
             estimators=(MULTILEVEL,), section="features", low=0, dag=True),
        Spec("maxLevels", int, 10, "levels at most", estimators=(MULTILEVEL,), section="features", low=1),
        Spec("knnMaxIter", int, 50, "iterations at most of a level on a k-NN graph",
             estimators=(MULTILEVEL,), section="features", low=1),
        Spec("numClusters", int, 0, "search the preference for about this many clusters (0: no search)",
             estimators=(MULTILEVEL,), section="features", low=0, dag=True),
        Spec("clusterTolerance", int, 0, "the search stops within this many clusters of numClusters",
             estimators=(MULTILEVEL,), section="features", low=0, dag=True),
        Spec("maxAttempts", int, 20, "runs of the search at most; the closest to numClusters is kept",
             estimators=(MULTILEVEL,), section="features", low=1),
    ]
}  # fmt: skip


def specs(estimator: str) -> list[Spec]:
    """The params of ``estimator`` (:data:`AP` or :data:`MULTILEVEL`)."""
    return [spec for spec in SPECS.values() if estimator in spec.estimators]


def in_section(section: str) -> list[Spec]:
    """The params of the YAML file's section ``section`` (``ap``, ``features`` or ``input``)."""
    return [spec for spec in SPECS.values() if spec.section == section]


def defaults(estimator: str) -> dict[str, object]:
    """``estimator``'s defaults by name (params without one left out)."""
    return {spec.name: spec.default for spec in specs(estimator) if spec.default is not None}


def check(estimator: str, values: dict[str, object]) -> None:
    """Raise :class:`InvalidParamError` for the first of ``values`` that ``estimator``'s spec refuses."""
    for spec in specs(estimator):
        if spec.name in values:
            spec.check(values[spec.name])


def check_preference(preference: object) -> None:
    """Raise :class:`InvalidParamError` unless ``preference`` is a finite number or a statistic's word."""
    if isinstance(preference, bool):
        raise InvalidParamError(f"preference must be a number, 'median', 'min' or 'quantile:Q'; got {preference!r}")
    if isinstance(preference, (int, float)):
        if preference != preference or abs(preference) == float("inf"):
            raise InvalidParamError(f"preference must be finite; got {preference!r}")
        return
    quantile(preference)


def quantile(preference: str) -> float | None:
    """The quantile a statistic's word stands for (``min``: None); raise for anything else.

    ``"median"`` is 0.5 and ``"quantile:0.1"`` 0.1. A bare number in a string
    (``"0.1"``), the spelling before ``quantile:`` existed, still means a
    quantile, with a :class:`FutureWarning`.
    """
    if preference == "min":
        return None
    if preference == "median":
        return 0.5
    match = QUANTILE.fullmatch(preference) if isinstance(preference, str) else None
    text = match.group(1) if match else preference if isinstance(preference, str) else ""
    try:
        q = float(text)
    except ValueError:
        q = float("nan")
    if not 0 < q < 1:
        raise InvalidParamError(
            "preference must be a number, 'median', 'min', or a quantile in (0, 1) of the similarities "
            f"written 'quantile:Q', such as 'quantile:0.1'; got {preference!r}"
        )
    if not match:
        warnings.warn(
            f"preference={preference!r}: a quantile is now written 'quantile:{text}' (a number is always a value)",
            FutureWarning,
            stacklevel=user_stacklevel(),
        )
    return q


def cli_preference(text: str) -> float | str:
    """The command line's ``--preference``: a number is the value, anything else a statistic's word."""
    try:
        return float(text)
    except ValueError:
        return text


def noise_param(value: object) -> object:
    """The noise param's type converter: True and False, its old values, become "edge" and "none"."""
    if value is True:
        return "edge"
    if value is False:
        return "none"
    return value


_JSON_TYPES = {int: "integer", float: "number", str: "string"}


def dag_params() -> dict[str, dict]:
    """The DAG's params, by snake_case name: the keyword arguments of ``airflow.sdk.Param`` for each.

    The defaults are the estimators' (the YAML file's too); a DAG run's conf
    overrides them.
    """
    out = {}
    for spec in SPECS.values():
        if not spec.dag:
            continue
        schema: dict = {"default": spec.default, "description": spec.doc}
        if spec.name == "preference":
            # A number is the value; a string must be one of the statistic's words.
            schema["type"] = ["number", "string"]
            schema["pattern"] = r"^(median|min|quantile:(0?\.[0-9]*[1-9][0-9]*))$"
        else:
            schema["type"] = _JSON_TYPES[spec.type]
        if spec.choices:
            schema["enum"] = list(spec.choices)
        if spec.low is not None:
            # checkpointInterval's -1 (never save) is not offered: a retried task resumes from the saves.
            schema["minimum"] = spec.low
        if spec.high is not None:
            schema["exclusiveMaximum"] = spec.high
        out[spec.snake] = schema
    return out
