"""The blocks engine: the edge state as numpy arrays in chunks of edges kept in executors' files.

The graphframes engine (:mod:`spark_ap.engines.graphframes`) sends a message along
every edge twice per iteration and joins the vertices' aggregates back onto the
edges. This one leaves the edges where they are and moves only per-vertex
values. Its modules, in the order a run meets them:

* :mod:`~spark_ap.engines.blocks.kernel`: a chunk's numpy arrays and one iteration
  on them (the local engine uses it alone);
* :mod:`~spark_ap.engines.blocks.pack`: from edge rows to partitions of chunks
  (vertex numbers, bounds, the packing shuffle) and back;
* :mod:`~spark_ap.engines.blocks.storage`: the chunks' files in the executors;
* :mod:`~spark_ap.engines.blocks.exchange`: how a partition gets the per-source
  maxima of every other: through the driver, or routed to owners and back;
* :mod:`~spark_ap.engines.blocks.engine`: the engine the loop drives;
* :mod:`~spark_ap.engines.blocks.finish`: the clusters, where the chunks are.

The package imports none of them, so that the kernel's users do not import Spark.
"""
