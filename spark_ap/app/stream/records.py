"""The streaming job's records: a Kafka record's point, its assignment or its dead letter.

Plain Python and numpy over pandas batches (``mapInPandas``): what a worker runs
for every record. The formats are those of :mod:`spark_ap.app.stream`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from spark_ap.estimators.model import AffinityPropagationModel, nearest_exemplar

#: Of the records a micro-batch writes: the output topic's and the dead-letter topic's.
RECORDS_SCHEMA = "topic string, key binary, value binary, source string"
#: A dead letter keeps at most this many bytes of the value (well below Kafka's default 1 MB records).
MAX_DEAD_VALUE = 65536


class _Loaded:
    """A model as the micro-batches use it: plain arrays, so the Python workers get them by value."""

    def __init__(self, model: AffinityPropagationModel, version: str, folder: str, content: str = ""):
        self.version = version
        self.folder = folder
        self.content = content  # the SHA-256 of the model's files (spark_ap.app.stream.models.content_key)
        self.metric = model.getMetric()
        self.centers = model.clusterCenters()
        self.dimension = len(self.centers[0])
        self.clusters = [int(c) for c in model.exemplars["cluster"]]
        self.exemplars = [_plain(e) for e in model.exemplars["exemplar"]]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def assign_records(
    records: pd.DataFrame, model: _Loaded, topics: tuple[str, str], features_field: str = "features"
) -> pd.DataFrame:
    """The output and dead-letter records of a batch of Kafka records.

    Parameters
    ----------
    records : pandas.DataFrame
        ``key, value, topic, partition, offset`` as Spark's Kafka source gives them.
    model : _Loaded
        The model, its centers and version.
    topics : (str, str)
        The output topic and the dead-letter topic.
    features_field : str
        The JSON field of the feature values.

    Returns
    -------
    pandas.DataFrame
        :data:`RECORDS_SCHEMA`: one record per input record, for one of ``topics``.
    """
    output_topic, dead_letter_topic = topics
    coordinates = zip(records["topic"], records["partition"], records["offset"], strict=True)
    sources = [f"{topic}/{partition}/{offset}" for topic, partition, offset in coordinates]
    out: list[tuple | None] = [None] * len(records)

    def reject(i: int, problem: str) -> None:
        letter = dead_letter(records["value"].iloc[i], problem, sources[i], model.version)
        out[i] = (dead_letter_topic, records["key"].iloc[i], letter)

    good, ids, rows = [], [], []
    for i, value in enumerate(records["value"]):
        try:
            point, problem = parse_point(value, features_field, model.dimension, model.metric)
        except Exception as error:  # whatever a record does, the stream goes on and the record is kept
            point, problem = None, f"could not be read: {type(error).__name__}: {error}"
        if problem is None:
            good.append(i)
            ids.append(point[0])
            rows.append(point[1])
        else:
            reject(i, problem)
    if good:
        cluster, distance = nearest_exemplar(np.array(rows, dtype=float), model.centers, model.metric)
        for i, point_id, c, d in zip(good, ids, cluster, distance, strict=True):
            if not np.isfinite(d):  # features so large or so small that the arithmetic overflows
                reject(i, f"the distance to the nearest exemplar is {d}: {features_field} out of range")
                continue
            out[i] = (output_topic, str(point_id).encode(), answer(point_id, model, int(c), float(d)))
    return pd.DataFrame(
        {
            "topic": [o[0] for o in out],
            "key": [o[1] for o in out],
            "value": [o[2] for o in out],
            "source": sources,
        }
    )


def dead_letter(value: bytes | None, problem: str, source: str, version: str) -> bytes:
    """The dead-letter record of a Kafka record's ``value`` that cannot be assigned, and why."""
    text = None if value is None else bytes(value[:MAX_DEAD_VALUE]).decode("utf-8", errors="replace")
    letter = {"reason": problem, "value": text, "source": source, "model_version": version}
    if value is not None and len(value) > MAX_DEAD_VALUE:
        letter["value_bytes"] = len(value)  # the value is cut to its first MAX_DEAD_VALUE bytes
    return json.dumps(letter, ensure_ascii=False).encode()


def answer(point_id: Any, model: _Loaded, center: int, distance: float) -> bytes:
    """The output record of a point assigned to the model's ``center`` at ``distance``."""
    record = {
        "id": point_id,
        "cluster": int(model.clusters[center]),
        "exemplar": model.exemplars[center],
        "distance": distance,
        "model_version": model.version,
    }
    return json.dumps(record, allow_nan=False).encode()


def parse_point(
    value: Any, features_field: str, dimension: int, metric: str = "sqeuclidean"
) -> tuple[tuple[Any, list[float]] | None, str | None]:
    """``((id, features), None)`` for a good record's value, else ``(None, reason)``."""
    if value is None:
        return None, "no value (a null Kafka record)"
    try:
        point = json.loads(bytes(value).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        return None, f"not JSON: {error}"
    if not isinstance(point, dict):
        return None, f"not a JSON object but a {type(point).__name__}"
    point_id = point.get("id")
    if point_id is None:
        return None, "no id"
    if isinstance(point_id, bool) or not isinstance(point_id, (int, str)):
        return None, f"id must be a string or an integer, not {json.dumps(point_id)}"
    if isinstance(point_id, str) and not _encodes(point_id):
        # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 key or answer can hold.
        return None, f"id {json.dumps(point_id)[:80]} is not valid Unicode (a lone surrogate)"
    features = point.get(features_field)
    if features is None:
        return None, f"no {features_field}"
    if not isinstance(features, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in features):
        return None, f"{features_field} must be a list of numbers, not {json.dumps(features)[:80]}"
    if len(features) != dimension:
        return None, f"{features_field} has {len(features)} values; the model's exemplars have {dimension}"
    bad = next((j for j, v in enumerate(features) if not math.isfinite(v)), None)
    if bad is not None:
        return None, f"{features_field}[{bad}] is {features[bad]}"
    if metric == "cosine" and not any(features):
        return None, f"{features_field} are all 0: the cosine with an exemplar is undefined"
    return (point_id, [float(v) for v in features]), None


def _encodes(text: str) -> bool:
    """``text`` has a UTF-8 encoding (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
