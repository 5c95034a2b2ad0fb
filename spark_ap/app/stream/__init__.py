"""The streaming job: points from a Kafka topic, each assigned to the nearest exemplar of the newest model.

    spark-ap stream --bootstrap-servers kafka:9092 --input-topic points \\
        --output-topic assignments --dead-letter-topic points-rejected \\
        --model output/latest --checkpoint-location /data/checkpoints/assign

Under ``spark-submit``: ``scripts/spark_ap_job.py stream ...`` with
``--packages`` naming :data:`spark_ap.session.KAFKA_PACKAGE` (``spark-ap stream``
adds it itself).

Records
-------
In: a JSON object per Kafka record, ``{"id": 17, "features": [0.3, 1.2]}``
(``id`` a string or an integer; the features as many numbers as the model's
exemplars have).

Out, keyed by the id: ``{"id", "cluster", "exemplar", "distance",
"model_version"}``, where ``distance`` is the Euclidean distance to the exemplar
(``1 - cosine`` for a cosine model) and ``model_version`` the name of the run
folder the model came from. Each record carries the header ``source``:
``<topic>/<partition>/<offset>`` of the point it answers.

A record that cannot be assigned (not JSON, no id, features missing, of the
wrong length, not numbers, NaN or infinite, or anything else that fails on
it) goes to the dead-letter topic under its own key (which may be null):
``{"reason", "value", "source", "model_version"}``, the value as it came
(decoded as UTF-8, bad bytes replaced; the first 64 KiB, with
``value_bytes`` the whole length when it is longer). Nothing is dropped.

The model
---------
``--model`` is a run folder (holding ``model/``), a model folder, a symbolic
link to a run folder such as the DAG's ``<output_root>/latest``, or an output
root whose ``latest.json`` names its newest run. It is read again before every
micro-batch: a new run published by the DAG, or a model overwritten in place,
is used from the next micro-batch on, without restarting the stream. A model
is known by its content (the SHA-256 of its files, which its
``checksums.json`` records), not by its folder. A model that cannot be read
leaves the previous one in use, with a warning. Each point is assigned on its
own to its nearest exemplar: no cluster size limit (``maxClusterSize``) holds
over the stream.

Delivery
--------
Spark records each micro-batch's offsets in the checkpoint before it runs,
and spark-ap the model the batch uses beside them (``<checkpoint>/models/``:
a pin per batch naming the model's content, and a copy of each pinned model
named by it). A batch that was interrupted is run again after a restart with
the same records and the same model, loaded from its copy whatever the
model's folder holds by then, so it writes the same records again; without
that copy, and with other content in the folder, the job stops in one line
rather than answer otherwise. Delivery is at least once, and every repeat is
identical (key, value and ``source`` header): the records of the one
micro-batch in flight when the job died, and those of a task Spark retried (a
failed task, a lost executor, speculation). A committed batch is never run
again. A consumer that needs each point once drops repeats of a ``source``,
or keeps the last record per key on a compacted output topic (where the ids
``17`` and ``"17"`` share the key).

Its modules: :mod:`~spark_ap.app.stream.records` (a record's point, its
assignment or its dead letter), :mod:`~spark_ap.app.stream.models` (the model
each micro-batch uses) and :mod:`~spark_ap.app.stream.job` (the command line
and the query).
"""
