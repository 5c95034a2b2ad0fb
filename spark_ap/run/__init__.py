"""One run of Affinity Propagation on a prepared graph: the loop, its saves, its labels."""
