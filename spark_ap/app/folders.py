"""The names in a run folder and its output root, for the job, the export and the DAG's tasks alike
(no Spark is imported here: the DAG reads them when it parses)."""

from __future__ import annotations

# Written last: a run folder is finished exactly when it holds this file.
SUMMARY = "summary.json"
# The run's saved state, from which a rerun resumes (the default --state-dir).
STATE = "state"
# What the export writes beside the summary: an export killed before its summary leaves some of them.
RUN_FILES = frozenset(
    {
        "assignments.parquet",
        "exemplars.csv",
        "history.csv",
        "levels.csv",
        "attempts.csv",
        "convergence.png",
        "clusters.png",
        "model",
    }
)
# In the output root: the newest finished run folder (its name, URI and date), on any file system.
LATEST = "latest.json"
