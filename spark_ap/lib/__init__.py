"""Internal helpers of spark-ap: the iteration, the assignment, validation.

Nothing here is public API; import from :mod:`spark_ap` instead.
"""
